"""One admin token resolution for the dashboard and every CLI verb: --token, PODTUI_ADMIN_TOKEN, config.toml, the
data dir's token file; a refusal names where the token came from."""

from click.testing import CliRunner

from podtui.cli import main
from podtui.config import resolve_admin_token
from tests.support import make_settings


def test_the_order_and_the_names(tmp_path, monkeypatch):
    monkeypatch.delenv("PODTUI_ADMIN_TOKEN", raising=False)
    settings = make_settings(tmp_path)
    path = settings.data_dir / "admin_token"
    token, where = resolve_admin_token(settings)
    assert token is None and where.startswith("none found") and str(path) in where
    settings.data_dir.mkdir(parents=True)
    path.write_text("from-file\n")
    assert resolve_admin_token(settings) == ("from-file", f"the token file {path}")
    monkeypatch.setenv("PODTUI_ADMIN_TOKEN", "from-env")
    assert resolve_admin_token(make_settings(tmp_path)) == ("from-env", "PODTUI_ADMIN_TOKEN")
    assert resolve_admin_token(make_settings(tmp_path), "typed") == ("typed", "--token")


async def test_the_cli_names_a_refused_token_file(plane, tmp_path, monkeypatch):
    monkeypatch.delenv("PODTUI_ADMIN_TOKEN", raising=False)
    data = tmp_path / "elsewhere"
    data.mkdir()
    (data / "admin_token").write_text("tok-zz93\n")
    monkeypatch.setenv("PODTUI_DATA_DIR", str(data))
    import asyncio

    result = await asyncio.to_thread(CliRunner().invoke, main, ["--server", plane.url, "runs"])
    assert result.exit_code == 1
    assert f"the admin token from the token file {data / 'admin_token'} is not this control plane's" in result.output
    assert "tok-zz93" not in result.output  # the token itself is never shown
    (data / "admin_token").unlink()  # none at all: said once where it is, not twice
    result = await asyncio.to_thread(CliRunner().invoke, main, ["--server", plane.url, "runs"])
    assert result.exit_code == 1 and "this control plane needs its admin token: none found" in result.output
    assert result.output.count("admin_token file") == 1, result.output
