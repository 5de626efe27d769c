"""The admin API: auth, JSON errors, OpenAPI coverage, launch validation, terminate."""

import asyncio

import httpx
import pytest

from podtui.server.api import ROUTES


async def test_admin_routes_need_the_admin_token(plane):
    async with httpx.AsyncClient(base_url=plane.url, trust_env=False) as anon:
        assert (await anon.get("/healthz")).json()["status"] == "ok"
        for path in ("/api/v1/runs", "/api/v1/datasets", "/api/v1/gpus", "/api/v1/events"):
            r = await anon.get(path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = await anon.get("/api/v1/runs", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "wrong" in r.json()["error"]["message"]


async def test_unknown_routes_and_methods_are_json(plane):
    r = await plane.http.get("/api/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["message"]
    r = await plane.http.delete("/api/v1/runs")
    assert r.status_code == 405 and r.json()["error"]["code"]
    r = await plane.http.get("/api/v1/runs/nope")
    assert r.status_code == 404
    r = await plane.http.get("/api/v1/runs/x/metrics", params={"max_points": "many"})
    assert r.status_code in (400, 404)


async def test_bad_query_parameters_are_400s_that_say_what_is_allowed(plane):
    for path, params, words in (
            ("/api/v1/gpus", {"count": "two"}, "count must be an integer"),
            ("/api/v1/gpus", {"count": "9"}, "count must be between 1 and 8"),
            ("/api/v1/gpus", {"cloud": "moon"}, "cloud must be SECURE, COMMUNITY or ALL"),
            ("/api/v1/volumes", {"provider": "aws"}, "provider must be local or runpod"),
    ):
        r = await plane.http.get(path, params=params)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_query", (path, params)
        assert words in r.json()["error"]["message"], (path, params)
    # an empty integer is absent (clients write None so), as the description says: the fuzzer holds us to it
    assert (await plane.http.get("/api/v1/gpus", params={"count": ""})).status_code == 200
    spec = (await plane.http.get("/api/v1/openapi.json")).json()
    count = next(p for p in spec["paths"]["/api/v1/gpus"]["get"]["parameters"] if p["name"] == "count")
    assert count["allowEmptyValue"] is True and count["schema"]["type"] == "integer"


async def test_openapi_covers_every_route(plane):
    spec = (await plane.http.get("/api/v1/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    for route in ROUTES:
        assert route.method.lower() in spec["paths"][route.path], route.path
    assert "LaunchSpecInput" in spec["components"]["schemas"]


async def test_launch_validation_errors(plane):
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo"})
    assert r.status_code == 422 and "gpu_types" in r.json()["error"]["message"]
    r = await plane.http.post("/api/v1/runs", json={"dataset": "missing", "gpu_types": ["local"]})
    assert r.status_code == 404 and "podtui datasets" in r.json()["error"]["message"]
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"], "provider": "runpod"})
    assert r.status_code == 409 and "RUNPOD_API_KEY" in r.json()["error"]["message"]
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"],
                                                     "workdir": "/nonexistent/dir"})
    assert r.status_code == 422 and "not a directory" in r.json()["error"]["message"]
    assert (await plane.http.get("/api/v1/runs")).json() == []


async def test_bundle_size_limit_is_a_clear_error(tmp_path):
    from tests.support import RecordingProvider, make_settings, start_plane

    p = await start_plane(make_settings(tmp_path, bundle_size_limit=100), {"local": RecordingProvider()})
    try:
        work = tmp_path / "code"
        work.mkdir()
        (work / "train.py").write_text("print(1)\n" * 50)
        r = await p.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"],
                                                     "command": "python3 train.py", "workdir": str(work)})
        assert r.status_code == 422 and "bundle limit" in r.json()["error"]["message"]
    finally:
        await p.http.aclose()
        await p.control.stop()


async def test_launch_then_terminate_with_recording_provider(plane):
    provider = plane.runs.providers["local"]
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"]})
    assert r.status_code == 201
    run_id = r.json()["id"]
    await plane.wait_status(run_id, {"booting"}, timeout=5)
    request = provider.created[0]
    for value in [request.start_command, *request.env.values()]:
        assert not set(value) & {'"', "\\", "\n"}, value
    r = await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    assert r.status_code == 200 and r.json()["status"] == "terminated"
    assert provider.terminated == [f"rec-{run_id}"]
    events = (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()
    assert [e["kind"] for e in events][-2:] == ["terminated", "pod_terminated"]


async def test_stopping_a_run_that_has_ended_says_so_and_changes_nothing(plane):
    """A new user pressed `s` on a succeeded run: it was marked "stopped by the user" and its pod ended again."""
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"]})
    run_id = r.json()["id"]
    await plane.wait_status(run_id, {"booting"}, timeout=5)
    assert (await plane.http.post(f"/api/v1/runs/{run_id}/terminate")).status_code == 200
    before = (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()
    r = await plane.http.post(f"/api/v1/runs/{run_id}/stop")
    assert r.status_code == 409 and "has ended (terminated)" in r.json()["error"]["message"]
    assert "terminate ends its pod" in r.json()["error"]["message"]
    assert (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json() == before


async def test_a_runpod_launch_without_a_key_says_how_to_restart_this_control_plane(plane):
    """The kill hint names serve.pid only when this control plane is the one a TUI left in the background (a new
    user was told to kill a pid file while the control plane was the one inside the TUI)."""
    import os

    body = {"dataset": "demo", "gpu_types": ["NVIDIA A40"], "provider": "runpod"}
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 409 and "restart it" in r.json()["error"]["message"]
    assert "serve.pid" not in r.json()["error"]["message"]
    (plane.control.settings.data_dir / "serve.pid").write_text(f"{os.getpid()}\n")
    r = await plane.http.post("/api/v1/runs", json=body)
    assert "kept in the background, stops with `kill $(cat" in r.json()["error"]["message"]


async def test_terminate_during_provisioning_still_ends_the_pod(plane):
    provider = plane.runs.providers["local"]
    gate = asyncio.Event()
    original = provider.create_pod

    async def slow_create(request, on_attempt):
        await gate.wait()
        return await original(request, on_attempt)

    provider.create_pod = slow_create
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"]})
    run_id = r.json()["id"]
    await plane.wait_status(run_id, {"provisioning"}, timeout=5)
    assert (await plane.http.post(f"/api/v1/runs/{run_id}/terminate")).json()["status"] == "terminated"
    gate.set()
    for _ in range(50):
        if provider.terminated:
            break
        await asyncio.sleep(0.05)
    assert provider.terminated == [f"rec-{run_id}"] and not provider.alive


async def test_a_refused_token_on_a_streamed_answer_names_where_the_token_came_from(plane):
    from podtui.client import Client
    from podtui.errors import ControlPlaneError

    async with Client(plane.url, "wrong", token_source="--token") as client:
        with pytest.raises(ControlPlaneError) as refused:
            async for _ in client.push_dataset("demo", "vol1"):
                pass
    assert refused.value.status == 401 and "the admin token from --token is not this control plane's" in str(
        refused.value)
