"""A run outlives its pod on RunPod (issue 26), against the fake RunPod v2 API: a pod that vanishes (404), one that
goes EXITED (a spot pod taken back too), a container restart, a boot that fails on its host. In each, the run's pods
at the fake are watched the whole time: never two live at once, none at the end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from podtui.server import keys
from tests.fakes.runpod_v2 import GPU_4090, GPU_A6000

from .test_runpod import FINAL, events_of, fake, launch, plane_for, planes, run_of, wait_event, wait_pod  # noqa: F401


class PodCounter:
    """Samples the fake's live pods of one name every 10 ms (the fake runs in this event loop): the most seen."""

    def __init__(self, api: Any) -> None:
        self.fake = api
        self.most = 0
        self.names: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self, run_id: str) -> None:
        self.names.add(f"podtui-{run_id}")

    def live(self) -> int:
        return len([p for p in self.fake.live_pods() if p["name"] in self.names])

    async def _sample(self) -> None:
        while True:
            self.most = max(self.most, self.live())
            await asyncio.sleep(0.01)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def pods(fake: Any) -> AsyncIterator[PodCounter]:  # noqa: F811
    counter = PodCounter(fake)
    counter.start()
    yield counter
    await counter.stop()
    assert counter.most <= 1, f"{counter.most} pods of one run were live at once"


