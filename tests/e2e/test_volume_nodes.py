"""`--volume` for runs of more than one pod. RunPod: the document's CreateClusterRequest takes `mounts` (the network
volume on every member) and `dataCenterIds`, so the cluster is created in the volume's data center with the volume
mounted on each node (the fake holds it to that). Local provider: every node's process gets the volume's folder;
the nodes share its dataset cache, and with --outputs-on-volume node 0 writes to podtui/outputs/<run>/ (with
--outputs-from all, every node k to node<k>/ there, as they come home without a volume)."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.e2e import test_runpod as base
from tests.e2e.test_pull_volume import count_uploads
from tests.e2e.test_runpod import FINAL, events_of, plane_for, wait_until
from tests.fakes.runpod_v2 import GPU_4090, GPU_A100

fake = base.fake
planes = base.planes

# Each rank writes its file; rank 0 then waits for rank 1's mark on the shared volume (a barrier, as training's
# last all-reduce is: node 0's end ends the run and its other nodes).
WRITE = ("python3 -c \"import hashlib,os,time;d=os.environ['PODTUI_OUTPUT_DIR'];p=os.environ['PODTUI_DATASET_PATH'];"
         "os.makedirs(d,exist_ok=True);r=os.environ['NODE_RANK'];v=os.environ['PODTUI_VOLUME'];"
         "open(os.path.join(d,'rank'+r+'.txt'),'w').write(hashlib.sha256(open(p,'rb').read()).hexdigest());"
         "open(os.path.join(v,'done-'+os.environ['PODTUI_RUN_ID']+'-'+r),'w').close();"
         "[time.sleep(0.1) for _ in range(600) if r == '0' and "
         "not os.path.exists(os.path.join(v,'done-'+os.environ['PODTUI_RUN_ID']+'-1'))]\"")


async def test_a_cluster_mounts_the_network_volume_on_every_node_in_its_data_center(tmp_path, fake, planes):
    plane = await plane_for(tmp_path, fake, planes)
    made = (await plane.http.post("/api/v1/volumes", json={"name": "shared", "provider": "runpod", "size_gb": 50,
                                                           "data_center": "US-KS-2"})).json()
    fake.no_capacity.add((GPU_4090, "US-KS-2"))  # none where the volume is: said before any cluster
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090], "nodes": 2,
                                                    "volume": "shared"})
    assert r.status_code == 409 and "is in US-KS-2, where none of" in r.json()["error"]["message"], r.text
    assert not any(call == "POST /v2/clusters" for call, _ in fake.bodies)
    fake.no_capacity.clear()
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_A100], "nodes": 2,
                                                    "volume": "shared", "outputs_on_volume": True})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    await wait_until(lambda: any(call == "POST /v2/clusters" for call, _ in fake.bodies))
    body = next(b for call, b in fake.bodies if call == "POST /v2/clusters")
    assert body["mounts"] == {"network": [{"volumeId": made["id"], "path": "/workspace"}]}
    assert body["dataCenterIds"] == ["US-KS-2"]
    assert body["env"]["PODTUI_VOLUME"] == "/workspace"
    assert body["env"]["PODTUI_VOLUME_OUTPUTS"] == f"/workspace/podtui/outputs/{run_id}"
    await wait_until(lambda: len(fake.live_pods()) == 2)
    members = fake.live_pods()
    assert {m["dataCenterId"] for m in members} == {"US-KS-2"}
    assert all(m["mounts"]["network"][0]["volumeId"] == made["id"] for m in members)
    # the volume is in use while the cluster lives
    r = await plane.http.delete("/api/v1/volumes/shared", params={"provider": "runpod"})
    assert r.status_code == 409 and run_id in r.json()["error"]["message"]
    await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    await plane.wait_status(run_id, FINAL, timeout=60)
    await wait_until(lambda: not fake.live_pods(), 30)
    events = await events_of(plane, run_id)
    assert any("volume shared mounted at /workspace in US-KS-2" in e["message"] for e in events)


@pytest.mark.parametrize("connect", ["push", "pull"])
async def test_local_nodes_share_the_volumes_cache_and_write_their_outputs_there(local_plane, tmp_path, connect,
                                                                                 monkeypatch):
    plane = local_plane
    sent = count_uploads(monkeypatch)
    outputs_from = "all" if connect == "push" else "0"  # pull mode brings node 0's only
    assert (await plane.http.post("/api/v1/volumes", json={"name": "v", "provider": "local"})).status_code == 201
    data = os.urandom(500_000)
    (tmp_path / "d.bin").write_bytes(data)
    await plane.http.post("/api/v1/datasets", json={"path": str(tmp_path / "d.bin"), "name": "d"})
    r = await plane.http.post("/api/v1/runs", json={
        "dataset": "d", "gpu_types": ["local"], "nodes": 2, "volume": "v", "outputs_on_volume": True,
        "outputs_from": outputs_from, "command": WRITE, "keep_alive_s": 0, "connect": connect})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    run = await plane.wait_status(run_id, FINAL, timeout=120)
    events = (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()
    assert run["status"] == "succeeded", (run["status_reason"], events)
    volume = plane.control.settings.data_dir / "volumes" / "v"
    cache = volume / "podtui" / "datasets"
    assert len([p for p in cache.iterdir()]) == 1  # one copy for both nodes, no partial left
    out = volume / "podtui" / "outputs" / run_id
    want = hashlib.sha256(data).hexdigest()
    page = (await plane.http.get(f"/api/v1/runs/{run_id}/outputs")).json()
    if outputs_from == "all":
        assert (out / "node0" / "rank0.txt").read_text() == want
        assert (out / "node1" / "rank1.txt").read_text() == want
        assert sorted(f["path"] for f in page["volume"]["files"]) == ["node0/rank0.txt", "node1/rank1.txt"]
    else:  # node 1 kept its own folder: no two nodes write one file
        assert (out / "rank0.txt").read_text() == want
        assert [f["path"] for f in page["volume"]["files"]] == ["rank0.txt"]
        said = [e["message"] for e in events if e["kind"] == "dataset"]
        assert any("uploaded into the cache on volume v" in m for m in said), said  # node 0's word
        # node 1 waited for node 0's copy on the shared volume: the dataset went through this machine once
        assert sum(v for k, v in sent.items() if k.startswith("data-")) == len(data), sent
        assert any("node 1 waits for node 0's upload" in e["message"] for e in events), events
    assert not (volume / "podtui" / "uploads").exists() or not any((volume / "podtui" / "uploads").iterdir())
