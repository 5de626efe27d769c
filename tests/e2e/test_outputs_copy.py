"""`podtui outputs RUN --to DIR` never replaces a file the user changed in DIR since the last copy (nor one podtui
did not put there) without --force, and says which (it silently overwrote a user's edits)."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys

from podtui.output_copies import plan_copy, read_record
from tests.e2e.test_outputs import launch, outputs_of, wait_for
from tests.support import Plane


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cli(plane: Plane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podtui.cli", "--server", plane.url, "--token",
                           plane.control.admin_token, *args], capture_output=True, text=True, timeout=60)


async def test_a_file_changed_since_the_last_copy_is_kept_unless_forced(local_plane, tmp_path):
    plane = local_plane
    run = await launch(plane, command="echo model-v1 > $PODTUI_OUTPUT_DIR/model.txt && "
                                      "echo notes > $PODTUI_OUTPUT_DIR/notes.txt")

    async def home() -> bool:
        return (await outputs_of(plane, run["id"]))["summary"]["state"] == "home"

    await wait_for(home, timeout=60)
    target = tmp_path / "copy"
    first = await asyncio.to_thread(cli, plane, "outputs", run["id"], "--to", str(target))
    assert first.returncode == 0, first.stderr
    assert (target / "model.txt").read_text() == "model-v1\n"
    assert read_record(target)["model.txt"] == sha(b"model-v1\n")

    (target / "model.txt").write_text("my edits\n")  # the user works on the copy
    again = await asyncio.to_thread(cli, plane, "outputs", run["id"], "--to", str(target))
    assert again.returncode == 1
    assert f"kept {target / 'model.txt'}: changed since the last copy (--force replaces it)" in again.stderr
    assert "1 file in" in again.stderr and "model.txt; --force replaces it" in again.stderr
    assert "already there notes.txt" in again.stdout
    assert (target / "model.txt").read_text() == "my edits\n"

    other = tmp_path / "other"  # a folder with the user's own file of that name
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    foreign = await asyncio.to_thread(cli, plane, "outputs", run["id"], "--to", str(other), "--json")
    assert foreign.returncode == 1 and (other / "notes.txt").read_text() == "mine\n"
    assert '"kept": "foreign"' in foreign.stdout

    forced = await asyncio.to_thread(cli, plane, "outputs", run["id"], "--to", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (target / "model.txt").read_text() == "model-v1\n" and "copied model.txt" in forced.stdout


def test_a_copy_left_as_it_was_takes_the_new_version(tmp_path):
    dest = tmp_path / "f"
    assert plan_copy(dest, sha(b"v2"), None) == "copy"
    dest.write_bytes(b"v1")
    assert plan_copy(dest, sha(b"v2"), sha(b"v1")) == "copy"  # ours, untouched: the run's newer version
    assert plan_copy(dest, sha(b"v1"), sha(b"v1")) == "same"
    assert plan_copy(dest, sha(b"v2"), sha(b"v0")) == "changed"
    assert plan_copy(dest, sha(b"v2"), None) == "foreign"
