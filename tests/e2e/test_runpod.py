"""The RunPod provider on REST v2 against the fake RunPod API (tests/fakes/runpod_v2.py, held to RunPod's OpenAPI
document), through a real control plane. Every test ends with no pod left at the fake."""

from __future__ import annotations

import asyncio
import time

import pytest

from podtui.bootstrap.script import BOOT_COMMAND
from podtui.models import DEFAULT_IMAGE
from podtui.providers.base import PodRequest, ProviderError
from podtui.providers.local import LocalProvider
from podtui.providers.runpod import RunPodProvider
from podtui.server import keys
from tests.fakes.runpod_v2 import GPU_4090, GPU_A100, GPU_A6000, NO_CAPACITY, SERVING_LINE, FakeRunPodV2
from tests.support import free_port, make_settings, start_plane

from .helpers import printed_metrics, stored_metrics

FINAL = {"succeeded", "failed", "terminated", "lost"}
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILXGDN/SclOozk1xsDztpmhGiKkkrfQB9SKoO8dSIQQZ me@example.com"
AGENT_ENV_BUDGET = 40_000
"""Our budget for the agent carried in a pull-mode pod's env (about 31 KB now: the zipapp, comments and docstrings
left out). RunPod documents no limit on an env value; Linux takes 128 KiB per string. A create RunPod refused for
it would fail the run with RunPod's words."""


@pytest.fixture
async def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no real ~/.runpod/config.toml for the SDK (spot)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    api = FakeRunPodV2(tmp_path / "fake")
    # RunPod's own quota is 60 requests a minute; tests poll faster (test_rate_limit_headers_hold_requests).
    api.rate_limits = [("minute", 100_000, 60), ("hour", 1_000_000, 3600), ("day", 10_000_000, 86400)]
    url = await api.start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", url)  # the SDK's GraphQL (spot only)
    yield api
    await api.stop()
    assert api.response_errors == []
    assert api.live_pods() == [], [(p["id"], p["name"], p["status"]) for p in api.live_pods()]


def provider_for(fake, key="test-key", **options):
    values = {"backoff_s": 0.05, "terminate_confirm_s": 5, "find_window_s": 1.0, "timeout_s": 5}
    values.update(options)
    return RunPodProvider(key, fake.url, **values)


async def runpod_plane(tmp_path, fake, key="test-key", provider_options=None, **settings):
    port = free_port()
    values = {"port": port, "runpod_api_key": key, "provider": "runpod", "public_url": f"http://127.0.0.1:{port}",
              "allow_loopback_public_url": True, "supervisor_interval_s": 0.3, "runpod_api_url": fake.url,
              "runpod_pod_api_url": fake.url}
    values.update(settings)
    s = make_settings(tmp_path, **values)
    providers = {"local": LocalProvider(s.data_dir / "pods"),
                 "runpod": provider_for(fake, key, **(provider_options or {}))}
    return await start_plane(s, providers)


@pytest.fixture
async def planes(fake):
    made = []
    yield made
    for p in made:
        for run in await p.store.list_runs(live_only=True):
            await p.http.post(f"/api/v1/runs/{run.id}/terminate")
    # Pods still bringing their outputs home end themselves through v2: wait for that at the fake (what counts),
    # not for the control plane to judge them gone (two misses, 60 s after their create), before stopping it.
    await wait_until(lambda: not fake.live_pods(), 30)
    for p in made:
        await p.http.aclose()
        await p.control.stop()
    assert fake.live_pods() == [], [(p["id"], p["name"], p["status"]) for p in fake.live_pods()]


async def plane_for(tmp_path, fake, planes, **kwargs):
    plane = await runpod_plane(tmp_path, fake, **kwargs)
    planes.append(plane)
    return plane


