"""A launch's bad options are refused before any control plane is asked, named as the user typed them."""

import pytest
from click.testing import CliRunner

from podtui.cli import main


@pytest.mark.parametrize(("args", "said"), [
    (["--budget", "-1"], "--budget: must be at least 0"),
    (["--gpu-count", "0"], "--gpu-count: must be at least 1"),
    (["--max-runtime", "40d"], "--max-runtime: must be at most 30 days"),
    (["--name", "bad name"], "--name: must be letters, digits"),
    (["--image", "bad image!"], "--image: must be an image reference with no spaces"),
    (["--min-cuda", "abc"], "--min-cuda: must be a version like 12.8"),
    (["--outputs", "/abs"], "--outputs: outputs must be a folder inside the workdir"),
    (["--outputs", "../x"], "--outputs: outputs must be a folder inside the workdir"),
    (["--max-runtime", "abc"], "--max-runtime: 'abc' is not a duration"),
    (["--retries", "-1"], "--retries: must be at least 0"),
    (["--retries", "99"], "--retries: must be at most 20"),
    (["--budget", "nan"], "--budget: must be a number (not nan or inf)"),  # it said 'must be at most 100000'
])
def test_bad_launch_options_name_the_option(tmp_path, monkeypatch, args, said):
    monkeypatch.setenv("PODTUI_CONFIG_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PODTUI_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(main, ["launch", "--dataset", "demo", "--gpu", "local", *args])
    assert result.exit_code == 2, result.output
    assert said in result.output and "validation error" not in result.output and "pydantic" not in result.output
    assert "should match pattern" not in result.output and "Input should" not in result.output


def test_a_server_that_is_not_a_url_says_what_to_give(tmp_path, monkeypatch):
    """A new user's `--server notaurl` printed httpx's UnsupportedProtocol(...)."""
    monkeypatch.setenv("PODTUI_CONFIG_FILE", str(tmp_path / "none.toml"))
    result = CliRunner().invoke(main, ["--server", "notaurl", "runs"])
    assert result.exit_code != 0
    assert "'notaurl' is not a control plane's URL: give one like http://127.0.0.1:8765" in result.output
    assert "UnsupportedProtocol" not in result.output and "Traceback" not in result.output


def test_the_control_planes_refusal_names_the_option_typed():
    from podtui.cli import options_named

    said = options_named("gpu_types: the local provider offers only the GPU type `local` (asked: x); launch with "
                         "--gpu local, or set RUNPOD_API_KEY; budget_usd: too much; volume: no such volume")
    assert said == ("--gpu: the local provider offers only the GPU type `local` (asked: x); launch with --gpu local, "
                    "or set RUNPOD_API_KEY; --budget: too much; --volume: no such volume")
    assert options_named("node 1: not a field") == "node 1: not a field"


def test_the_launch_form_names_the_control_planes_fields_by_its_labels():
    from podtui.screens.launch import label_of
    from podtui.wording import fields_named

    said = fields_named("gpu_types: RunPod has no GPU type 'x'; budget_usd: too much", label_of)
    assert said == "GPU types: RunPod has no GPU type 'x'; budget $: too much"
