"""Outputs come home (issue 13), end to end on the local provider: the demo's model file arrives with its hash and
the pod ends right after; an interrupted file resumes; only new or changed files move; names that leave the folder
are refused; a full disk or the cap leaves an event and the files already home."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from podtui.server import outputs as outputs_module
from podtui.server.outputs import OutputRefused
from podtui.server.outputs_api import OUTPUTS
from tests.support import Plane, make_settings, start_plane, wait_for


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def launch(plane: Plane, **spec: Any) -> dict[str, Any]:
    body = {"dataset": "demo", "gpu_types": ["local"], **spec}
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def outputs_of(plane: Plane, run_id: str) -> dict[str, Any]:
    r = await plane.http.get(f"/api/v1/runs/{run_id}/outputs")
    assert r.status_code == 200, r.text
    return dict(r.json())


def pod_dir(plane: Plane, run: dict[str, Any]) -> Path:
    return Path(plane.control.settings.data_dir) / "pods" / run["pod_id"]


async def test_the_demo_model_comes_home_and_the_pod_ends(local_plane):
    plane = local_plane
    run = await launch(plane, env={"DEMO_CHECKPOINT_EVERY": "10"})
    done = await plane.wait_status(run["id"], {"succeeded", "failed", "terminated", "lost"}, timeout=60)
    assert done["status"] == "succeeded", done["status_reason"]

    async def home() -> dict[str, Any] | None:
        page = await outputs_of(plane, run["id"])
        return page if page["summary"]["state"] == "home" else None

    page = await wait_for(home, 30)
    ended_home = time.time()
    files = {f["path"]: f for f in page["files"]}
    assert set(files) == {"model.json", "checkpoint.json"}
    pod_model = pod_dir(plane, done) / "work" / "outputs" / "model.json"
    landed = Path(page["folder"]) / "model.json"
    assert files["model.json"]["sha256"] == sha256_of(pod_model) == sha256_of(landed)
    assert files["model.json"]["size"] == landed.stat().st_size

    # The pod ends as soon as the outputs are home, not at the keep-alive's end (30 min by default).
    provider = plane.runs.providers["local"]

    async def pod_gone() -> bool:
        return (await provider.get_pod(done["pod_id"])).phase == "gone"

    await wait_for(pod_gone, 10, every=0.1)
    assert time.time() - ended_home < 10
    events = [e["kind"] for e in (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()]
    assert "outputs_home" in events

    # A client downloads it, ranged and resumable, with the admin token.
    url = f"/api/v1/runs/{run['id']}/outputs/file"
    r = await plane.http.get(url, params={"path": "model.json"})
    assert r.status_code == 200 and r.content == landed.read_bytes()
    assert r.headers["X-Podtui-Sha256"] == files["model.json"]["sha256"]
    r = await plane.http.get(url, params={"path": "model.json"}, headers={"Range": "bytes=5-"})
    assert r.status_code == 206 and r.content == landed.read_bytes()[5:]
    r = await plane.http.get(url, params={"path": "../podtui.db"})
    assert r.status_code == 400 and "leave" in r.json()["error"]["message"]

    # The CLI lists them and copies them out (through the same HTTP routes a remote client uses).
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "podtui.cli", "--server", plane.url, "--token",
                               plane.control.admin_token, *args], capture_output=True, text=True, timeout=60)

    listed = await asyncio.to_thread(cli, "outputs", run["id"])
    assert listed.returncode == 0, listed.stderr
    assert "model.json" in listed.stdout and "outputs: 2 files" in listed.stdout and ", home" in listed.stdout
    target = Path(plane.control.settings.data_dir).parent / "copy"
    (target).mkdir()
    (target / "model.json.part").write_bytes(landed.read_bytes()[:7])  # an earlier copy that was cut
    copied = await asyncio.to_thread(cli, "outputs", run["id"], "--to", str(target), "--json")
    assert copied.returncode == 0, copied.stderr
    assert sha256_of(target / "model.json") == files["model.json"]["sha256"]
    assert not (target / "model.json.part").exists()
    again = await asyncio.to_thread(cli, "outputs", run["id"], "--to", str(target))
    assert "already there model.json" in again.stdout
    ended = await asyncio.to_thread(cli, "outputs", run["id"], "--sync")
    assert ended.returncode == 1 and "has no running command" in ended.stderr and "Traceback" not in ended.stderr


async def test_a_sync_that_cannot_finish_ends_at_the_keep_alive_bound(local_plane):
    """The control plane takes no byte (a stuck disk): the pod still ends at its keep-alive, not later."""
    plane = local_plane
    outputs = plane.control.runner.app[OUTPUTS]
    release = asyncio.Event()

    async def stuck(*args: Any, **kwargs: Any) -> int:
        await release.wait()
        raise OutputRefused(507, "disk_full", "stuck")

    outputs.absorb = stuck
    command = "head -c 4096 /dev/urandom > $PODTUI_OUTPUT_DIR/weights.bin"
    run = await launch(plane, command=command, keep_alive_s=3)
    done = await plane.wait_status(run["id"], {"succeeded", "failed"}, timeout=30)
    assert done["status"] == "succeeded"
    provider = plane.runs.providers["local"]
    assert (await provider.get_pod(done["pod_id"])).phase == "running"  # still trying within the bound

    async def pod_gone() -> bool:
        return (await provider.get_pod(done["pod_id"])).phase == "gone"

    await wait_for(pod_gone, 12)
    assert time.time() <= done["keep_alive_until"] + 8
    page = await outputs_of(plane, run["id"])
    assert page["summary"]["state"] != "home" and page["summary"]["files_home"] == 0
    release.set()


async def test_only_new_or_changed_files_move(local_plane):
    plane = local_plane
    command = ("cd $PODTUI_OUTPUT_DIR && echo v1 > ckpt.bin && echo same > same.bin && "
               "while [ ! -e $HOME/go ]; do sleep 0.05; done && echo v2-changed > ckpt.bin && : > empty.bin")
    run = await launch(plane, command=command)
    await plane.wait_status(run["id"], {"training"}, timeout=30)
    r = await plane.http.post(f"/api/v1/runs/{run['id']}/outputs/sync")
    assert r.status_code == 202, r.text

    async def both_home() -> dict[str, Any] | None:
        page = await outputs_of(plane, run["id"])
        files = {f["path"]: f for f in page["files"] if f["home_at"]}
        return files if len(files) == 2 else None

    first = await wait_for(both_home, 20)
    fresh = (await plane.http.get(f"/api/v1/runs/{run['id']}")).json()
    (pod_dir(plane, fresh) / "go").touch()
    await plane.wait_status(run["id"], {"succeeded"}, timeout=30)

    async def home() -> dict[str, Any] | None:
        page = await outputs_of(plane, run["id"])
        return page if page["summary"]["state"] == "home" else None

    page = await wait_for(home, 20)
    files = {f["path"]: f for f in page["files"]}
    assert files["same.bin"]["home_at"] == first["same.bin"]["home_at"]  # unchanged: not sent again
    assert files["ckpt.bin"]["home_at"] > first["ckpt.bin"]["home_at"]  # changed: sent again
    assert (Path(page["folder"]) / "ckpt.bin").read_text() == "v2-changed\n"
    assert files["ckpt.bin"]["sha256"] == hashlib.sha256(b"v2-changed\n").hexdigest()
    assert files["empty.bin"]["sha256"] == hashlib.sha256(b"").hexdigest()  # an empty file comes home too
    assert (Path(page["folder"]) / "empty.bin").read_bytes() == b""


async def test_names_that_leave_the_folder_are_refused(local_plane):
    plane = local_plane
    command = ("cd $PODTUI_OUTPUT_DIR && echo ok > model.bin && ln -s /etc/hostname escape && ln -s .. up && "
               "ln -s model.bin alias && mkdir sub && ln -s ../../.. sub/deep && touch \"$(printf 'bad\\nname')\"")
    run = await launch(plane, command=command)
    await plane.wait_status(run["id"], {"succeeded"}, timeout=30)

    async def home() -> dict[str, Any] | None:
        page = await outputs_of(plane, run["id"])
        return page if page["summary"]["state"] in ("home",) else None

    page = await wait_for(home, 20)
    assert sorted(f["path"] for f in page["files"]) == ["alias", "model.bin"]
    folder = Path(page["folder"])
    assert not (folder / "escape").exists() and not (folder / "up").exists()
    assert not any(p.is_symlink() for p in folder.rglob("*"))
    events = [e["message"] for e in (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()
              if e["kind"] == "output_refused"]
    assert any("'escape'" in m and "outside" in m for m in events)
    assert any("'sub/deep'" in m and "outside" in m for m in events)
    assert any("control character" in m for m in events)


async def test_the_control_plane_refuses_names_from_a_pod(plane):
    """A pod that does not run podtui's agent gets the same refusals from the control plane."""
    run, token = await plane.fake_run()
    pod = {"Authorization": f"Bearer {token}"}
    base = f"/api/v1/runs/{run.id}/outputs"
    bad = ["../evil", "/etc/passwd", "a/../../b", "a\x00b", "x" * 300, "a//b", ".partial/x"]
    r = await plane.http.post(base + "/offer", headers=pod, json={
        "files": [{"path": p, "size": 1, "mtime": 1.0} for p in bad] + [{"path": "ok.bin", "size": 1, "mtime": 1.0}]})
    assert r.status_code == 200, r.text
    actions = {f["path"]: f["action"] for f in r.json()["files"]}
    assert actions.pop("ok.bin") == "send" and set(actions.values()) == {"refuse"}
    r = await plane.http.put(base + "/upload", headers=pod, content=b"x",
                             params={"path": "../evil", "size": 1, "mtime": 1.0, "offset": 0})
    assert r.status_code == 422 and "leave the outputs folder" in r.json()["error"]["message"]
    r = await plane.http.put(base + "/upload", headers=pod, content=b"x",
                             params={"path": "ok.bin", "size": "one", "mtime": 1.0})
    assert r.status_code == 400
    r = await plane.http.post(base + "/offer", headers=pod, content=b"not json")
    assert r.status_code == 422
    # without the run's token, nothing
    assert (await plane.http.post(base + "/offer", json={"files": []})).status_code in (401, 403)
    assert not (Path(plane.control.settings.data_dir) / "evil").exists()