async def launch(plane, **spec):
    body = {"dataset": "demo", "gpu_types": [GPU_4090], "provider": "runpod", **spec}
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def events_of(plane, run_id):
    return (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()


async def run_of(plane, run_id):
    return (await plane.http.get(f"/api/v1/runs/{run_id}")).json()


async def wait_until(check, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(every)
    return False


async def wait_pod(plane, run_id, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await run_of(plane, run_id)
        if run["pod_id"] or run["status"] not in ("pending", "provisioning"):
            return run
        await asyncio.sleep(0.1)
    raise AssertionError("no pod")


async def wait_event(plane, run_id, kind, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in await events_of(plane, run_id) if e["kind"] == kind]
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {kind} event: {await events_of(plane, run_id)}")


async def terminate_and_check_zero(plane, fake, run_id):
    r = await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    assert r.status_code == 200, r.text
    assert fake.live_pods() == []


def create_bodies(fake):
    return [body for call, body in fake.bodies if call == "POST /v2/pods"]


# -- catalog ---------------------------------------------------------------------------------------------------

async def test_offers_come_from_the_v2_catalog_with_stock(fake, tmp_path, planes):
    fake.no_capacity.add(GPU_A100)
    plane = await plane_for(tmp_path, fake, planes)
    offers = (await plane.http.get("/api/v1/gpus", params={"provider": "runpod"})).json()
    by_id = {o["id"]: o for o in offers}
    assert set(by_id) == {GPU_4090, GPU_A6000, GPU_A100}
    assert by_id[GPU_4090]["secure_price"] == 0.69 and by_id[GPU_4090]["community_price"] == 0.44
    assert by_id[GPU_4090]["vram_gb"] == 24 and by_id[GPU_4090]["spot_price"] is None
    assert by_id[GPU_A100]["stock"] == "None" and by_id[GPU_4090]["stock"] == "High"
    assert "GET /v2/catalog/gpus" in fake.calls and not any(c.startswith("graphql") for c in fake.calls)
    assert "?include=AVAILABILITY&product=POD" in next(r for r in fake.requests if "/catalog/gpus" in r)


async def test_stock_is_for_the_cloud_and_gpu_count_picked(fake, tmp_path, planes):
    fake.no_capacity.add((GPU_4090, "COMMUNITY"))
    next(g for g in fake.gpus if g["id"] == GPU_A6000)["maxCount"]["secure"] = 4  # no 6-GPU secure A6000 pods
    plane = await plane_for(tmp_path, fake, planes)

    async def stock(**params):
        r = await plane.http.get("/api/v1/gpus", params={"provider": "runpod", **params})
        assert r.status_code == 200, r.text
        return {o["id"]: o["stock"] for o in r.json()}

    assert (await stock())[GPU_4090] == "High"
    assert (await stock(cloud="COMMUNITY"))[GPU_4090] == "None"
    assert (await stock(cloud="ALL"))[GPU_4090] == "High"  # the better of the two clouds
    assert (await stock(count=2))[GPU_A6000] == "High" and (await stock(count=6))[GPU_A6000] == "None"
    asked = [r for r in fake.requests if "/catalog/gpus" in r]
    assert any("cloud=COMMUNITY" in r and "count=1" in r for r in asked) and any("count=6" in r for r in asked)
    r = await plane.http.get("/api/v1/gpus", params={"provider": "runpod", "count": "9"})
    assert r.status_code == 400 and "count" in r.json()["error"]["message"]


# -- a whole run -----------------------------------------------------------------------------------------------

async def test_run_launches_reports_and_ends_its_own_pod_through_v2(fake, tmp_path, planes, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "30")
    fake.execute = True
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane)
    run = await plane.wait_status(run_id, FINAL, timeout=60)
    assert run["status"] == "succeeded", (run["status_reason"], await events_of(plane, run_id))
    assert run["gpu_type"] == GPU_4090 and run["price_per_hour"] == 0.69
    lines = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 5000})).json()["lines"]
    page = (await plane.http.get(f"/api/v1/runs/{run_id}/metrics")).json()
    assert len(page["series"]["loss"]["steps"]) == 30
    assert {k: v for k, v in stored_metrics(page).items() if not k[0].startswith("gpu_")} == printed_metrics(lines)
    # The agent ends its own pod (DELETE with the pod's own key) long before the supervisor's 30 s grace.
    assert await wait_until(lambda: not fake.live_pods(), 15), fake.live_pods()
    assert "DELETE /v2/pods/{id}" in fake.calls
    (body,) = create_bodies(fake)
    assert body["args"] == BOOT_COMMAND and body["image"] == DEFAULT_IMAGE
    assert body["gpu"] == {"id": GPU_4090, "count": 1, "minCudaVersion": "12.8"} and body["cloud"] == "SECURE"
    assert body["ports"] == [] and "startSsh" not in body  # podtui never connects in
    assert isinstance(body["env"], dict) and body["env"]["PODTUI_RUNPOD_API_URL"] == fake.url
    assert "test-key" not in body["env"].values()  # the user's key never enters a pod


async def test_ssh_only_when_asked(fake, tmp_path, planes):
    fake.ssh_keys = [SSH_KEY]
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, ssh=True, cloud_type="COMMUNITY", gpu_count=2)
    await wait_pod(plane, run_id)
    (body,) = create_bodies(fake)
    assert body["ports"] == ["22/tcp"] and body["startSsh"] is True and body["cloud"] == "COMMUNITY"
    assert body["gpu"]["count"] == 2
    await terminate_and_check_zero(plane, fake, run_id)


