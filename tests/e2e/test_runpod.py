"""The RunPod provider through the real runpod SDK against the fake RunPod API (tests/fakes/runpod_api.py)."""

import asyncio
import time

import pytest

from podtui.providers.local import LocalProvider
from podtui.providers.runpod import RunPodProvider
from tests.conftest import make_settings, start_plane
from tests.fakes.runpod_api import NO_CAPACITY, FakeRunPod

from .helpers import printed_metrics, stored_metrics
from .test_local_runs import free_port

GPU_A, GPU_B, GPU_C = "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000", "NVIDIA A100 80GB PCIe"


@pytest.fixture
async def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no real ~/.runpod/config.toml
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    api = FakeRunPod(tmp_path / "fake", execute=False)
    url = await api.start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", url)
    yield api
    await api.stop()


async def runpod_plane(tmp_path, key="test-key", **settings):
    port = free_port()
    values = {"port": port, "runpod_api_key": key, "provider": "runpod", "public_url": f"http://127.0.0.1:{port}",
              "allow_loopback_public_url": True, "supervisor_interval_s": 0.3}
    values.update(settings)
    s = make_settings(tmp_path, **values)
    providers = {"local": LocalProvider(s.data_dir / "pods"),
                 "runpod": RunPodProvider(key, backoff_s=0.05, terminate_confirm_s=5)}
    return await start_plane(s, providers)


@pytest.fixture
async def planes():
    made = []
    yield made
    for p in made:
        await p.http.aclose()
        await p.control.stop()


async def launch(plane, **spec):
    body = {"dataset": "demo", "gpu_types": [GPU_A], "provider": "runpod", **spec}
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def events_of(plane, run_id):
    return (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()


async def wait_pod(plane, run_id, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = (await plane.http.get(f"/api/v1/runs/{run_id}")).json()
        if run["pod_id"] or run["status"] not in ("pending", "provisioning"):
            return run
        await asyncio.sleep(0.1)
    raise AssertionError("no pod")


async def terminate_and_check_zero(plane, fake, run_id):
    r = await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    assert r.status_code == 200, r.text
    assert fake.live_pods() == []


async def test_offers_have_prices_and_stock_and_no_placeholder(fake, tmp_path, planes):
    fake.no_capacity.add(GPU_C)
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    offers = (await plane.http.get("/api/v1/gpus", params={"provider": "runpod"})).json()
    by_id = {o["id"]: o for o in offers}
    assert "unknown" not in by_id
    assert by_id[GPU_A]["secure_price"] == 0.69 and by_id[GPU_A]["community_price"] == 0.44
    assert by_id[GPU_A]["spot_price"] == 0.29 and by_id[GPU_A]["vram_gb"] == 24
    assert by_id[GPU_C]["stock"] == "None" and by_id[GPU_A]["stock"] == "High"


async def test_launch_through_the_sdk_runs_to_success(fake, tmp_path, planes, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "30")
    fake.execute = True
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    run_id = await launch(plane)
    run = await plane.wait_status(run_id, {"succeeded", "failed", "terminated", "lost"}, timeout=60)
    assert run["status"] == "succeeded", (run["status_reason"], await events_of(plane, run_id))
    assert run["gpu_type"] == GPU_A and run["price_per_hour"] == 0.69
    lines = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 5000})).json()["lines"]
    page = (await plane.http.get(f"/api/v1/runs/{run_id}/metrics")).json()
    assert len(page["series"]["loss"]["steps"]) == 30
    assert stored_metrics(page) == printed_metrics(lines)
    for _ in range(100):  # the agent ends its own pod with runpodctl
        if not fake.live_pods():
            break
        await asyncio.sleep(0.1)
    assert fake.live_pods() == []
    created = fake.pods[run["pod_id"]]
    for value in [created["dockerArgs"], *created["_envdict"].values()]:
        assert not set(value) & {'"', "\\", "\n"}


async def test_failover_across_three_gpu_types(fake, tmp_path, planes):
    fake.no_capacity |= {GPU_A, GPU_B}
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    run_id = await launch(plane, gpu_types=[GPU_A, GPU_B, GPU_C])
    run = await wait_pod(plane, run_id)
    assert run["gpu_type"] == GPU_C and run["pod_id"]
    attempts = [e for e in await events_of(plane, run_id) if e["kind"].startswith("attempt")]
    assert [a["kind"] for a in attempts] == ["attempt_failed", "attempt_failed", "attempt"]
    assert attempts[0]["message"] == f"{GPU_A}: RunPod: {NO_CAPACITY}"
    assert len(fake.live_pods()) == 1
    await terminate_and_check_zero(plane, fake, run_id)


async def test_no_capacity_anywhere_fails_with_the_types_tried(fake, tmp_path, planes):
    fake.no_capacity |= {GPU_A, GPU_B}
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    run_id = await launch(plane, gpu_types=[GPU_A, GPU_B])
    run = await plane.wait_status(run_id, {"failed"}, timeout=20)
    assert f"no capacity on RunPod for {GPU_A}, {GPU_B}" in run["status_reason"]
    assert fake.live_pods() == []


