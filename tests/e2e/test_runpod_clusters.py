"""Runs of more than one pod on RunPod: one Instant Cluster (POST /v2/clusters, type TRAINING), against the fake
RunPod v2 API held to RunPod's document (tests/fakes/runpod_clusters.py), through a real control plane. Every
test ends with no cluster and no pod left at the fake."""

from __future__ import annotations

import asyncio
import json

import pytest

from podtui.bootstrap.script import BOOT_COMMAND
from podtui.models import NODE_SEQ_STRIDE
from podtui.server import keys
from tests.e2e import test_runpod as base
from tests.e2e.test_multinode import RENDEZVOUS, workdir_with
from tests.e2e.test_runpod import FINAL, events_of, launch, plane_for, run_of, wait_until
from tests.fakes.runpod_v2 import GPU_4090, GPU_A6000

ENV_KEYS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NUM_NODES", "NUM_TRAINERS", "WORLD_SIZE", "PODTUI_TORCHRUN",
            "NCCL_SOCKET_IFNAME")
SHOW_ENV = ("import json, os\nprint('env ' + json.dumps({k: os.environ.get(k) for k in "
            + repr(ENV_KEYS) + "}), flush=True)\n")


fake = base.fake  # the fixtures of the pod tests: the fake and the planes, each test ending with nothing left
planes = base.planes


def cluster_bodies(fake):
    return [body for call, body in fake.bodies if call == "POST /v2/clusters"]


async def node_lines(plane, run_id, node):
    page = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={
        "after_seq": node * NODE_SEQ_STRIDE - 1, "before_seq": (node + 1) * NODE_SEQ_STRIDE, "limit": 5000})).json()
    return [x["text"] for x in page["lines"]]


async def test_a_two_node_run_is_one_cluster_that_trains_reports_and_is_deleted(fake, tmp_path, planes):
    fake.execute = True
    fake.no_capacity.add(GPU_4090)  # fails over to the next GPU type, as pods do
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, gpu_types=[GPU_4090, GPU_A6000], nodes=2, gpu_count=2, keep_alive_s=0,
                          workdir=workdir_with(tmp_path, SHOW_ENV + RENDEZVOUS), command="python3 rdv.py")
    run = await plane.wait_status(run_id, FINAL, timeout=90)
    assert run["status"] == "succeeded", (run["status_reason"], await events_of(plane, run_id))
    assert run["gpu_type"] == GPU_A6000 and run["pod_id"].startswith("cluster:")
    first, second = cluster_bodies(fake)
    assert first["compute"] == {"gpuTypeId": GPU_4090, "gpuCountPerPod": 2, "podCount": 2}
    assert second["compute"] == {"gpuTypeId": GPU_A6000, "gpuCountPerPod": 2, "podCount": 2}
    assert second["type"] == "TRAINING" and second["args"] == BOOT_COMMAND and "registry" not in second
    assert second["env"]["PODTUI_CLUSTER"] == "runpod" and "test-key" not in second["env"].values()
    assert "POST /v2/pods" not in fake.calls
    # RunPod's cluster env reached the command on each node, with NCCL on the cluster's interface
    for node in (0, 1):
        lines = await node_lines(plane, run_id, node)
        env = json.loads(next(t for t in lines if t.startswith("env "))[4:])
        assert env["NODE_RANK"] == str(node) and env["NUM_NODES"] == "2" and env["WORLD_SIZE"] == "4"
        assert env["NCCL_SOCKET_IFNAME"] == "ens1"
        assert env["PODTUI_TORCHRUN"] == (f"torchrun --nnodes=2 --node_rank={node} --nproc_per_node=2 "
                                          f"--master_addr={env['MASTER_ADDR']} --master_port={env['MASTER_PORT']}")
        assert f"node {node} done" in lines
    page = (await plane.http.get(f"/api/v1/runs/{run_id}/metrics")).json()
    assert page["series"]["loss"]["values"] == [11.0]  # node 0's: ranks 0 + 1 + 10
    # cost: the members' cost summed (2 nodes x 2 GPUs x $0.76)
    assert run["price_per_hour"] == pytest.approx(4 * 0.76)
    # the cluster is deleted once the run is over (members cannot end themselves through the pod endpoints)
    assert await wait_until(lambda: not fake.clusters.live() and not fake.live_pods(), 60), fake.live_pods()
    assert "DELETE /v2/clusters/{id}" in fake.calls