async def test_image_with_a_wrapper_entrypoint_boots(fake, tmp_path, planes, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "5")
    fake.execute = True
    image = "nvcr.io/nvidia/pytorch:25.01-py3"
    fake.entrypoints[image] = [str(fake.wrapper_entrypoint)]
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, image=image, min_cuda_version="12.6")
    run = await plane.wait_status(run_id, FINAL, timeout=60)
    assert run["status"] == "succeeded", (run["status_reason"], await events_of(plane, run_id))
    assert create_bodies(fake)[0]["gpu"]["minCudaVersion"] == "12.6"


async def test_image_whose_entrypoint_ignores_args_fails_at_boot_timeout_with_its_log(fake, tmp_path, planes):
    fake.execute = True
    image = "vllm/vllm-openai:latest"
    fake.entrypoints[image] = [str(fake.server_entrypoint)]
    plane = await plane_for(tmp_path, fake, planes, boot_timeout_s=4.0)
    run_id = await launch(plane, image=image)
    run = await wait_pod(plane, run_id)
    assert await wait_until(lambda: SERVING_LINE in fake.log_lines(run["pod_id"]), 10)
    logs = (await plane.http.get(f"/api/v1/runs/{run_id}/pod-logs", params={"tail": 20})).json()
    assert any(SERVING_LINE in line["line"] for line in logs["lines"]), logs
    run = await plane.wait_status(run_id, FINAL, timeout=20)
    assert run["status"] == "terminated" and "no report within" in run["status_reason"]


# -- failover and money ----------------------------------------------------------------------------------------

async def test_failover_across_three_gpu_types(fake, tmp_path, planes):
    fake.no_capacity |= {GPU_4090, GPU_A6000}
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, gpu_types=[GPU_4090, GPU_A6000, GPU_A100])
    run = await wait_pod(plane, run_id)
    assert run["gpu_type"] == GPU_A100 and run["pod_id"] and run["price_per_hour"] == 1.89
    attempts = [e for e in await events_of(plane, run_id) if e["kind"].startswith("attempt")]
    assert [a["kind"] for a in attempts] == ["attempt_failed", "attempt_failed", "attempt"]
    assert attempts[0]["message"] == f"{GPU_4090}: RunPod: {NO_CAPACITY} (secure cloud)"
    assert len(fake.live_pods()) == 1
    await terminate_and_check_zero(plane, fake, run_id)


async def test_cloud_all_tries_secure_then_community(fake, tmp_path, planes):
    fake.no_capacity.add((GPU_4090, "SECURE"))
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, cloud_type="ALL")
    run = await wait_pod(plane, run_id)
    assert [b["cloud"] for b in create_bodies(fake)] == ["SECURE", "COMMUNITY"]
    assert run["price_per_hour"] == 0.44
    await terminate_and_check_zero(plane, fake, run_id)


async def test_no_capacity_anywhere_fails_with_the_types_tried(fake, tmp_path, planes):
    fake.no_capacity |= {GPU_4090, GPU_A6000}
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, gpu_types=[GPU_4090, GPU_A6000])
    run = await plane.wait_status(run_id, {"failed"}, timeout=20)
    assert f"no capacity on RunPod for {GPU_4090}, {GPU_A6000}" in run["status_reason"]


async def test_402_stops_at_once_with_insufficient_balance(fake, tmp_path, planes):
    fake.no_balance = True
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, gpu_types=[GPU_4090, GPU_A6000])
    run = await plane.wait_status(run_id, {"failed"}, timeout=20)
    assert "insufficient balance" in run["status_reason"]
    assert len(create_bodies(fake)) == 1  # no other candidate is tried


async def test_403_skips_the_gpu_type(fake, tmp_path, planes):
    fake.forbidden_gpus.add(GPU_4090)
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, gpu_types=[GPU_4090, GPU_A6000])
    run = await wait_pod(plane, run_id)
    assert run["gpu_type"] == GPU_A6000
    failed = [e["message"] for e in await events_of(plane, run_id) if e["kind"] == "attempt_failed"]
    assert len(failed) == 1 and "cannot use this GPU type" in failed[0] and "403" in failed[0]
    await terminate_and_check_zero(plane, fake, run_id)


