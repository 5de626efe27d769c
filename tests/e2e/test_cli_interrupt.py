"""Ctrl+C during `podtui launch --wait`: the user is told what keeps running and billing, and how to follow or
terminate it (a new user's Ctrl+C exited 130 with nothing said, the pod training on)."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import subprocess
import sys
import time

from tests.support import Plane


def _launch_wait(plane: Plane, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    env.pop("PODTUI_SERVER", None)
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "podtui.cli", "--server", plane.url, "--token", plane.control.admin_token,
         "launch", "--dataset", "demo", "--gpu", "local", "--command", "sleep 120", "--budget", "5",
         "--name", "ctrlc", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_hear_ctrl_c, **kwargs)


def _never_left(proc: subprocess.Popen[str]) -> None:
    """A CLI that did not end in time is killed: it would follow its run long after the test."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _hear_ctrl_c() -> None:
    """A suite started in the background (`cmd &` in a script) ignores SIGINT, and so would the CLI it starts
    (Python leaves an ignored SIGINT ignored): give the CLI the terminal's default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _wait_live(plane: Plane) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = await plane.store.list_runs()
        if runs and runs[0].status.value in ("training", "downloading", "booting"):
            return str(runs[0].id)
        await asyncio.sleep(0.2)
    raise AssertionError("the launched run never got going")


async def test_ctrl_c_says_the_pod_keeps_billing_and_how_to_follow_or_end_it(local_plane):
    plane = local_plane
    proc = _launch_wait(plane)
    run_id = await _wait_live(plane)
    await asyncio.sleep(0.5)  # into the follow loop
    proc.send_signal(signal.SIGINT)
    try:
        out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        _never_left(proc)
    assert proc.returncode == 130, (out, err)
    assert f"ctrlc ({run_id}) goes on" in err and "keeps running" in err
    assert "budget $5.00" in err
    assert f"podtui --server {plane.url} logs {run_id} --follow" in err
    assert f"podtui --server {plane.url} terminate {run_id}" in err
    assert "Traceback" not in err
    run = (await plane.http.get(f"/api/v1/runs/{run_id}")).json()
    assert run["status"] == "training"  # not asked at a pipe: kept


async def test_ctrl_c_at_a_terminal_asks_and_terminates_on_yes(local_plane):
    plane = local_plane
    master, slave = pty.openpty()
    proc = _launch_wait(plane, stdin=slave)
    try:
        run_id = await _wait_live(plane)
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        os.write(master, b"y\n")
        _out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        _never_left(proc)
        os.close(slave)
        os.close(master)
    assert "Terminate ctrlc now? [y/N]" in err, err
    assert "terminated" in err and "Traceback" not in err
    run = await plane.wait_status(run_id, {"terminated"}, timeout=30)
    assert run["status"] == "terminated"


def test_the_note_of_a_rented_pod_says_its_rate_and_limits():
    from podtui.cli import interrupted_note
    from podtui.models import LaunchSpec, Run, RunStatus

    now = time.time()
    run = Run(id="abc123", name="big", provider="runpod", status=RunStatus.training, dataset_id="d",
              spec=LaunchSpec(dataset="demo", gpu_types=["NVIDIA A100 80GB PCIe"], command="x", max_runtime_s=7200),
              price_per_hour=1.64, created_at=now - 3600, started_at=now - 3600)
    note = interrupted_note(run, "", now)
    assert "keeps running and billing at $1.64/h ($1.64 so far)" in note
    assert "max runtime 2h" in note and "podtui terminate abc123" in note and "podtui logs abc123 --follow" in note
    ended = run.model_copy(update={"status": RunStatus.failed, "ended_at": now, "keep_alive_until": None})
    assert "nothing bills" in interrupted_note(ended, "", now)


async def test_launch_wait_rides_out_a_control_plane_restart(tmp_path):
    """`launch --wait` exited 2 when the control plane went away, leaving the run billing unseen: it says the
    control plane is unreachable, keeps asking, and follows the run to its end when it answers again."""
    import threading

    from tests.support import free_port, make_settings, start_plane, stop_local_plane

    port = free_port()
    settings = make_settings(tmp_path, port=port)
    plane = await start_plane(settings)
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    env.pop("PODTUI_SERVER", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "podtui.cli", "--server", plane.url, "--token", plane.control.admin_token,
         "launch", "--dataset", "demo", "--gpu", "local", "--command", "sleep 4; echo done", "--keep-alive", "0",
         "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        await _wait_live(plane)
        await plane.http.aclose()
        await plane.control.stop()
        deadline = time.monotonic() + 60
        while not any("unreachable since" in line for line in said) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert any("⚠ control plane unreachable since" in line and "the run goes on" in line for line in said), said
        plane = await start_plane(make_settings(tmp_path, port=port))
        code = await asyncio.to_thread(proc.wait, 120)
        reader.join(5)
        out = proc.stdout.read() if proc.stdout else ""
        assert code == 0, (out, said)
        assert any("answers again" in line for line in said) and "run succeeded" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        await stop_local_plane(plane)


async def test_logs_follow_rides_out_a_control_plane_restart(tmp_path):
    """`podtui logs RUN --follow` ended with an error when the control plane went away; it keeps following."""
    import threading

    from tests.support import free_port, make_settings, start_plane, stop_local_plane

    port = free_port()
    plane = await start_plane(make_settings(tmp_path, port=port))
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"], "keep_alive_s": 0,
                                                     "command": "echo before-the-gap; sleep 5; echo after-the-gap"})
    run_id = r.json()["id"]
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    env.pop("PODTUI_SERVER", None)
    proc = subprocess.Popen([sys.executable, "-m", "podtui.cli", "--server", plane.url, "--token",
                             plane.control.admin_token, "logs", run_id, "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out: list[str] = []
    err: list[str] = []
    threads = [threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True),  # type: ignore[arg-type]
               threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while not any("before-the-gap" in line for line in out) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await plane.http.aclose()
        await plane.control.stop()
        while not any("unreachable since" in line for line in err) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert any("the run goes on" in line for line in err), err
        plane = await start_plane(make_settings(tmp_path, port=port))
        code = await asyncio.to_thread(proc.wait, 120)
        for t in threads:
            t.join(5)
        assert code == 0, (out, err)
        assert any("after-the-gap" in line for line in out) and any("answers again" in line for line in err)
    finally:
        if proc.poll() is None:
            proc.kill()
        await stop_local_plane(plane)