async def test_the_cap_and_a_full_disk_leave_an_event_and_the_files_home(tmp_path, monkeypatch):
    plane = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3, outputs_limit=6000,
                                            outputs_reserve_bytes=0))
    try:
        command = ("cd $PODTUI_OUTPUT_DIR && head -c 1000 /dev/urandom > a-small.bin && "
                   "head -c 8000 /dev/urandom > b-over-cap.bin && head -c 3000 /dev/urandom > c-disk.bin")
        outputs = plane.control.runner.app[OUTPUTS]
        real_write = outputs_module._write_all

        def write_all(fd: int, blocks: list[bytes]) -> None:
            if sum(len(b) for b in blocks) == 3000:  # the disk fills while c-disk.bin arrives
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write(fd, blocks)

        monkeypatch.setattr(outputs_module, "_write_all", write_all)
        run = await launch(plane, command=command)
        done = await plane.wait_status(run["id"], {"succeeded", "failed"}, timeout=30)
        assert done["status"] == "succeeded"  # never ended for the outputs

        async def final_sync_ended() -> bool:
            events = (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()
            return any(e["kind"] == "outputs_incomplete" for e in events)

        await wait_for(final_sync_ended, 20)
        page = await outputs_of(plane, run["id"])
        assert page["summary"]["files_moving"] == 0 and page["summary"]["state"] == "synced"
        assert [f["path"] for f in page["files"] if f["home_at"]] == ["a-small.bin"]
        assert (Path(page["folder"]) / "a-small.bin").stat().st_size == 1000
        events = {e["kind"]: e["message"] for e in (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()}
        assert "outputs cap reached" in events["outputs_full"] or "disk full" in events["outputs_full"]
        messages = [e["message"] for e in (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()]
        assert any("outputs cap reached: 'b-over-cap.bin'" in m for m in messages)
        assert any("disk full while receiving 'c-disk.bin'" in m for m in messages)
        assert not list((outputs.root / ".partial" / run["id"]).glob("*"))  # no partial copy left behind
        # A disk the check sees as full: refused before a byte moves.
        monkeypatch.setattr(outputs_module, "free_bytes", lambda path: 10)
        with pytest.raises(OutputRefused) as refused:
            await outputs.begin(run["id"], "d.bin", 100, 1.0)
        assert refused.value.code == "disk_full" and "Free some space" in refused.value.message
    finally:
        await plane.http.aclose()
        await plane.control.stop()


SLOW_SERVE = ("import sys, time, podtui.server.outputs as o; a = o._write_all; o.WRITE_BATCH = 1 << 20; "
              "o._write_all = lambda fd, b: (time.sleep(0.05), a(fd, b))[1]; "
              "from podtui.cli import main; sys.argv = ['podtui', 'serve']; main()")


def serve(env: dict[str, str], code: str | None = None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "podtui.cli", "serve"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{env['PODTUI_PORT']}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("podtui serve did not start")


def test_a_sync_cut_mid_file_by_a_killed_control_plane_resumes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PODTUI_DATA_DIR": str(tmp_path / "data"), "PODTUI_PORT": str(port),
           "PODTUI_CONFIG_FILE": str(tmp_path / "none.toml"), "PODTUI_SUPERVISOR_INTERVAL_S": "0.5",
           "NO_PROXY": "127.0.0.1", "PODTUI_OUTPUTS_RESERVE_BYTES": "0"}
    plane = serve(env, SLOW_SERVE)  # takes about 20 MiB/s: the kill lands mid-file
    token = (tmp_path / "data" / "admin_token").read_text().strip()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                        timeout=10)
    try:
        command = "head -c 50000000 /dev/urandom > $PODTUI_OUTPUT_DIR/model.bin"
        run_id = http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"],
                                                  "command": command}).json()["id"]
        partial_dir = tmp_path / "data" / "outputs" / ".partial" / run_id
        got = 0
        for _ in range(300):
            parts = list(partial_dir.glob("*")) if partial_dir.is_dir() else []
            got = parts[0].stat().st_size if parts else 0
            if got > 8_000_000:
                break
            time.sleep(0.02)
        plane.send_signal(signal.SIGKILL)
        plane.wait()
        cut_at = next(iter(partial_dir.glob("*"))).stat().st_size
        assert 0 < cut_at < 50_000_000
        time.sleep(1.0)
        plane = serve(env)
        deadline = time.time() + 60
        page: dict[str, Any] = {}
        while time.time() < deadline:
            page = http.get(f"/api/v1/runs/{run_id}/outputs").json()
            if page["summary"]["state"] == "home":
                break
            time.sleep(0.3)
        assert page["summary"]["state"] == "home", page
        run = http.get(f"/api/v1/runs/{run_id}").json()
        original = tmp_path / "data" / "pods" / run["pod_id"] / "work" / "outputs" / "model.bin"
        landed = Path(page["folder"]) / "model.bin"
        assert page["files"][0]["sha256"] == sha256_of(original) == sha256_of(landed)
        lines = http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 10000}).json()["lines"]
        assert not any("changed while it was sent" in line["text"] for line in lines)
        resumed = [int(m.group(1)) for line in lines
                   if (m := re.search(r"resuming output 'model.bin' at byte (\d+)", line["text"]))]
        assert resumed and resumed[-1] >= cut_at - 2_000_000  # went on from what had arrived, not from 0
    finally:
        http.close()
        plane.terminate()
        plane.wait(10)


