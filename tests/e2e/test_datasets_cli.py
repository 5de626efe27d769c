"""The dataset and volume verbs as a user types them, against a real control plane on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from podtui.cli import main
from tests.fakes.file_server import FileServer, ServedFile


@pytest.fixture
async def cli(local_plane, tmp_path):
    env = {"PODTUI_SERVER": local_plane.url, "PODTUI_ADMIN_TOKEN": local_plane.control.admin_token,
           "PODTUI_CONFIG_FILE": str(tmp_path / "none.toml"), "NO_PROXY": "127.0.0.1"}

    async def run(*args: str, stdin: str | None = None):
        return await asyncio.to_thread(CliRunner().invoke, main, list(args), input=stdin, env=env)

    return run


async def test_add_a_url_list_it_and_a_local_volume_from_the_cli(cli, tmp_path):
    files = FileServer()
    await files.start()
    try:
        files.files["corpus.txt"] = ServedFile(b"hello\n" * 1000)
        out = await cli("datasets", "add", f"{files.url}/corpus.txt", "--name", "corpus")
        assert out.exit_code == 0, out.output
        assert f"registered corpus (5.9 KiB in 1 file(s)); pods fetch it from {files.url}/corpus.txt" in out.output
        out = await cli("datasets", "add", str(tmp_path / "missing.csv"))
        assert out.exit_code == 2 and "does not exist" in out.output
        out = await cli("datasets", "add", "hf://nope only/x")
        assert out.exit_code == 1 and "error:" in out.output

        out = await cli("volumes", "create", "scratch", "--provider", "local")
        assert out.exit_code == 0 and "created local volume scratch" in out.output, out.output
        out = await cli("volumes", "--json")
        listed = {v["name"]: v for v in json.loads(out.output)}
        assert listed["scratch"]["provider"] == "local" and listed["scratch"]["in_use_by"] == []
        out = await cli("volumes")
        assert "scratch" in out.output and "NAME" in out.output
        out = await cli("volumes", "rm", "scratch", "--provider", "local", stdin="n\n")
        assert "kept" in out.output
        out = await cli("volumes", "rm", "scratch", "--provider", "local", "--yes")
        assert out.exit_code == 0 and "deleted local volume scratch" in out.output
        out = await cli("volumes", "rm", "scratch", "--provider", "local", stdin="")  # gone: nothing to ask about
        assert out.exit_code == 1 and "Delete volume" not in out.output, out.output
        assert "no local volume named 'scratch'" in out.output
        out = await cli("launch", "--dataset", "corpus", "--volume", "scratch", "--command", "true")
        assert out.exit_code == 1 and "no local volume named 'scratch'" in out.output
    finally:
        await files.stop()