async def test_403_on_every_candidate_names_the_key_not_capacity(fake, tmp_path, planes):
    fake.read_only_keys.add("read-only-key")  # passes every read (doctor's check), 403 on the create
    plane = await plane_for(tmp_path, fake, planes, key="read-only-key")
    ok, said = await plane.runs.providers["runpod"].check_key()
    assert ok and "a read-only key shows only at the first launch" in said
    run_id = await launch(plane, gpu_types=[GPU_4090, GPU_A6000])
    run = await plane.wait_status(run_id, {"failed"}, timeout=20)
    assert "RunPod refused this key for creating pods" in run["status_reason"]
    assert "read-only or restricted key" in run["status_reason"] and "capacity" not in run["status_reason"]
    assert len(create_bodies(fake)) == 2 and fake.live_pods() == []


async def test_422_fails_with_runpods_errors_and_is_never_retried(fake, tmp_path):
    provider = provider_for(fake)
    request = PodRequest(run_id="r1", name="podtui-r1", gpu_types=[GPU_4090, GPU_A6000], gpu_count=0,
                         cloud_type="SECURE", spot=False, image=DEFAULT_IMAGE, start_command=BOOT_COMMAND, env={})
    attempts = []

    async def on_attempt(attempt):
        attempts.append(attempt)

    try:
        with pytest.raises(ProviderError, match=r"refused the pod's settings \(422\).*gpu\.count"):
            await provider.create_pod(request, on_attempt)
    finally:
        await provider.close()
    assert fake.calls.count("POST /v2/pods") == 1 and fake.live_pods() == []


async def test_values_runpod_cannot_take_are_refused_at_launch(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    a6000 = next(g for g in fake.gpus if g["id"] == GPU_A6000)
    a6000["maxCount"] = {"secure": 4, "community": 2}
    cases = [({"gpu_types": ["NVIDIA GeForce GTX 280"]}, "gpu_types"), ({"gpu_count": 9}, "gpu_count"),
             ({"image": "my image"}, "image"), ({"min_cuda_version": "12"}, "min_cuda_version"),
             ({"gpu_types": [GPU_A6000], "gpu_count": 6}, "at most 4"),
             ({"gpu_types": [GPU_A6000], "gpu_count": 3, "cloud_type": "COMMUNITY"}, "at most 2")]
    for change, field in cases:
        r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090],
                                                        "provider": "runpod", **change})
        assert r.status_code == 422 and field in r.json()["error"]["message"], (change, r.text)
    assert "POST /v2/pods" not in fake.calls
    assert (await plane.http.get("/api/v1/runs")).json() == []


async def test_wrong_key_says_where_to_set_it(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes, key="wrong-key")
    run_id = await launch(plane)
    run = await plane.wait_status(run_id, {"failed"}, timeout=20)
    assert "rejected the API key" in run["status_reason"] and "RUNPOD_API_KEY" in run["status_reason"]
    r = await plane.http.get("/api/v1/gpus", params={"provider": "runpod"})
    assert r.status_code == 502 and "rejected the API key" in r.json()["error"]["message"]


async def test_429_waits_retry_after_and_resumes(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    await plane.runs.providers["runpod"].list_offers()  # the launch check reads the catalog first
    fake.queue_fault("429", retry_after=1, call="POST /v2/pods")
    started = time.monotonic()
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id)
    assert time.monotonic() - started >= 0.9
    assert "fault:429" in fake.calls and fake.calls.count("POST /v2/pods") == 1 and len(fake.live_pods()) == 1
    assert run["status"] == "booting"
    await terminate_and_check_zero(plane, fake, run_id)


@pytest.mark.parametrize("fault", ["500", "502", "reset", "garbage"])
async def test_a_lost_create_answer_is_found_by_name_without_a_second_pod(fake, tmp_path, planes, fault):
    fake.create_fault = fault
    fake.list_lag_s = 0.5  # the listing lags the create: the search keeps looking
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id)
    assert len(fake.live_pods()) == 1 and fake.live_pods()[0]["id"] == run["pod_id"]
    assert fake.calls.count("POST /v2/pods") == 1
    messages = [e["message"] for e in await events_of(plane, run_id)]
    assert any("found pod" in m and "by its name" in m for m in messages), messages
    await terminate_and_check_zero(plane, fake, run_id)


async def test_a_create_that_hangs_past_the_timeout_is_found_by_name(fake, tmp_path, planes):
    fake.create_fault = "hang"
    fake.hang_s = 6
    plane = await plane_for(tmp_path, fake, planes, provider_options={"timeout_s": 2})
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id, timeout=30)
    assert run["pod_id"] and len(fake.live_pods()) == 1 and fake.calls.count("POST /v2/pods") == 1
    await terminate_and_check_zero(plane, fake, run_id)


