"""Pull mode end to end on the local provider: the control plane uploads the inputs to the pod's port, long-polls
its outbox and acknowledges; nothing is lost when the control plane goes away and comes back."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support import make_settings, settle, start_plane

from .helpers import printed_metrics, stored_metrics


async def launch(plane, **spec):
    body = {"dataset": "demo", "gpu_types": ["local"], "connect": "pull", **spec}
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def all_lines(plane, run_id):
    r = await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 10000})
    return r.json()["lines"]


async def test_demo_in_pull_mode_stores_every_printed_step(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "200")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.005")
    plane = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3, upload_chunk_bytes=64 * 1024))
    try:
        run = await launch(plane)
        assert run["connect"] == "pull" and run["pod_port"]
        done = await plane.wait_status(run["id"], {"succeeded", "failed", "terminated", "lost"}, timeout=60)
        events = (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()
        assert done["status"] == "succeeded", (done["status_reason"], events)
        page = (await plane.http.get(f"/api/v1/runs/{run['id']}/metrics")).json()
        lines = await all_lines(plane, run["id"])
        assert len(page["series"]["loss"]["steps"]) == 200
        assert stored_metrics(page) == printed_metrics(lines)
        assert any(e["kind"] == "pod_started" and "inputs uploaded" in e["message"] for e in events)
        await settle(plane)
    finally:
        await plane.http.aclose()
        await plane.control.stop()


async def test_the_pods_port_refuses_a_wrong_or_missing_token(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "3000")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.05")
    plane = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3))
    try:
        run = await launch(plane)
        await plane.wait_status(run["id"], {"training"}, timeout=60)
        url = f"http://127.0.0.1:{run['pod_port']}"
        async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                for method, path in (("GET", "/v1/state"), ("GET", "/v1/outbox"), ("POST", "/v1/start"),
                                     ("PUT", "/v1/inputs/script?offset=0"), ("POST", "/v1/ack")):
                    r = await http.request(method, path, headers=headers, content=b"x")
                    assert r.status_code == 401, (method, path, r.status_code)
        await plane.http.post(f"/api/v1/runs/{run['id']}/terminate")
    finally:
        await plane.http.aclose()
        await plane.control.stop()


@pytest.mark.timeout(180)
async def test_control_plane_gone_60_s_and_back_loses_and_doubles_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "1500")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.04")
    settings = make_settings(tmp_path, supervisor_interval_s=0.3)
    plane = await start_plane(settings)
    run = await launch(plane)
    await plane.wait_status(run["id"], {"training"}, timeout=60)
    await plane.http.aclose()
    await plane.control.stop()  # the laptop sleeps a minute: the pod keeps training and keeps its reports
    await asyncio.sleep(60)
    again = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3))  # another port: pull needs none
    try:
        done = await again.wait_status(run["id"], {"succeeded", "failed", "terminated", "lost"}, timeout=90)
        assert done["status"] == "succeeded", done["status_reason"]
        page = (await again.http.get(f"/api/v1/runs/{run['id']}/metrics")).json()
        lines = await all_lines(again, run["id"])
        assert len(page["series"]["loss"]["steps"]) == 1500
        assert stored_metrics(page) == printed_metrics(lines)
        seqs = [line["seq"] for line in lines]
        assert seqs == list(range(len(seqs)))  # every line once, none missing
        await settle(again)
    finally:
        await again.http.aclose()
        await again.control.stop()


async def test_a_pull_mode_pod_no_control_plane_ever_starts_ends_itself(tmp_path):
    import json

    from .helpers import group_alive

    plane = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3, boot_timeout_s=3))
    run = await launch(plane)
    run = await plane.wait_status(run["id"], {"booting"}, timeout=30)
    pod_dir = plane.control.settings.data_dir / "pods" / run["pod_id"]
    await plane.http.aclose()
    await plane.control.stop()  # gone before it uploaded anything (it may have: then the pod trains and ends)
    pid = json.loads((pod_dir / "pod.json").read_text())["pid"]
    for _ in range(100):
        if not group_alive(pid):
            break
        await asyncio.sleep(0.2)
    assert not group_alive(pid)