async def test_sync_outputs_every_n_seconds_while_the_command_runs(local_plane):
    plane = local_plane
    command = "echo v1 > $PODTUI_OUTPUT_DIR/ckpt.bin && while [ ! -e $HOME/go ]; do sleep 0.05; done"
    run = await launch(plane, command=command, sync_outputs_s=1)
    await plane.wait_status(run["id"], {"training"}, timeout=30)

    async def arrived() -> bool:
        page = await outputs_of(plane, run["id"])
        return any(f["path"] == "ckpt.bin" and f["home_at"] for f in page["files"])

    await wait_for(arrived, 15)  # nobody asked: the interval did
    fresh = (await plane.http.get(f"/api/v1/runs/{run['id']}")).json()
    assert fresh["status"] == "training"
    (pod_dir(plane, fresh) / "go").touch()
    await plane.wait_status(run["id"], {"succeeded"}, timeout=30)


async def test_a_listing_of_many_files_is_planned_reading_the_store_once(tmp_path):
    """The answer to a pod's listing reads the run's outputs once, not once per file: with a read per file it took
    28 s for 4,000 files and 176 s for 10,000, past the agent's 120 s per request, so a big folder never came home
    while the pod billed its keep-alive."""
    from podtui.models import LaunchSpec, Run, RunStatus
    from podtui.server.outputs import Outputs
    from podtui.store import Store
    from tests.support import make_settings

    settings = make_settings(tmp_path)
    store = await Store.open(settings.store_path)
    try:
        run = Run(id="r1", name="x", provider="local", status=RunStatus.training, dataset_id="d",
                  created_at=time.time(), spec=LaunchSpec(dataset="demo", gpu_types=["local"]))
        await store.create_run(run, "0" * 64)
        await store.output_home("r1", "old.bin", 10, 1.0, "0" * 64)
        outputs = Outputs(settings, store)
        reads = 0
        output_files = store.output_files

        async def counted(run_id):
            nonlocal reads
            reads += 1
            return await output_files(run_id)

        store.output_files = counted
        files = [{"path": f"ckpt/{i}.bin", "size": 100, "mtime": 1.0} for i in range(300)]
        answers = await outputs.plan("r1", [*files, {"path": "old.bin", "size": 10, "mtime": 1.0}])
        assert reads == 1
        assert [a["action"] for a in answers] == ["send"] * 300 + ["skip"]
        settings.outputs_limit = 10 + 150  # the file home and one more
        answers = await outputs.plan("r1", [{"path": "big.bin", "size": 151, "mtime": 1.0},
                                            {"path": "fits.bin", "size": 150, "mtime": 1.0}])
        assert [a["action"] for a in answers] == ["refuse", "send"]
    finally:
        await store.close()