async def test_persistent_5xx_fails_the_run_and_leaves_no_pod(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    await plane.runs.providers["runpod"].list_offers()
    for _ in range(3):
        fake.queue_fault("503", call="POST /v2/pods")
    run_id = await launch(plane)
    run = await plane.wait_status(run_id, {"failed"}, timeout=30)
    assert "found no pod by its name" in run["status_reason"]


async def test_a_pod_that_shows_up_after_its_run_failed_is_terminated(fake, tmp_path, planes):
    fake.create_fault = "500"
    fake.list_lag_s = 4.0  # longer than the provider looks (1 s): the run gives up, then the pod appears
    plane = await plane_for(tmp_path, fake, planes, provider_options={"retries": 1})
    run_id = await launch(plane)
    run = await plane.wait_status(run_id, {"failed"}, timeout=20)
    assert run["pod_id"] is None and len(fake.live_pods()) == 1  # it bills, and no run holds it
    assert await wait_until(lambda: not fake.live_pods(), 20), fake.live_pods()
    ended = await wait_event(plane, run_id, "pod_terminated")  # written once RunPod confirmed it gone (later)
    assert "carries this run's name" in ended["message"]


async def test_a_second_pod_of_one_run_is_terminated(fake, tmp_path, planes):
    fake.create_fault = "500"
    fake.list_lag_s = 3.0  # the first pod stays hidden while the provider looks: it creates again
    plane = await plane_for(tmp_path, fake, planes, provider_options={"retries": 2})
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id)
    assert fake.calls.count("POST /v2/pods") == 2 and len(fake.live_pods()) == 2
    assert await wait_until(lambda: [p["id"] for p in fake.live_pods()] == [run["pod_id"]], 20), fake.live_pods()
    await terminate_and_check_zero(plane, fake, run_id)


async def test_price_is_the_pods_cost_or_the_catalog_price_never_zero(fake, tmp_path, planes):
    fake.zero_cost_at_create = True
    fake.boot_delay_s = 1.0
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, gpu_count=2)
    run = await wait_pod(plane, run_id)
    assert run["price_per_hour"] == pytest.approx(1.38)  # the catalog's 0.69 x 2 while RunPod says 0
    fake.pods[run["pod_id"]]["_rate"] = 0.75  # RunPod bills 2 x 0.75 once it runs
    await wait_event(plane, run_id, "price")
    assert (await run_of(plane, run_id))["price_per_hour"] == 1.5
    await terminate_and_check_zero(plane, fake, run_id)


# -- polling ---------------------------------------------------------------------------------------------------

async def test_one_list_call_per_pass_for_all_runs_and_gpu_use_recorded(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    run_ids = [await launch(plane) for _ in range(3)]
    runs = [await wait_pod(plane, r) for r in run_ids]
    await asyncio.sleep(0.6)  # the pods are RUNNING
    for run in runs:
        fake.set_gpu_util(run["pod_id"], 3, 41)
    before = len(fake.calls)
    await asyncio.sleep(2.0)
    window = fake.calls[before:]
    assert window.count("GET /v2/pods") >= 3 and "GET /v2/pods/{id}" not in window, window
    run = await run_of(plane, run_ids[0])
    assert run["gpu_util"] == 3 and run["gpu_mem"] == 41
    page = (await plane.http.get(f"/api/v1/runs/{run_ids[0]}/metrics", params={"name": "gpu_util"})).json()
    assert page["series"]["gpu_util"]["values"][-1] == 3
    for run_id in run_ids:
        await terminate_and_check_zero(plane, fake, run_id) if run_id == run_ids[-1] else \
            await plane.http.post(f"/api/v1/runs/{run_id}/terminate")


async def test_a_pod_missing_right_after_its_create_is_not_gone(fake, tmp_path, planes):
    fake.list_lag_s = 2.5
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane)
    await wait_pod(plane, run_id)
    await asyncio.sleep(2.0)  # several supervisor passes miss it
    run = await run_of(plane, run_id)
    assert run["status"] == "booting", run["status_reason"]
    await terminate_and_check_zero(plane, fake, run_id)


async def test_a_terminated_pod_ends_its_live_run(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes, provider_options={"gone_grace_s": 0.5})
    run_id = await launch(plane, retries=0)  # with retries a new pod replaces it (test_retries_runpod.py)
    run = await wait_pod(plane, run_id)
    fake.pods[run["pod_id"]]["status"] = "TERMINATED"  # ended outside podtui (the console)
    run = await plane.wait_status(run_id, {"lost", "failed"}, timeout=20)
    assert "404" in run["status_reason"] or "TERMINATED" in run["status_reason"]


