"""`serve --help` says where the default port comes from (it said "default 8765" with PODTUI_PORT set)."""

from click.testing import CliRunner

from podtui.cli import main


def test_serve_help_names_the_port_setting(monkeypatch):
    monkeypatch.setenv("PODTUI_PORT", "9123")
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Port (default: PODTUI_PORT, else config.toml's port, else 8765)" in text
    assert "(default 8765)" not in text