async def test_wrong_key_says_where_to_set_it(fake, tmp_path, planes):
    plane = await runpod_plane(tmp_path, key="wrong-key")
    planes.append(plane)
    run_id = await launch(plane)
    run = await plane.wait_status(run_id, {"failed"}, timeout=20)
    assert "rejected the API key" in run["status_reason"] and "RUNPOD_API_KEY" in run["status_reason"]
    assert fake.live_pods() == []
    r = await plane.http.get("/api/v1/gpus", params={"provider": "runpod"})
    assert r.status_code == 502 and "rejected the API key" in r.json()["error"]["message"]


@pytest.mark.parametrize("fault", ["429", "502"])
async def test_transient_answers_are_retried(fake, tmp_path, planes, fault):
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    await plane.runs.providers["runpod"].sdk()  # import first, so the fault hits the create call
    fake.queue_fault(fault)  # get_gpu (the SDK's check before creating) gets the fault
    fake.queue_fault(fault)
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id)
    assert run["pod_id"] and len(fake.live_pods()) == 1
    assert f"fault:{fault}" in fake.calls
    messages = [e["message"] for e in await events_of(plane, run_id)]
    assert any("did not answer usably" in m and "trying again" in m for m in messages), messages
    await terminate_and_check_zero(plane, fake, run_id)


async def test_persistent_502_fails_the_run_and_leaves_no_pod(fake, tmp_path, planes):
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    await plane.runs.providers["runpod"].sdk()
    for _ in range(20):
        fake.queue_fault("502")
    run_id = await launch(plane)
    run = await plane.wait_status(run_id, {"failed"}, timeout=30)
    assert "did not answer usably" in run["status_reason"]
    assert fake.live_pods() == []


async def test_lost_create_answer_is_reconciled_by_name_without_a_second_pod(fake, tmp_path, planes):
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    fake.drop_next_create = "502"
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id)
    assert len(fake.live_pods()) == 1 and fake.live_pods()[0]["id"] == run["pod_id"]
    assert fake.calls.count("podFindAndDeployOnDemand") == 1
    messages = [e["message"] for e in await events_of(plane, run_id)]
    assert any("found pod" in m and "by its name" in m for m in messages), messages
    await terminate_and_check_zero(plane, fake, run_id)


@pytest.mark.timeout(120)
async def test_create_hanging_past_the_sdk_timeout_is_reconciled(fake, tmp_path, planes):
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    fake.drop_next_create = "hang"
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id, timeout=60)
    assert run["pod_id"] and len(fake.live_pods()) == 1
    assert fake.calls.count("podFindAndDeployOnDemand") == 1
    await terminate_and_check_zero(plane, fake, run_id)


async def test_spot_launch_uses_podRentInterruptable(fake, tmp_path, planes):
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    run_id = await launch(plane, spot=True, cloud_type="COMMUNITY")
    run = await wait_pod(plane, run_id)
    assert "podRentInterruptable" in fake.calls and run["price_per_hour"] == 0.29
    await terminate_and_check_zero(plane, fake, run_id)


async def test_orphans_are_listed_and_can_be_terminated(fake, tmp_path, planes):
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    run_id = await launch(plane)
    await wait_pod(plane, run_id)
    orphan = fake._deploy({"gpuTypeId": GPU_B, "name": "podtui-0123456789", "imageName": "x", "dockerArgs": "true"},
                          spot=False)
    fake._deploy({"gpuTypeId": GPU_B, "name": "someone-elses-pod", "imageName": "x", "dockerArgs": "true"}, False)
    listed = (await plane.http.get("/api/v1/pods/orphans")).json()
    assert [o["pod_id"] for o in listed] == [orphan["id"]]
    run_pod = (await plane.http.get(f"/api/v1/runs/{run_id}")).json()["pod_id"]
    r = await plane.http.post(f"/api/v1/pods/runpod/{run_pod}/terminate")
    assert r.status_code == 409
    r = await plane.http.post(f"/api/v1/pods/runpod/{orphan['id']}/terminate")
    assert r.status_code == 200 and fake.pods[orphan["id"]]["desiredStatus"] == "TERMINATED"
    await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    assert [p["name"] for p in fake.live_pods()] == ["someone-elses-pod"]


async def test_localhost_public_url_is_refused_for_runpod(fake, tmp_path, planes):
    plane = await runpod_plane(tmp_path, allow_loopback_public_url=False, public_url="http://localhost:8765")
    planes.append(plane)
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_A], "provider": "runpod"})
    assert r.status_code == 409 and "cannot reach http://localhost:8765" in r.json()["error"]["message"]
    plane2 = await runpod_plane(tmp_path / "b", allow_loopback_public_url=False, public_url=None)
    planes.append(plane2)
    r = await plane2.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_A], "provider": "runpod"})
    assert r.status_code == 409 and "PODTUI_PUBLIC_URL" in r.json()["error"]["message"]
    assert fake.live_pods() == []


async def test_supervisor_fails_a_run_whose_container_exited(fake, tmp_path, planes):
    plane = await runpod_plane(tmp_path)
    planes.append(plane)
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id)
    fake.pods[run["pod_id"]]["desiredStatus"] = "EXITED"
    run = await plane.wait_status(run_id, {"lost", "failed"}, timeout=20)
    assert "EXITED" in run["status_reason"]
    for _ in range(100):  # an exited pod still bills for its disk: the supervisor terminates it
        if fake.pods[run["pod_id"]]["desiredStatus"] == "TERMINATED":
            break
        await asyncio.sleep(0.1)
    assert fake.live_pods() == []
