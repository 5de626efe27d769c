"""A laptop with only a RunPod key: pull mode through the fake RunPod API (execute mode) and the fake of RunPod's
HTTPS proxy (524 after its timeout, 413 past 100 MB, injected 502s). Every test ends with no pod left."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.fakes.runpod_proxy import FakeRunPodProxy
from tests.fakes.runpod_v2 import GPU_4090, FakeRunPodV2
from tests.support import free_port, make_settings, settle, start_plane

from .helpers import printed_metrics, stored_metrics

FINAL = {"succeeded", "failed", "terminated", "lost"}


@pytest.fixture
async def cloud(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    api = FakeRunPodV2(tmp_path / "fake", execute=True)
    api.rate_limits = [("minute", 100_000, 60)]
    await api.start()
    proxy = FakeRunPodProxy(api)
    await proxy.start()
    yield api, proxy
    await proxy.stop()
    await api.stop()
    assert api.response_errors == []
    assert api.live_pods() == []


async def laptop_plane(tmp_path, api, proxy, **settings):
    """No public URL at all: only the RunPod key."""
    values = {"runpod_api_key": "test-key", "provider": "runpod", "runpod_api_url": api.url,
              "runpod_pod_api_url": api.url, "runpod_proxy_url": proxy.template, "pod_port": free_port(),
              "supervisor_interval_s": 0.3}
    values.update(settings)
    return await start_plane(make_settings(tmp_path, **values))


async def finish(plane, run_id):
    run = await plane.wait_status(run_id, FINAL, timeout=90)
    await settle(plane)  # the pod brings its outputs home, then ends
    events = (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()
    return run, events


async def test_demo_through_the_proxy_with_only_a_key(cloud, tmp_path, monkeypatch):
    api, proxy = cloud
    monkeypatch.setenv("DEMO_STEPS", "200")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.005")
    plane = await laptop_plane(tmp_path, api, proxy)
    try:
        r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090]})
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        assert r.json()["connect"] == "pull"
        proxy.queue_502(3)  # the proxy hiccups while the pod boots
        run, events = await finish(plane, run_id)
        assert run["status"] == "succeeded", (run["status_reason"], events)
        page = (await plane.http.get(f"/api/v1/runs/{run_id}/metrics")).json()
        lines = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 5000})).json()["lines"]
        assert len(page["series"]["loss"]["steps"]) == 200
        assert {k: v for k, v in stored_metrics(page).items() if not k[0].startswith("gpu_")} == \
            printed_metrics(lines)
        assert any(status == 200 and "/v1/outbox" in path for _, path, status in proxy.requests)
    finally:
        await plane.http.aclose()
        await plane.control.stop()


async def test_a_300_mb_dataset_through_the_100_mb_body_limit(cloud, tmp_path, monkeypatch):
    api, proxy = cloud
    data = tmp_path / "big.bin"
    with open(data, "wb") as f:
        for _ in range(300):
            f.write(os.urandom(1 << 20))
    plane = await laptop_plane(tmp_path, api, proxy)
    try:
        r = await plane.http.post("/api/v1/datasets", json={"path": str(data), "name": "big"})
        assert r.status_code == 201, r.text
        command = "python3 -c \"import hashlib,os;print(hashlib.sha256(open(os.environ['PODTUI_DATASET_PATH'],'rb')" \
                  ".read()).hexdigest())\""
        r = await plane.http.post("/api/v1/runs", json={"dataset": "big", "gpu_types": [GPU_4090],
                                                        "command": command})
        run_id = r.json()["id"]
        run, events = await finish(plane, run_id)
        assert run["status"] == "succeeded", (run["status_reason"], events)
        lines = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 5000})).json()["lines"]
        sha = (await plane.store.find_dataset(run["dataset_id"])).dataset.sha256
        assert any(line["text"] == sha for line in lines)
        assert 0 < proxy.largest_body <= 32 * 1024 * 1024 < proxy.body_limit
        assert not any(status == 413 for _, _, status in proxy.requests)
    finally:
        await plane.http.aclose()
        await plane.control.stop()


async def test_doctor_and_launch_say_which_mode_and_why(cloud, tmp_path):
    api, proxy = cloud
    plane = await laptop_plane(tmp_path, api, proxy)
    try:
        r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090],
                                                        "connect": "push"})
        assert r.status_code == 409 and "--connect pull" in r.json()["error"]["message"]
    finally:
        await plane.http.aclose()
        await plane.control.stop()


async def test_tui_on_a_laptop_with_only_a_key_launches_watches_and_ends_a_run(cloud, tmp_path, monkeypatch):
    from podtui.app import PodtuiApp
    from podtui.screens.confirm import ConfirmScreen
    from podtui.screens.launch import LaunchScreen
    from podtui.widgets.offers_table import OffersTable
    from tests.tui.test_app import wait_for

    api, proxy = cloud
    monkeypatch.setenv("DEMO_STEPS", "3000")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.05")
    settings = make_settings(tmp_path, port=free_port(), runpod_api_key="test-key", provider="runpod",
                             runpod_api_url=api.url, runpod_pod_api_url=api.url, runpod_proxy_url=proxy.template,
                             pod_port=free_port(), supervisor_interval_s=0.3)
    app = PodtuiApp(settings)
    async with app.run_test(size=(170, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        assert "RunPod pods: pull" in app.status_line(settings.local_url)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen)
                       and app.screen.query_one(OffersTable).row_count == 3)
        app.screen.query_one(OffersTable).focus()
        await pilot.press("space", "ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen))
        runs = app.live.runs
        await wait_for(pilot, lambda: len(runs) == 1)
        run_id = next(iter(runs))
        await wait_for(pilot, lambda: runs[run_id].last_step is not None and runs[run_id].last_step > 5, timeout=60)
        assert app.live.runs[run_id].connect == "pull"
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.live.runs[run_id].status.value == "terminated")
        await wait_for(pilot, lambda: not api.live_pods(), timeout=10)


async def test_a_pod_that_cannot_end_itself_is_heard_through_the_proxy_and_ended(cloud, tmp_path, monkeypatch):
    api, proxy = cloud
    monkeypatch.setenv("DEMO_STEPS", "10")
    api.pod_delete_denied = True  # RunPod answers the pod's own key 404: "not found or not accessible"
    plane = await laptop_plane(tmp_path, api, proxy, pod_end_proof_s=2.0)
    try:
        r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090],
                                                        "keep_alive_s": 600})
        run_id = r.json()["id"]
        run = await plane.wait_status(run_id, FINAL, timeout=90)
        assert run["status"] == "succeeded", run["status_reason"]
        # Its outputs home, the pod asks RunPod to end it, is still there 2 s later, and says so in its next
        # report, which the control plane pulls through the proxy; it ends the pod with the user's key.
        ended = None
        for _ in range(150):
            events = (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()
            ended = next((e for e in events if e["kind"] == "pod_ended"), None)
            if ended:
                break
            await asyncio.sleep(0.2)
        kinds = [e["kind"] for e in events]
        assert ended is not None and "pod_end_failed" in kinds, events
        assert api.live_pods() == [] and api.restarts[run["pod_id"]] == 0
    finally:
        await plane.http.aclose()
        await plane.control.stop()


async def test_a_restarted_container_in_pull_mode_is_replaced_and_resumes(cloud, tmp_path, monkeypatch):
    """Pull mode sees a restart as the agent saying "not started" again: with --retries a new pod gets the outputs
    home through its `resume` input slot and goes on from the checkpoint (issue 26)."""
    import asyncio
    import time

    api, proxy = cloud
    monkeypatch.setenv("DEMO_STEPS", "300")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.03")
    monkeypatch.setenv("DEMO_CHECKPOINT_EVERY", "20")
    plane = await laptop_plane(tmp_path, api, proxy)
    try:
        r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090], "retries": 1,
                                                        "sync_outputs_s": 1})
        run_id = r.json()["id"]
        deadline = time.monotonic() + 90
        while True:
            files = (await plane.http.get(f"/api/v1/runs/{run_id}/outputs")).json()["files"]
            if any(f["path"] == "checkpoint.json" and f["size"] for f in files):
                break
            assert time.monotonic() < deadline, "no checkpoint home"
            await asyncio.sleep(0.2)
        first = (await plane.http.get(f"/api/v1/runs/{run_id}")).json()
        api.restart_container(first["pod_id"])
        run, events = await finish(plane, run_id)
        assert run["status"] == "succeeded", (run["status_reason"], events)
        assert run["attempt"] == 2 and "container restarted" in run["attempts"][0]["reason"]
        assert api.pods[first["pod_id"]]["status"] == "TERMINATED"
        lines = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 5000})).json()["lines"]
        resumed = int(next(line["text"].split()[5] for line in lines
                           if line["text"].startswith("demo trainer: resuming from step")))
        series = (await plane.http.get(f"/api/v1/runs/{run_id}/metrics", params={"name": "loss"})).json()
        steps = series["series"]["loss"]["steps"]
        assert steps == sorted(set(steps)) and steps[-1] == 300
        assert set(range(resumed + 1, 301)) <= set(steps)  # from the checkpoint on, every step
        # Before it, what the lost pod delivered: from step 1 without a gap (its last few reports can die with it,
        # after the checkpoint came home: a CI run stored up to 57 with the checkpoint at 60).
        early = [step for step in steps if step <= resumed]
        assert early == list(range(1, len(early) + 1))
    finally:
        await plane.http.aclose()
        await plane.control.stop()
