"""The `podtui` command: the dashboard opens without the verbs' imports on its way; everything else is click's."""

import subprocess
import sys

import pytest

from podtui.entry import dashboard_args


@pytest.mark.parametrize(("args", "expected"), [
    ([], (None, None)),
    (["--server", "http://h:1"], ("http://h:1", None)),
    (["--server=http://h:1", "--token", "t"], ("http://h:1", "t")),
    (["--token=t"], (None, "t")),
    (["runs"], None),
    (["--server", "http://h:1", "runs"], None),
    (["--help"], None),
    (["--version"], None),
    (["--server"], None),  # click says the value is missing
    (["--server", "--token", "t"], None),
])
def test_only_the_dashboards_own_options_take_the_short_way(args, expected, monkeypatch):
    monkeypatch.delenv("PODTUI_SERVER", raising=False)
    monkeypatch.delenv("PODTUI_ADMIN_TOKEN", raising=False)
    assert dashboard_args(args) == expected


def test_the_environment_names_the_server_unless_an_option_does(monkeypatch):
    monkeypatch.setenv("PODTUI_SERVER", "http://env:1")
    monkeypatch.setenv("PODTUI_ADMIN_TOKEN", "env-token")
    assert dashboard_args([]) == ("http://env:1", "env-token")
    assert dashboard_args(["--server", "http://opt:2"]) == ("http://opt:2", "env-token")


def test_the_dashboards_way_loads_no_verb_no_http_client_no_models_no_pydantic():
    code = ("import sys\nimport podtui.entry\nfrom podtui.app import run_tui\n"
            "from podtui.settings_sources import StartSettings\nStartSettings.read()\n"
            "early = [m for m in ('click', 'httpx', 'aiohttp', 'pydantic', 'podtui.models', 'podtui.config',"
            " 'podtui.cli') if m in sys.modules]\n"
            "assert not early, early\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PODTUI_CONFIG_FILE": "/nonexistent.toml"})


def test_verbs_and_help_still_go_to_click():
    out = subprocess.run([sys.executable, "-c", "import sys; from podtui.entry import main; sys.argv[0] = 'podtui';"
                          " main()", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "serve" in out.stdout and "--server" in out.stdout
