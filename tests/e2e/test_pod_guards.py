"""The pod enforces the run's limits itself: with its control plane gone (a laptop asleep, a TUI closed with
"keep"), a pod still ends at its max runtime and at its budget's deadline, and does not end merely because the
control plane is unreachable while its command runs."""

import asyncio
import json
import time

from tests.support import make_settings, start_plane

from .helpers import group_alive


async def launch(plane, command, **spec):
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"], "command": command,
                                                     **spec})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def pod_pid(plane, run):
    pod_dir = plane.control.settings.data_dir / "pods" / run["pod_id"]
    return json.loads((pod_dir / "pod.json").read_text())["pid"]


async def gone_within(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not group_alive(pid):
            return True
        await asyncio.sleep(0.2)
    return False


async def stop(plane):
    await plane.http.aclose()
    await plane.control.stop()  # the pod keeps running, unsupervised


async def test_pod_ends_itself_at_max_runtime_with_the_control_plane_gone(tmp_path):
    plane = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3, pod_undelivered_keep_s=2,
                                            pod_limit_grace_s=0))
    run_id = await launch(plane, "echo go; sleep 600", max_runtime_s="5s")
    run = await plane.wait_status(run_id, {"training"}, timeout=30)
    pid = pod_pid(plane, run)
    await stop(plane)
    started = time.monotonic()
    assert await gone_within(pid, 20), "the pod outlived its max runtime"
    assert time.monotonic() - started >= 1.0  # it did not just die with the control plane
    again = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3))
    try:
        # its last report went to the control plane that was gone: the restarted one finds the pod ended
        run = await again.wait_status(run_id, {"failed", "terminated", "lost"}, timeout=30)
        assert run["status"] in ("lost", "failed"), run
        assert "while podtui was away" in run["status_reason"], run["status_reason"]
    finally:
        await stop(again)


async def test_pod_ends_itself_at_its_budget_deadline_with_the_control_plane_gone(tmp_path):
    # $3600 an hour: a $6 budget lasts 6 s from the pod's start; the deadline rides on the control plane's replies
    plane = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3, local_price_per_hour=3600.0,
                                            pod_undelivered_keep_s=2,
                                            pod_limit_grace_s=0))
    run_id = await launch(plane, "echo go; sleep 600", budget_usd=6)
    run = await plane.wait_status(run_id, {"training"}, timeout=30)
    pid = pod_pid(plane, run)
    await asyncio.sleep(1.5)  # a reply or two carried the deadline
    await stop(plane)
    assert await gone_within(pid, 20), "the pod outlived its budget"


async def test_an_unreachable_control_plane_alone_does_not_end_a_training_pod(tmp_path):
    settings = make_settings(tmp_path, supervisor_interval_s=0.3, pod_unreachable_limit_s=30)
    plane = await start_plane(settings)
    run_id = await launch(plane, "for i in $(seq 1 400); do echo step=$i loss=0.5; sleep 0.05; done")
    run = await plane.wait_status(run_id, {"training"}, timeout=30)
    pid = pod_pid(plane, run)
    await stop(plane)
    await asyncio.sleep(8)  # far past the agent's backoff; well under the long limit
    assert group_alive(pid), "the pod ended while its command was running"
    again = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3, port=settings.port))
    try:
        run = await again.wait_status(run_id, {"succeeded", "failed", "terminated", "lost"}, timeout=60)
        assert run["status"] == "succeeded", run["status_reason"]
        page = (await again.http.get(f"/api/v1/runs/{run_id}/metrics")).json()
        assert len(page["series"]["loss"]["steps"]) == 400  # nothing lost while the control plane was gone
    finally:
        await stop(again)


async def test_a_limit_the_pod_enforces_ends_the_run_as_terminated_with_why(tmp_path):
    # the supervisor looks rarely here: the pod's own stall check comes first and reports it
    plane = await start_plane(make_settings(tmp_path, supervisor_interval_s=30, stall_timeout_s=2.0,
                                            pod_limit_grace_s=0))
    try:
        run_id = await launch(plane, "echo one line; sleep 600")
        run = await plane.wait_status(run_id, {"terminated", "failed", "lost"}, timeout=40)
        assert run["status"] == "terminated", run
        assert run["status_reason"].startswith("stalled: no output for") and "enforced by the pod" in \
            run["status_reason"]
        assert await gone_within(pod_pid(plane, run), 20)
    finally:
        await stop(plane)
