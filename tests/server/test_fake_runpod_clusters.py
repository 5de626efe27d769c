"""Self-tests of the fake's clusters (tests/fakes/runpod_clusters.py): `/v2/clusters*` answer as RunPod's document
says (every answer is checked against its schema by the fake), members are pods with `cluster {id, rank, ip}`,
and the faults a multi-node run meets (capacity, the spending limit, a member lost) behave."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.fakes.runpod_v2 import GPU_4090, GPU_A100, NO_CAPACITY
from tests.server.test_fake_runpod_v2 import AUTH, IMAGE, client, fake  # noqa: F401  (fixtures)


def cluster_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "podtui-c1", "type": "TRAINING", "image": IMAGE, "args": "sleep 1",
                            "env": {"A": "1"}, "compute": {"gpuTypeId": GPU_4090, "gpuCountPerPod": 2, "podCount": 3}}
    body.update(extra)
    return body


async def test_a_cluster_is_created_listed_read_and_deleted_with_its_members(client, fake):  # noqa: F811
    r = await client.post("/v2/clusters", json=cluster_body())
    assert r.status_code == 201, r.text
    cluster = r.json()
    assert cluster["type"] == "TRAINING" and cluster["compute"]["podCount"] == 3
    assert cluster["pods"]["total"] == 3 and cluster["primary"]["status"] == "PROVISIONING"
    cid = cluster["id"]
    assert [c["id"] for c in (await client.get("/v2/clusters")).json()["clusters"]] == [cid]
    members = (await client.get(f"/v2/clusters/{cid}/pods")).json()["pods"]
    assert [m["cluster"]["rank"] for m in members] == [0, 1, 2]
    assert {m["cluster"]["id"] for m in members} == {cid}
    assert all(m["gpu"] == {"id": GPU_4090, "count": 2} and m["env"] == {"A": "1"} for m in members)
    assert cluster["primary"]["podId"] == members[0]["id"]
    # members are not plain pods: unlisted by default, and the pod endpoints do not delete them
    assert (await client.get("/v2/pods")).json()["pods"] == []
    listed = (await client.get("/v2/pods", params={"includeClusterPods": "true"})).json()["pods"]
    assert sorted(p["id"] for p in listed) == sorted(m["id"] for m in members)
    r = await client.delete(f"/v2/pods/{members[1]['id']}")
    assert r.status_code == 409 and f"/v2/clusters/{cid}" in r.json()["detail"]
    await asyncio.sleep(0.3)
    running = (await client.get(f"/v2/clusters/{cid}")).json()
    assert running["pods"]["byStatus"] == {"RUNNING": 3}
    listed = (await client.get("/v2/pods", params={"includeClusterPods": "true"})).json()["pods"]
    assert sum(p["cost"] for p in listed) == round(3 * 2 * 0.69, 4)
    assert (await client.delete(f"/v2/clusters/{cid}")).status_code == 204
    assert (await client.get(f"/v2/clusters/{cid}")).status_code == 404
    assert (await client.get(f"/v2/clusters/{cid}/pods")).status_code == 404
    assert (await client.delete(f"/v2/clusters/{cid}")).status_code == 404
    assert fake.live_pods() == []


async def test_refusals_follow_the_document_and_the_error_table(client, fake):  # noqa: F811
    r = await client.post("/v2/clusters", json=cluster_body(registry="reg-1"))  # no `registry` for clusters
    assert r.status_code == 422 and any("registry" in e for e in r.json()["errors"])
    r = await client.post("/v2/clusters", json=cluster_body(compute={"gpuTypeId": GPU_4090, "gpuCountPerPod": 1,
                                                                     "podCount": 1}))
    assert r.status_code == 422  # podCount: 2..250
    fake.no_capacity.add(GPU_4090)
    r = await client.post("/v2/clusters", json=cluster_body())
    assert r.status_code == 400 and r.json()["detail"] == NO_CAPACITY
    r = await client.post("/v2/clusters", json=cluster_body(compute={"gpuTypeId": GPU_A100, "gpuCountPerPod": 8,
                                                                     "podCount": 8}))
    assert r.status_code == 400 and "spending limit" in r.json()["detail"]
    fake.no_balance = True
    assert (await client.post("/v2/clusters", json=cluster_body())).status_code == 402
    assert fake.clusters.live() == [] and fake.live_pods() == []


async def test_a_member_lost_mid_run_leaves_the_cluster_short(client, fake):  # noqa: F811
    cid = (await client.post("/v2/clusters", json=cluster_body())).json()["id"]
    lost = fake.clusters.lose_member(cid, 1)
    members = (await client.get(f"/v2/clusters/{cid}/pods")).json()["pods"]
    assert [m["cluster"]["rank"] for m in members] == [0, 2] and lost not in {m["id"] for m in members}
    assert (await client.get(f"/v2/clusters/{cid}")).json()["pods"]["total"] == 2
    assert (await client.delete(f"/v2/clusters/{cid}")).status_code == 204
    assert fake.live_pods() == []


async def test_the_members_run_with_runpods_cluster_env(tmp_path):
    from tests.fakes.runpod_v2 import FakeRunPodV2

    api = FakeRunPodV2(tmp_path / "x", api_key="test-key", execute=True, boot_delay_s=0.2)
    await api.start()
    try:
        async with httpx.AsyncClient(base_url=api.url, headers=AUTH, trust_env=False, timeout=10) as c:
            script = tmp_path / "show.sh"
            script.write_text("env | grep -E '^(MASTER|PRIMARY|NODE_|NUM_|WORLD|HOST_NODE)'; sleep 60\n")
            show = f"bash {script}"
            cid = (await c.post("/v2/clusters", json=cluster_body(args=show))).json()["id"]
            for _ in range(100):
                lines = [api.log_lines(p, "container") for p in api.clusters.clusters[cid]["_pods"]]
                if all(any(x.startswith("WORLD_SIZE=") for x in ls) for ls in lines):
                    break
                await asyncio.sleep(0.1)
            for rank, ls in enumerate(lines):
                env = dict(x.split("=", 1) for x in ls if "=" in x)
                assert env["NODE_RANK"] == str(rank) and env["NUM_NODES"] == "3" and env["NUM_TRAINERS"] == "2"
                assert env["WORLD_SIZE"] == "6" and env["MASTER_ADDR"] == env["PRIMARY_ADDR"] == "127.0.0.1"
                assert env["MASTER_PORT"] == env["PRIMARY_PORT"]
            assert (await c.delete(f"/v2/clusters/{cid}")).status_code == 204
        assert api.live_pods() == [] and api.response_errors == []
    finally:
        await api.stop()