async def test_one_read_per_pass_nodes_and_cost_and_terminate_deletes_the_cluster(fake, tmp_path,
                                                                                    planes):
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, nodes=3, command="sleep 600")

    async def nodes_known():
        run = await run_of(plane, run_id)
        return run if len(run["nodes"]) == 3 and all(n["status"] == "running" for n in run["nodes"]) else None
    run = None
    for _ in range(100):
        run = await nodes_known()
        if run:
            break
        await asyncio.sleep(0.1)
    assert run, await run_of(plane, run_id)
    cluster_id = run["pod_id"].removeprefix("cluster:")
    members = {p["cluster"]["rank"]: p["id"] for p in fake.pods.values() if p.get("cluster")}
    assert [n["pod_id"] for n in run["nodes"]] == [members[0], members[1], members[2]]
    assert all(n["price_per_hour"] == 0.69 for n in run["nodes"])
    assert run["price_per_hour"] == pytest.approx(3 * 0.69)
    # the stray sweep (every 6th pass: a pod and a cluster listing) is not the pass's read: kept out of the window
    plane.control.runner.app[keys.SUPERVISOR].stray_every = 10**9
    before = len(fake.requests)
    await asyncio.sleep(1.0)  # about three supervisor passes
    polled = [r for r in fake.requests[before:] if r.startswith("GET /v2/")]
    assert polled and all(r == "GET /v2/pods?includeClusterPods=true" for r in polled), polled
    run = await run_of(plane, run_id)  # each node's cost so far; together about the run's
    assert all(n["spent_usd"] > 0 for n in run["nodes"])
    assert sum(n["spent_usd"] for n in run["nodes"]) <= run["spent_usd"] + 1e-6
    r = await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    assert r.status_code == 200, r.text
    assert f"DELETE /v2/clusters/{cluster_id}" in fake.requests
    assert fake.clusters.live() == [] and fake.live_pods() == []


@pytest.mark.parametrize("how", ["lost", "error"])
async def test_a_member_lost_mid_run_ends_the_run_and_deletes_the_cluster(fake, tmp_path, planes, how):
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, nodes=2, command="sleep 600")
    ok = await wait_until(lambda: any(p.get("cluster") and p["status"] == "RUNNING" for p in fake.pods.values()), 20)
    assert ok
    run = None
    for _ in range(100):
        run = await run_of(plane, run_id)
        if len(run["nodes"]) == 2 and all(n["pod_id"] for n in run["nodes"]):
            break
        await asyncio.sleep(0.1)
    cluster_id = run["pod_id"].removeprefix("cluster:")
    if how == "lost":  # the host is gone: its pod vanishes
        lost = fake.clusters.lose_member(cluster_id, 1)
    else:  # RunPod puts the member in ERROR
        lost = run["nodes"][1]["pod_id"]
        fake.fail_pod(lost)
    run = await plane.wait_status(run_id, FINAL, timeout=30)
    assert run["status"] in ("lost", "failed")
    assert f"node 1 (pod {lost})" in run["status_reason"] and "cannot train without it" in run["status_reason"]
    assert await wait_until(lambda: not fake.clusters.live() and not fake.live_pods(), 30)


@pytest.mark.parametrize("fault", ["500", "reset", "garbage"])
async def test_a_lost_create_answer_is_found_by_name_without_a_second_cluster(fake, tmp_path, planes,
                                                                               fault):
    fake.create_fault = fault
    plane = await plane_for(tmp_path, fake, planes)
    run_id = await launch(plane, nodes=2, command="sleep 600")
    assert await wait_until(lambda: fake.calls.count("POST /v2/clusters") >= 1, 20)
    for _ in range(100):
        run = await run_of(plane, run_id)
        if run["pod_id"]:
            break
        await asyncio.sleep(0.1)
    assert len(fake.clusters.live()) == 1 and run["pod_id"] == "cluster:" + fake.clusters.live()[0]["id"]
    assert fake.calls.count("POST /v2/clusters") == 1
    messages = [e["message"] for e in await events_of(plane, run_id)]
    assert any("by its name" in m for m in messages), messages
    r = await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    assert r.status_code == 200 and fake.clusters.live() == [] and fake.live_pods() == []


async def test_refusals_name_the_reason(fake, tmp_path, planes):
    plane = await plane_for(tmp_path, fake, planes)
    fake.clusters.spending_limit = 1.0
    run_id = await launch(plane, nodes=2, gpu_count=2, command="true")
    run = await plane.wait_status(run_id, FINAL, timeout=30)
    assert run["status"] == "failed" and "spending limit" in run["status_reason"], run["status_reason"]
    fake.clusters.spending_limit = 100.0
    fake.no_capacity.add(GPU_4090)
    run_id = await launch(plane, nodes=2, command="true")
    run = await plane.wait_status(run_id, FINAL, timeout=30)
    assert run["status"] == "failed" and "no capacity" in run["status_reason"], run["status_reason"]
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_A6000], "nodes": 2,
                                                    "provider": "runpod", "cloud_type": "COMMUNITY"})
    assert r.status_code == 409 and "Secure Cloud only" in r.json()["error"]["message"]
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_A6000], "nodes": 2,
                                                    "provider": "runpod", "gpu_count": 9})
    assert r.status_code == 422 and "gpu_count" in r.json()["error"]["message"]
    assert fake.clusters.live() == [] and fake.live_pods() == []
