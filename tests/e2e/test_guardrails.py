"""Each guardrail drives a local-provider run to `terminated` with the right reason (short limits)."""

import asyncio
import json
import os
import signal

import pytest

from podtui.server.guardrails import Limits, budget_warning, stop_reason
from tests.support import make_settings, start_plane

from .helpers import group_alive


async def plane_with(tmp_path, **limits):
    settings = make_settings(tmp_path, supervisor_interval_s=0.3, **limits)
    return await start_plane(settings)


async def launch(plane, command, **spec):
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"], "command": command,
                                                     **spec})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def ended(plane, run_id, timeout=30):
    return await plane.wait_status(run_id, {"terminated", "failed", "succeeded", "lost"}, timeout=timeout)


async def assert_pod_gone(plane, run):
    pod_dir = plane.control.settings.data_dir / "pods" / run["pod_id"]
    pid = json.loads((pod_dir / "pod.json").read_text())["pid"]
    for _ in range(100):
        if not group_alive(pid):
            return
        await asyncio.sleep(0.1)
    import subprocess

    ps = subprocess.run(["ps", "-o", "pid,pgid,stat,cmd", "-g", str(pid)], capture_output=True, text=True).stdout
    raise AssertionError("the pod's processes are still running: " + ps)


@pytest.fixture
async def close_planes():
    planes = []
    yield planes
    for p in planes:
        for run in await p.store.list_runs(live_only=True):
            await p.http.post(f"/api/v1/runs/{run.id}/terminate")
        await p.http.aclose()
        await p.control.stop()


async def test_max_runtime(tmp_path, close_planes):
    plane = await plane_with(tmp_path)
    close_planes.append(plane)
    run_id = await launch(plane, "echo started; sleep 60", max_runtime_s="2s")
    run = await ended(plane, run_id)
    assert run["status"] == "terminated" and "max runtime of 2 s reached" in run["status_reason"]
    await assert_pod_gone(plane, run)


async def test_budget_with_warning_first(tmp_path, close_planes):
    plane = await plane_with(tmp_path, local_price_per_hour=3600.0)  # a dollar a second
    close_planes.append(plane)
    run_id = await launch(plane, "sleep 60", budget_usd=3.0)
    run = await ended(plane, run_id)
    assert run["status"] == "terminated" and "budget of $3.00 reached" in run["status_reason"]
    kinds = [e["kind"] for e in (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()]
    assert kinds.index("budget_warning") < kinds.index("terminated")
    await assert_pod_gone(plane, run)


async def test_nan_loss(tmp_path, close_planes):
    plane = await plane_with(tmp_path)
    close_planes.append(plane)
    run_id = await launch(plane, "echo step=1 loss=0.5; echo step=2 loss=nan; sleep 60")
    run = await ended(plane, run_id)
    assert run["status"] == "terminated" and "loss became nan at step 2" in run["status_reason"]


async def test_stalled_run(tmp_path, close_planes):
    plane = await plane_with(tmp_path, stall_timeout_s=2.0)
    close_planes.append(plane)
    run_id = await launch(plane, "echo one line; sleep 60")
    run = await ended(plane, run_id)
    assert run["status"] == "terminated" and run["status_reason"].startswith("stalled: no metric and no log line")


async def test_heartbeats_stop_while_the_pod_runs(tmp_path, close_planes):
    plane = await plane_with(tmp_path, heartbeat_timeout_s=2.0)
    close_planes.append(plane)
    run_id = await launch(plane, "sleep 60")
    run = await plane.wait_status(run_id, {"training"}, timeout=30)
    pod_dir = plane.control.settings.data_dir / "pods" / run["pod_id"]
    agent_pid = json.loads((pod_dir / "agent.json").read_text())["agent_pid"]
    os.kill(agent_pid, signal.SIGSTOP)  # the agent hangs; the pod still runs
    try:
        run = await ended(plane, run_id)
    finally:
        os.kill(agent_pid, signal.SIGCONT)
    assert run["status"] == "terminated" and run["status_reason"].startswith("no heartbeat for")
    await assert_pod_gone(plane, run)


async def test_restart_resumes_supervision(tmp_path, close_planes):
    plane = await plane_with(tmp_path)
    run_id = await launch(plane, "sleep 60", max_runtime_s="4s")
    await plane.wait_status(run_id, {"training"}, timeout=30)
    await plane.http.aclose()
    await plane.control.stop()  # the pod keeps running, unsupervised
    again = await plane_with(tmp_path)
    close_planes.append(again)
    run = await ended(again, run_id)
    assert run["status"] == "terminated" and "max runtime" in run["status_reason"]
    await assert_pod_gone(again, run)


def test_stop_reason_is_pure_and_ordered():
    from podtui.models import LaunchSpec, Run, RunStatus

    limits = Limits(300, 1800, 1800, True, None, 0.8)
    run = Run(id="r", name="r", provider="local", status=RunStatus.training, dataset_id="d", created_at=0,
              started_at=0, price_per_hour=1.0, last_heartbeat=100, last_activity=100,
              spec=LaunchSpec(dataset="d", gpu_types=["x"], budget_usd=0.05))
    assert stop_reason(run, limits, 100) is None
    assert budget_warning(run, limits, 150) is not None  # 0.0417 of 0.05
    assert stop_reason(run, limits, 180).startswith("budget of $0.05 reached")
    no_budget = run.model_copy(update={"spec": run.spec.model_copy(update={"budget_usd": None})})
    assert stop_reason(no_budget, limits, 401).startswith("no heartbeat for")
    # silence heard by no one (the control plane asleep or stopped until 350) does not count yet
    assert stop_reason(no_budget, limits, 401, awake_since=350) is None
    assert stop_reason(no_budget, limits, 651, awake_since=350).startswith("no heartbeat for")