async def test_a_pod_in_error_is_failed_and_terminated(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, retries=0)
    run = await wait_pod(plane, run_id)
    await asyncio.sleep(0.5)
    fake.fail_pod(run["pod_id"])
    run = await plane.wait_status(run_id, {"lost", "failed"}, timeout=20)
    assert "ERROR" in run["status_reason"]
    assert await wait_until(lambda: not fake.live_pods(), 10)  # an errored pod still exists: it is ended


# -- inside the pod --------------------------------------------------------------------------------------------

async def test_a_container_restart_after_training_started_fails_the_run_and_ends_the_pod(fake, tmp_path, planes,
                                                                                          monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "2000")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.05")
    fake.execute = True
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, retries=0)
    run = await plane.wait_status(run_id, {"training"}, timeout=60)
    fake.restart_container(run["pod_id"])
    run = await plane.wait_status(run_id, FINAL, timeout=30)
    assert run["status"] == "failed" and "container restarted" in run["status_reason"], run
    assert await wait_until(lambda: not fake.live_pods(), 15)


async def test_low_gpu_use_while_training_raises_a_warning(fake, tmp_path, planes, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "2000")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.05")
    fake.execute = True
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, min_gpu_util_pct=20, min_gpu_util_s=1)
    run = await plane.wait_status(run_id, {"training"}, timeout=60)
    fake.set_gpu_util(run["pod_id"], 3, 10)
    event = await wait_event(plane, run_id, "gpu_util_low")
    assert "below 20%" in event["message"] and "3%" in event["message"]
    await terminate_and_check_zero(plane, fake, run_id)


async def test_pod_logs_show_why_a_pod_has_not_booted(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id)
    fake.add_log(run["pod_id"], "Error: pull access denied for my/private-image", source="system")
    logs = (await plane.http.get(f"/api/v1/runs/{run_id}/pod-logs")).json()
    assert logs["pod_id"] == run["pod_id"]
    assert any("pull access denied" in line["line"] and line["source"] == "system" for line in logs["lines"])
    await terminate_and_check_zero(plane, fake, run_id)


# -- spot, stop, orphans ---------------------------------------------------------------------------------------

async def test_spot_launch_goes_through_graphql_and_is_polled_through_v2(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, spot=True, cloud_type="COMMUNITY")
    run = await wait_pod(plane, run_id, timeout=30)
    assert "graphql:podRentInterruptable" in fake.calls and "POST /v2/pods" not in fake.calls
    assert run["price_per_hour"] == 0.29
    await terminate_and_check_zero(plane, fake, run_id)


async def test_spot_fails_over_like_on_demand(fake, tmp_path, planes):
    fake.no_capacity.add(GPU_4090)
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, spot=True, cloud_type="COMMUNITY", gpu_types=[GPU_4090, GPU_A6000])
    run = await wait_pod(plane, run_id, timeout=30)
    assert run["gpu_type"] == GPU_A6000, (run["status_reason"], await events_of(plane, run_id))
    await terminate_and_check_zero(plane, fake, run_id)


def spot_bodies(fake):
    return [body["query"] for call, body in fake.bodies if call == "graphql:podRentInterruptable"]


async def test_spot_is_rented_with_the_cuda_floor_and_the_ssh_port_of_on_demand(fake, tmp_path, planes):
    fake.ssh_keys = [SSH_KEY]
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, spot=True, cloud_type="COMMUNITY", ssh=True)  # the default image: cu1281
    run = await wait_pod(plane, run_id, timeout=30)
    (query,) = spot_bodies(fake)
    assert 'allowedCudaVersions: ["12.8", "12.9"' in query and '"12.6"' not in query
    assert 'ports: "22/tcp"' in query and "startSsh: true" in query
    assert fake.pods[run["pod_id"]]["cudaVersion"] == "12.8"  # not the oldest driver's host
    await terminate_and_check_zero(plane, fake, run_id)


async def test_ssh_without_an_account_key_is_refused_before_any_pod(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090],
                                                    "provider": "runpod", "ssh": True})
    assert r.status_code == 422 and "no SSH public key registered" in r.json()["error"]["message"], r.text
    assert "POST /v2/pods" not in fake.calls and "GET /v2/account/ssh-keys" in fake.calls


async def test_a_refused_bid_tries_the_next_candidate(fake, tmp_path, planes):
    fake.bid_floor_rise[GPU_4090] = 0.05  # the minimum bid rose after podtui read the price
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, spot=True, cloud_type="COMMUNITY", gpu_types=[GPU_4090, GPU_A6000])
    run = await wait_pod(plane, run_id, timeout=30)
    assert run["gpu_type"] == GPU_A6000, (run["status_reason"], await events_of(plane, run_id))
    failed = [e["message"] for e in await events_of(plane, run_id) if e["kind"] == "attempt_failed"]
    assert len(failed) == 1 and "bid" in failed[0]
    await terminate_and_check_zero(plane, fake, run_id)


