"""RunPod network volumes through the fake REST v2 (built from RunPod's document): list, create and delete over
/v2/network-volumes, and `launch --volume` = `mounts.network` + `dataCenterIds` = the volume's data center,
Secure Cloud."""

from __future__ import annotations

from tests.fakes.runpod_v2 import GPU_4090

from .test_runpod import fake, plane_for, planes, wait_until  # noqa: F401  (fixtures)


async def test_network_volume_lifecycle_and_a_launch_that_mounts_it(tmp_path, fake, planes):  # noqa: F811
    plane = await plane_for(tmp_path, fake, planes)
    r = await plane.http.post("/api/v1/volumes", json={"name": "data", "provider": "runpod", "size_gb": 50,
                                                       "data_center": "EU-RO-1"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["data_center"], made["size_gb"], made["type"], made["price_per_month"]) == \
        ("EU-RO-1", 50, "STANDARD", 3.5)
    assert fake.network_volumes[made["id"]]["name"] == "data"
    assert ("POST /v2/network-volumes", {"name": "data", "size": 50, "dataCenter": "EU-RO-1"}) in fake.bodies
    r = await plane.http.post("/api/v1/volumes", json={"name": "data", "provider": "runpod", "size_gb": 10,
                                                       "data_center": "EU-RO-1"})
    assert r.status_code == 409
    r = await plane.http.post("/api/v1/volumes", json={"name": "x", "provider": "runpod", "size_gb": 10,
                                                       "data_center": "EU-RO-1", "type": "HIGH_PERFORMANCE"})
    assert r.status_code == 502 and "offers no HIGH_PERFORMANCE" in r.json()["error"]["message"]
    r = await plane.http.post("/api/v1/volumes", json={"name": "x", "provider": "runpod"})
    assert r.status_code == 422 and "--size" in r.json()["error"]["message"]

    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090], "volume": "data",
                                                    "cloud_type": "COMMUNITY"})
    assert r.status_code == 422 and "Secure Cloud only" in r.json()["error"]["message"]
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090], "volume": "data"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    await wait_until(lambda: any(call == "POST /v2/pods" for call, _ in fake.bodies))
    body = next(b for call, b in fake.bodies if call == "POST /v2/pods")
    assert body["mounts"] == {"network": [{"volumeId": made["id"], "path": "/workspace"}]}
    assert body["dataCenterIds"] == ["EU-RO-1"] and body["cloud"] == "SECURE"
    assert body["env"]["PODTUI_VOLUME"] == "/workspace" and body["env"]["HF_HOME"] == "/workspace/podtui/hf"
    await wait_until(lambda: fake.live_pods())
    assert fake.live_pods()[0]["dataCenterId"] == "EU-RO-1"

    listed = (await plane.http.get("/api/v1/volumes", params={"provider": "runpod"})).json()
    assert [(v["name"], v["in_use_by"]) for v in listed] == [("data", [run_id])]
    r = await plane.http.delete("/api/v1/volumes/data", params={"provider": "runpod"})
    assert r.status_code == 409 and run_id in r.json()["error"]["message"]
    assert made["id"] in fake.network_volumes

    await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    await plane.wait_status(run_id, {"terminated"}, timeout=60)
    await wait_until(lambda: not fake.live_pods(), 30)
    r = await plane.http.delete("/api/v1/volumes/data", params={"provider": "runpod"})
    assert r.status_code == 200, r.text
    assert fake.network_volumes == {}
    r = await plane.http.delete("/api/v1/volumes/data", params={"provider": "runpod"})
    assert r.status_code == 404