async def wait_attempt(plane: Any, run_id: str, attempt: int, timeout: float = 30) -> dict[str, Any]:
    """The run once its attempt `attempt` has a pod."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await run_of(plane, run_id)
        if (run["attempt"] == attempt and run["pod_id"]) or run["status"] in FINAL:
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"no attempt {attempt}: {await events_of(plane, run_id)}")


async def end_and_check_zero(plane: Any, fake: Any, pods: PodCounter, run_id: str) -> None:  # noqa: F811
    r = await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    assert r.status_code == 200, r.text
    assert pods.live() == 0 and fake.live_pods() == []


async def test_a_vanished_pod_is_replaced_then_retries_run_out(fake, tmp_path, planes, pods):  # noqa: F811
    plane = await plane_for(tmp_path, fake, planes, provider_options={"gone_grace_s": 0.3})
    run_id = await launch(plane, retries=1, gpu_types=[GPU_A6000, GPU_4090])
    pods.watch(run_id)
    first = await wait_pod(plane, run_id)
    assert first["spec"]["retries"] == 1 and first["attempt"] == 1
    fake.pods.pop(first["pod_id"])  # gone from RunPod without podtui asking: 404 on GET, not listed
    second = await wait_attempt(plane, run_id, 2)
    assert second["status"] in ("booting", "provisioning") and second["pod_id"] != first["pod_id"]
    assert second["gpu_type"] == first["gpu_type"] == GPU_A6000  # the lost pod's type first
    lost = await wait_event(plane, run_id, "attempt_lost")
    assert first["pod_id"] in lost["message"] and "attempt 1 of 2" in lost["message"]
    assert second["attempts"][0]["pod_id"] == first["pod_id"] and second["attempts"][0]["reason"]
    fake.pods.pop(second["pod_id"])
    run = await plane.wait_status(run_id, FINAL, timeout=30)
    assert run["status"] == "lost" and "no new pod: its 1 retry is used up" in run["status_reason"], run
    assert len([c for c in fake.calls if c == "POST /v2/pods"]) == 2
    assert pods.live() == 0 and fake.live_pods() == []


async def test_an_exited_pod_is_terminated_before_its_replacement_exists(fake, tmp_path, planes, pods):  # noqa: F811
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane)  # RunPod's default: 2 retries
    pods.watch(run_id)
    first = await wait_pod(plane, run_id)
    assert first["spec"]["retries"] == 2
    await asyncio.sleep(0.5)
    fake.pods[first["pod_id"]]["status"] = "EXITED"  # the container stopped; the pod still exists
    second = await wait_attempt(plane, run_id, 2)
    assert fake.pods[first["pod_id"]]["status"] == "TERMINATED"
    deleted = [r for r in fake.requests if r.startswith(f"DELETE /v2/pods/{first['pod_id']}")]
    assert deleted and second["pod_id"] != first["pod_id"]
    assert "EXITED" in second["attempts"][0]["reason"]
    assert second["attempts"][0]["cost_usd"] > 0 and second["attempts"][0]["ended_at"] >= first["started_at"]
    await end_and_check_zero(plane, fake, pods, run_id)


async def test_a_spot_pod_taken_back_is_rented_again(fake, tmp_path, planes, pods):  # noqa: F811
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, spot=True, cloud_type="COMMUNITY", retries=1)
    pods.watch(run_id)
    first = await wait_pod(plane, run_id, timeout=30)
    fake.pods[first["pod_id"]]["status"] = "EXITED"  # an interruptible pod is stopped when it is outbid
    second = await wait_attempt(plane, run_id, 2)
    assert second["pod_id"] != first["pod_id"]
    assert fake.calls.count("graphql:podRentInterruptable") == 2
    await end_and_check_zero(plane, fake, pods, run_id)


async def test_a_boot_that_fails_on_its_host_moves_to_another_pod(fake, tmp_path, planes, pods):  # noqa: F811
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, retries=2)
    pods.watch(run_id)
    first = await wait_pod(plane, run_id)
    fake.fail_pod(first["pod_id"], "Error: failed to pull image: manifest unknown")  # ERROR while booting
    second = await wait_attempt(plane, run_id, 2)
    assert second["pod_id"] != first["pod_id"] and "ERROR" in second["attempts"][0]["reason"]
    await end_and_check_zero(plane, fake, pods, run_id)


async def test_a_pod_silent_and_not_running_is_lost_then_the_guardrail_ends_it(fake, tmp_path, planes, pods):  # noqa: F811
    fake.boot_delay_s = 10_000  # the host never gets the container running (an image pull that hangs)
    plane = await plane_for(tmp_path, fake, planes, boot_timeout_s=1.0)
    run_id = await launch(plane, retries=1)
    pods.watch(run_id)
    first = await wait_pod(plane, run_id)
    second = await wait_attempt(plane, run_id, 2)
    assert "no report within" in second["attempts"][0]["reason"] and "reports pod" in second["attempts"][0]["reason"]
    run = await plane.wait_status(run_id, FINAL, timeout=30)
    assert run["status"] == "lost" and "no new pod: its 1 retry is used up" in run["status_reason"], run
    assert first["pod_id"] != run["pod_id"]
    assert pods.live() == 0 and fake.live_pods() == []


async def test_a_user_terminate_is_never_retried(fake, tmp_path, planes, pods):  # noqa: F811
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, retries=2)
    pods.watch(run_id)
    await wait_pod(plane, run_id)
    await end_and_check_zero(plane, fake, pods, run_id)
    await asyncio.sleep(1.0)  # several supervisor passes
    run = await run_of(plane, run_id)
    assert run["status"] == "terminated" and run["attempt"] == 1
    assert len([c for c in fake.calls if c == "POST /v2/pods"]) == 1


async def test_a_spent_budget_makes_no_new_pod(fake, tmp_path, planes, pods):  # noqa: F811
    # No supervisor passes of its own: the test runs the one pass that finds the pod gone and the budget spent,
    # before any guardrail pass could end the run first.
    plane = await plane_for(tmp_path, fake, planes, supervisor_interval_s=3600,
                            provider_options={"gone_grace_s": 0.0})
    run_id = await launch(plane, retries=2, budget_usd=0.0001)  # $0.69/h: spent after half a second
    pods.watch(run_id)
    first = await wait_pod(plane, run_id)
    await asyncio.sleep(1.0)
    fake.pods[first["pod_id"]]["status"] = "TERMINATED"  # gone without podtui asking
    supervisor = plane.control.runner.app[keys.SUPERVISOR]
    for _ in range(2):  # RunPod's listing lags: a pod is gone after two misses in a row
        await supervisor.check_once()
    run = await plane.wait_status(run_id, FINAL, timeout=10)
    assert run["status"] == "lost" and "no new pod: its budget of $0.00 is spent" in run["status_reason"], run
    assert len([c for c in fake.calls if c == "POST /v2/pods"]) == 1
    assert run["attempt"] == 1 and pods.live() == 0


async def test_a_container_restart_resumes_from_the_checkpoint_on_a_new_pod(fake, tmp_path, planes, pods,  # noqa: F811
                                                                            monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "400")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.03")
    monkeypatch.setenv("DEMO_CHECKPOINT_EVERY", "20")
    fake.execute = True
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, retries=1, sync_outputs_s=1)
    pods.watch(run_id)

    async def checkpoint_home() -> bool:
        files = (await plane.http.get(f"/api/v1/runs/{run_id}/outputs")).json()["files"]
        return any(f["path"] == "checkpoint.json" and f["size"] for f in files)

    deadline = time.monotonic() + 90
    while not await checkpoint_home():
        assert time.monotonic() < deadline, await events_of(plane, run_id)
        await asyncio.sleep(0.2)
    first = await run_of(plane, run_id)
    fake.restart_container(first["pod_id"])
    second = await wait_attempt(plane, run_id, 2, timeout=60)
    assert "container restarted" in second["attempts"][0]["reason"]
    run = await plane.wait_status(run_id, FINAL, timeout=120)
    assert run["status"] == "succeeded", run["status_reason"]
    lines = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 10000})).json()["lines"]
    resumed = [line["text"] for line in lines if line["text"].startswith("demo trainer: resuming from step")]
    assert resumed and resumed[0].endswith("attempt 2)"), resumed
    assert any(line["stream"] == "system" and "attempt 2 resumes" in line["text"] for line in lines)
    assert fake.restarts[first["pod_id"]] >= 1 and fake.pods[first["pod_id"]]["status"] == "TERMINATED"