async def test_secure_spot_never_bids_the_community_price(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    # The A100 has a community spot price (0.89) and no secure one.
    run_id = await launch(plane, spot=True, cloud_type="SECURE", gpu_types=[GPU_A100, GPU_4090])
    run = await wait_pod(plane, run_id, timeout=30)
    assert run["gpu_type"] == GPU_4090 and run["price_per_hour"] == 0.35  # the 4090's secure spot price
    queries = spot_bodies(fake)
    assert len(queries) == 1 and GPU_4090 in queries[0] and "bidPerGpu: 0.35" in queries[0]
    failed = [e["message"] for e in await events_of(plane, run_id) if e["kind"] == "attempt_failed"]
    assert len(failed) == 1 and "no secure spot price" in failed[0]
    await terminate_and_check_zero(plane, fake, run_id)


async def test_a_spot_pod_v2_does_not_list_is_looked_up_and_ended_through_graphql(fake, tmp_path, planes):
    fake.spot_unlisted = True
    plane = await plane_for(tmp_path, fake, planes, provider_options={"gone_grace_s": 0.0})
    run_id = await launch(plane, spot=True, cloud_type="COMMUNITY")
    run = await wait_pod(plane, run_id, timeout=30)
    assert await wait_until(lambda: fake.calls.count("graphql:pod") >= 3, 20)  # several passes, v2 404 each time
    assert (await run_of(plane, run_id))["status"] in ("booting", "downloading", "training")  # never called gone
    assert fake.pods[run["pod_id"]]["status"] != "TERMINATED"
    await terminate_and_check_zero(plane, fake, run_id)
    assert "graphql:podTerminate" in fake.calls


async def test_spot_after_graphql_is_retired_fails_clearly(fake, tmp_path, planes):
    fake.graphql_down = True
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, spot=True)
    run = await plane.wait_status(run_id, {"failed"}, timeout=30)
    assert "GraphQL" in run["status_reason"], run["status_reason"]


async def test_stop_then_terminate(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane)
    run = await wait_pod(plane, run_id)
    r = await plane.http.post(f"/api/v1/runs/{run_id}/stop")
    assert r.status_code == 200 and r.json()["status"] == "terminated"
    assert {"action": "stop"} in [b for call, b in fake.bodies if call == "POST /v2/pods/{id}/action"]
    assert fake.pods[run["pod_id"]]["status"] == "TERMINATED"


async def test_orphans_are_listed_and_can_be_terminated(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane)
    await wait_pod(plane, run_id)
    import httpx

    async with httpx.AsyncClient(base_url=fake.url, headers={"Authorization": "Bearer test-key"}) as http:
        body = {"name": "podtui-0123456789", "image": "x", "gpu": {"id": GPU_A6000}}
        orphan = (await http.post("/v2/pods", json=body)).json()
        await http.post("/v2/pods", json={**body, "name": "someone-elses-pod"})
    listed = (await plane.http.get("/api/v1/pods/orphans")).json()
    assert [o["pod_id"] for o in listed] == [orphan["id"]]
    run_pod = (await run_of(plane, run_id))["pod_id"]
    r = await plane.http.post(f"/api/v1/pods/runpod/{run_pod}/terminate")
    assert r.status_code == 409
    r = await plane.http.post(f"/api/v1/pods/runpod/{orphan['id']}/terminate")
    assert r.status_code == 200 and fake.pods[orphan["id"]]["status"] == "TERMINATED"
    await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    other = [p for p in fake.live_pods() if p["name"] == "someone-elses-pod"]
    assert len(other) == 1
    async with httpx.AsyncClient(base_url=fake.url, headers={"Authorization": "Bearer test-key"}) as http:
        assert (await http.delete(f"/v2/pods/{other[0]['id']}")).status_code == 204


async def test_localhost_public_url_is_refused_for_push_and_pull_needs_none(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes, allow_loopback_public_url=False,
                            public_url="http://localhost:8765")
    body = {"dataset": "demo", "gpu_types": [GPU_4090], "provider": "runpod"}
    r = await plane.http.post("/api/v1/runs", json={**body, "connect": "push"})
    assert r.status_code == 409 and "cannot reach http://localhost:8765" in r.json()["error"]["message"]
    assert "--connect pull" in r.json()["error"]["message"]
    assert "POST /v2/pods" not in fake.calls
    r = await plane.http.post("/api/v1/runs", json=body)  # a laptop: the control plane goes to the pod
    assert r.status_code == 201 and r.json()["connect"] == "pull", r.text
    run = await wait_pod(plane, r.json()["id"])
    (created,) = create_bodies(fake)
    assert created["ports"] == ["8419/http"] and "PODTUI_URL" not in created["env"]
    assert created["env"]["PODTUI_CONNECT"] == "pull" and len(created["env"]["PODTUI_AGENT_Z"]) < AGENT_ENV_BUDGET
    await terminate_and_check_zero(plane, fake, run["id"])


