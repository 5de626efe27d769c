"""A run's whole life on this machine: control plane on 127.0.0.1:0 + the local provider + the real start
script and agent."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support import free_port

from .helpers import group_alive, printed_metrics, stored_metrics


async def all_logs(plane, run_id):
    lines, after = [], -1
    while True:
        page = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"after_seq": after, "limit": 5000})).json()
        lines += page["lines"]
        if len(page["lines"]) < 5000:
            return lines
        after = page["lines"][-1]["seq"]


async def test_demo_run_succeeds_with_every_metric_and_line(local_plane):
    r = await local_plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"]})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    run = await local_plane.wait_status(run_id, {"succeeded", "failed", "lost", "terminated"}, timeout=60)
    assert run["status"] == "succeeded", run["status_reason"]
    lines = await all_logs(local_plane, run_id)
    assert [line["seq"] for line in lines] == list(range(len(lines)))
    printed = printed_metrics(lines)
    assert len([k for k in printed if k[0] == "loss"]) == int(os.environ["DEMO_STEPS"])
    page = (await local_plane.http.get(f"/api/v1/runs/{run_id}/metrics")).json()
    assert stored_metrics(page) == printed
    assert run["last_step"] == int(os.environ["DEMO_STEPS"])
    stats = await local_plane.store.download_token_stats(run_id)
    assert stats and all(s["revoked_at"] is not None for s in stats) and stats[0]["uses"] >= 1
    for _ in range(100):  # the token lives while the pod brings its outputs home, and goes with the pod
        revoked = await local_plane.store.ingest_token_hash(run_id)
        if revoked[1] is not None:
            break
        await asyncio.sleep(0.1)
    assert revoked[1] is not None
    kinds = [e["kind"] for e in (await local_plane.http.get(f"/api/v1/runs/{run_id}/events")).json()]
    for kind in ("provisioning", "attempt", "booting", "downloading", "training", "succeeded"):
        assert kind in kinds


async def test_failing_command_reports_exit_code_and_tail_and_leaves_no_process(local_plane):
    r = await local_plane.http.post("/api/v1/runs", json={
        "dataset": "demo", "gpu_types": ["local"], "command": "echo about to fail; echo oops >&2; exit 3"})
    run_id = r.json()["id"]
    run = await local_plane.wait_status(run_id, {"succeeded", "failed", "lost", "terminated"}, timeout=60)
    assert run["status"] == "failed" and run["exit_code"] == 3
    assert "exit code 3" in run["status_reason"]
    # one of the command's own lines (its two streams interleave as they come), not the start script's FAILED line
    assert run["status_reason"].endswith((": oops", ": about to fail")), run["status_reason"]
    events = (await local_plane.http.get(f"/api/v1/runs/{run_id}/events")).json()
    tail = next(e["message"] for e in events if e["kind"] == "failure_tail")
    assert "about to fail" in tail and "oops" in tail
    pod_dir = local_plane.control.settings.data_dir / "pods" / run["pod_id"]
    pid = json.loads((pod_dir / "pod.json").read_text())["pid"]
    child = json.loads((pod_dir / "agent.json").read_text())["child_pgid"]
    for _ in range(100):
        if not group_alive(pid) and not group_alive(child):
            break
        await asyncio.sleep(0.1)
    assert not group_alive(pid) and not group_alive(child)


async def test_a_stop_ends_the_run_as_stopped_not_failed(local_plane):
    """The agent reports its command killed by the stop (exit -15); the run stays what the user made it."""
    r = await local_plane.http.post("/api/v1/runs", json={
        "dataset": "demo", "gpu_types": ["local"], "command": "echo started; sleep 300"})
    run_id = r.json()["id"]
    await local_plane.wait_status(run_id, {"training"}, timeout=30)
    r = await local_plane.http.post(f"/api/v1/runs/{run_id}/stop")
    assert r.status_code == 200, r.text
    await asyncio.sleep(1.0)  # the agent's last report has come by now
    run = (await local_plane.http.get(f"/api/v1/runs/{run_id}")).json()
    assert run["status"] == "terminated" and run["status_reason"] == "stopped by the user", run


async def test_terminate_from_the_api_ends_the_process_group(local_plane):
    r = await local_plane.http.post("/api/v1/runs", json={
        "dataset": "demo", "gpu_types": ["local"], "command": "echo started; sleep 300"})
    run_id = r.json()["id"]
    await local_plane.wait_status(run_id, {"training"}, timeout=30)
    run = (await local_plane.http.get(f"/api/v1/runs/{run_id}")).json()
    pod_dir = local_plane.control.settings.data_dir / "pods" / run["pod_id"]
    pid = json.loads((pod_dir / "pod.json").read_text())["pid"]
    for _ in range(50):
        if (pod_dir / "agent.json").exists():
            break
        await asyncio.sleep(0.1)
    child = json.loads((pod_dir / "agent.json").read_text())["child_pgid"]
    r = await local_plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    assert r.status_code == 200 and r.json()["status"] == "terminated"
    assert not group_alive(pid) and not group_alive(child)


def start_serve(env):
    proc = subprocess.Popen([sys.executable, "-m", "podtui.cli", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['PODTUI_PORT']}"
    for _ in range(100):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(proc.stdout.read().decode())


@pytest.mark.parametrize("connect", ["push", "pull"])
def test_control_plane_killed_mid_run_loses_and_duplicates_nothing(tmp_path, connect):
    steps = 150
    env = {**os.environ, "PODTUI_DATA_DIR": str(tmp_path / "data"), "PODTUI_PORT": str(free_port()),
           "PODTUI_CONFIG_FILE": str(tmp_path / "none.toml"), "PODTUI_SUPERVISOR_INTERVAL_S": "0.5",
           "DEMO_STEPS": str(steps), "DEMO_STEP_SECONDS": "0.04", "NO_PROXY": "127.0.0.1"}
    url = f"http://127.0.0.1:{env['PODTUI_PORT']}"
    serve = start_serve(env)
    token = (tmp_path / "data" / "admin_token").read_text().strip()
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    try:
        run_id = http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"],
                                                  "connect": connect}).json()["id"]
        for _ in range(200):
            run = http.get(f"/api/v1/runs/{run_id}").json()
            if run["status"] == "training" and (run["last_step"] or 0) > 10:
                break
            time.sleep(0.1)
        serve.send_signal(signal.SIGKILL)
        serve.wait()
        time.sleep(2.0)  # the pod keeps training and buffering
        serve = start_serve(env)
        deadline = time.time() + 90
        while time.time() < deadline:
            run = http.get(f"/api/v1/runs/{run_id}").json()
            if run["status"] not in ("booting", "downloading", "training"):
                break
            time.sleep(0.3)
        assert run["status"] == "succeeded", run
        lines = http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 10000}).json()["lines"]
        assert [line["seq"] for line in lines] == list(range(len(lines)))
        for _ in range(150):  # the pod brings its outputs home, then ends
            if not http.get(f"/api/v1/runs/{run_id}").json()["keep_alive_until"]:
                break
            time.sleep(0.2)
        page = http.get(f"/api/v1/runs/{run_id}/metrics").json()
        assert page["series"]["loss"]["steps"] == list(range(1, steps + 1))
        assert stored_metrics(page) == printed_metrics(lines)
    finally:
        http.close()
        serve.terminate()
        serve.wait(10)


async def test_keep_alive_is_an_upper_bound_not_a_wait(local_plane):
    """Nothing in the outputs folder: the pod ends at once after success, long before its keep-alive."""
    r = await local_plane.http.post("/api/v1/runs", json={
        "dataset": "demo", "gpu_types": ["local"], "command": "echo done", "keep_alive_s": 600})
    run_id = r.json()["id"]
    run = await local_plane.wait_status(run_id, {"succeeded", "failed"}, timeout=30)
    assert run["status"] == "succeeded"
    pod_dir = local_plane.control.settings.data_dir / "pods" / run["pod_id"]
    pid = json.loads((pod_dir / "pod.json").read_text())["pid"]
    for _ in range(100):
        if not group_alive(pid):
            break
        await asyncio.sleep(0.1)
    assert not group_alive(pid)
    for _ in range(100):  # the window (600 s) closes as soon as the supervisor sees the pod gone
        if (await local_plane.http.get(f"/api/v1/runs/{run_id}")).json()["keep_alive_until"] is None:
            break
        await asyncio.sleep(0.1)
    assert (await local_plane.http.get(f"/api/v1/runs/{run_id}")).json()["keep_alive_until"] is None


async def test_a_gpu_the_local_provider_does_not_have_is_refused_at_launch(local_plane):
    r = await local_plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["NVIDIA GeForce RTX 4090"]})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "offers only the GPU type `local`" in message and "--gpu local" in message
    assert await local_plane.store.list_runs() == []