async def test_rate_limit_headers_hold_requests_until_the_window_resets(fake, tmp_path):
    fake.rate_limits = [("minute", 3, 2)]  # 3 requests per 2 s window
    fake.enforce_rate_limit = True
    provider = provider_for(fake)
    try:
        started = time.monotonic()
        for _ in range(5):
            await provider.list_pods()
        assert time.monotonic() - started >= 1.0  # held until the window reset, not refused
        assert not any(c.startswith("fault") for c in fake.calls)
        assert "minute" in provider.api.rate.describe()
    finally:
        await provider.close()


async def test_a_pod_judged_gone_by_mistake_is_still_ended(fake, tmp_path, planes, monkeypatch):
    from podtui.server import supervisor

    monkeypatch.setattr(supervisor, "END_GRACE_S", 1.0)
    fake.list_lag_s = 3.0  # longer than the grace below: the pod looks gone for a while, then shows up again
    plane = await plane_for(tmp_path, fake, planes, provider_options={"gone_grace_s": 0.2})
    plane.control.runner.app[keys.SUPERVISOR].stray_every = 1
    run_id = await launch(plane)
    run = await plane.wait_status(run_id, {"lost", "failed"}, timeout=20)
    pod_id = run["pod_id"]
    assert fake.pods[pod_id]["status"] != "TERMINATED"  # it was never gone: it bills
    assert await wait_until(lambda: fake.pods[pod_id]["status"] == "TERMINATED", 20)


async def test_an_html_404_or_an_empty_answer_never_counts_as_gone(tmp_path):
    from aiohttp import web

    answers = iter(["html", "empty"] * 50)

    async def get(request):
        kind = next(answers)
        if kind == "html":
            return web.Response(status=404, text="<html>404 page not found</html>", content_type="text/html")
        return web.Response(status=200, text="", content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/pods/{id}", get)
    app.router.add_delete("/v2/pods/{id}", lambda r: web.Response(status=204))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    provider = RunPodProvider("k", url, backoff_s=0.05, terminate_confirm_s=1)
    try:
        with pytest.raises(ProviderError, match="has not confirmed"):
            await provider.terminate_pod("p1")
        with pytest.raises(ProviderError):
            await provider.get_pod("p1")
    finally:
        await provider.close()
        await runner.cleanup()


async def test_terminate_is_confirmed_by_404_and_an_already_gone_pod_is_fine(fake, tmp_path):
    provider = provider_for(fake)
    try:
        await provider.terminate_pod("no-such-pod")
        assert fake.calls[-1] == "GET /v2/pods/{id}"
    finally:
        await provider.close()


# -- a pod that cannot end itself ---------------------------------------------------------------------------

async def test_a_pod_whose_self_delete_fails_is_ended_by_the_control_plane_and_never_trains_again(
        fake, tmp_path, planes, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "10")
    fake.execute = True
    fake.pod_delete_denied = True  # RunPod answers the pod's own key 404: "not found or not accessible"
    plane = await plane_for(tmp_path, fake, planes, pod_end_proof_s=2.0)
    run_id = await launch(plane, keep_alive_s=0)
    run = await plane.wait_status(run_id, FINAL, timeout=60)
    assert run["status"] == "succeeded", run["status_reason"]
    pod_id = run["pod_id"]
    failed = await wait_event(plane, run_id, "pod_end_failed", timeout=30)
    assert "could not end itself; it bills until podtui ends it" in failed["message"]
    # The control plane ends it with the user's key at once, long before the supervisor's grace would.
    ended = await wait_event(plane, run_id, "pod_ended", timeout=20)
    assert ended["ts"] - run["ended_at"] < 25
    assert fake.pods[pod_id]["status"] == "TERMINATED"
    assert "denied:deletePod" in fake.calls
    assert fake.restarts[pod_id] == 0  # PID 1 never exited: the training never ran a second time
    lines = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 5000})).json()["lines"]
    assert sum("[podtui] training:" in line["text"] for line in lines) == 1
    assert "could not end itself" in (fake.workdir / "pods" / pod_id / "container.log").read_text()
    assert (await run_of(plane, run_id))["pod_end_failed"] is None  # gone: no longer shown in red
