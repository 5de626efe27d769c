"""Runs of more than one pod on the local provider: N local pods with RunPod's cluster env, a stdlib two-node
rendezvous over MASTER_ADDR:MASTER_PORT, logs from every node, metrics from node 0, one node's end ending all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from podtui.models import NODE_SEQ_STRIDE, node_of_seq
from tests.support import wait_for

from .helpers import group_alive

# Node 0 listens on MASTER_ADDR:MASTER_PORT; every other node connects and sends its rank; node 0 sums the
# ranks it received with its own and prints it as the loss (an all-reduce by hand). Every node prints its env
# contract and a `step=` line: only node 0's may become a metric.
RENDEZVOUS = r'''
import json, os, socket, sys, time
rank, nodes = int(os.environ["NODE_RANK"]), int(os.environ["NUM_NODES"])
keys = ["MASTER_ADDR", "PRIMARY_ADDR", "MASTER_PORT", "PRIMARY_PORT", "NODE_RANK", "NUM_NODES", "NUM_TRAINERS",
        "WORLD_SIZE", "PODTUI_TORCHRUN"]
print("env " + json.dumps({k: os.environ.get(k) for k in keys}), flush=True)
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
if rank == 0:
    srv = socket.create_server((addr, port))
    srv.settimeout(120)
    total = 0
    for _ in range(nodes - 1):
        conn, _ = srv.accept()
        total += int(conn.recv(16).decode())
        conn.close()
    print(f"step=1 loss={total + 10}", flush=True)
else:
    deadline = time.time() + 120
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                sys.exit("no rendezvous")
            time.sleep(0.2)
    conn.sendall(str(rank).encode())
    conn.close()
    print("step=1 loss=999", flush=True)
print(f"node {rank} done", flush=True)
'''


def workdir_with(tmp_path: Path, script: str) -> str:
    work = tmp_path / "code"
    work.mkdir(exist_ok=True)
    (work / "rdv.py").write_text(script)
    return str(work)


async def launch_nodes(plane, tmp_path, nodes: int, script: str, command: str = "python3 rdv.py",
                       **spec) -> str:
    """A run of `nodes` local pods running `command` in a workdir holding rdv.py; its id."""
    r = await plane.http.post("/api/v1/runs", json={
        "dataset": "demo", "gpu_types": ["local"], "nodes": nodes, "workdir": workdir_with(tmp_path, script),
        "command": command, **spec})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def all_logs(plane, run_id: str, node: int) -> list[dict]:
    page = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={
        "after_seq": node * NODE_SEQ_STRIDE - 1, "before_seq": (node + 1) * NODE_SEQ_STRIDE, "limit": 5000})).json()
    return list(page["lines"])


@pytest.mark.parametrize("connect", ["push", "pull"])
async def test_two_local_nodes_meet_and_report_as_one_run(local_plane, tmp_path, connect):
    run_id = await launch_nodes(local_plane, tmp_path, 2, RENDEZVOUS, gpu_count=2, keep_alive_s=0, connect=connect)
    run = await local_plane.wait_status(run_id, {"succeeded", "failed", "lost", "terminated"}, timeout=120)
    assert run["status"] == "succeeded", run["status_reason"]
    assert run["spec"]["nodes"] == 2
    envs = {}
    for node in (0, 1):
        lines = await all_logs(local_plane, run_id, node)
        assert lines and all(node_of_seq(x["seq"]) == node for x in lines)
        assert any(x["text"] == f"node {node} done" for x in lines)
        env_line = next(x["text"] for x in lines if x["text"].startswith("env "))
        envs[node] = json.loads(env_line[4:])
    port = envs[0]["MASTER_PORT"]
    for node, env in envs.items():
        assert env["NODE_RANK"] == str(node)
        assert env["MASTER_ADDR"] == env["PRIMARY_ADDR"] == "127.0.0.1"
        assert env["MASTER_PORT"] == env["PRIMARY_PORT"] == port
        assert (env["NUM_NODES"], env["NUM_TRAINERS"], env["WORLD_SIZE"]) == ("2", "2", "4")
        assert env["PODTUI_TORCHRUN"] == (f"torchrun --nnodes=2 --node_rank={node} --nproc_per_node=2 "
                                          f"--master_addr=127.0.0.1 --master_port={port}")
    # the metric is node 0's (ranks 0 + 1 + 10); node 1's printed step=1 loss=999 is no metric
    page = (await local_plane.http.get(f"/api/v1/runs/{run_id}/metrics")).json()
    assert page["series"]["loss"]["values"] == [11.0]

    async def node1_done():
        run = (await local_plane.http.get(f"/api/v1/runs/{run_id}")).json()
        return run if run["nodes"][1]["status"] == "succeeded" else None
    run = await wait_for(node1_done, 60)
    assert [n["rank"] for n in run["nodes"]] == [0, 1]

    async def all_gone():
        pods = await local_plane.runs.providers["local"].list_pods()
        return not pods
    await wait_for(all_gone, 60)

    async def forgotten():  # the control plane keeps nothing of an ended run in memory
        return not [key for key in local_plane.runs._node_said if key[0] == run_id]
    await wait_for(forgotten, 30, "the nodes' last words forgotten")

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "podtui.cli", "--server", local_plane.url, "--token",
            local_plane.control.admin_token, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, _ = await cli("logs", run_id, "--node", "1")
    assert code == 0 and "[node 1] node 1 done" in out.splitlines()
    assert all(line.startswith("[node 1] ") for line in out.splitlines())
    code, out, _ = await cli("logs", run_id)
    assert "[node 0] node 0 done" in out.splitlines() and "[node 1] node 1 done" in out.splitlines()
    code, _, err = await cli("logs", run_id, "--node", "2")
    assert code == 2 and f"run {run_id} has 2 node(s), numbered from 0: no node 2" in err
    assert "Traceback" not in err
    code, out, _ = await cli("runs")
    assert "2x2 local" in out


async def test_one_node_failing_ends_every_node(local_plane, tmp_path):
    script = "import os, sys, time\nif os.environ['NODE_RANK'] == '1':\n    print('node 1 breaks')\n" \
             "    sys.exit(3)\nprint('node 0 waits', flush=True)\ntime.sleep(600)\n"
    run_id = await launch_nodes(local_plane, tmp_path, 2, script, keep_alive_s=0)
    run = await local_plane.wait_status(run_id, {"succeeded", "failed", "lost", "terminated"}, timeout=120)
    assert run["status"] == "failed"
    assert "node 1 failed (exit code 3)" in run["status_reason"], run["status_reason"]
    provider = local_plane.runs.providers["local"]

    async def ended():
        state = await provider.get_pod(run["pod_id"])
        return state.phase == "gone"
    await wait_for(ended, 60)
    for member in (await provider.get_pod(run["pod_id"])).nodes:
        meta = json.loads((provider.pods_dir / member.pod_id / "pod.json").read_text())
        assert not group_alive(int(meta["pid"]))


async def test_terminate_ends_every_node(local_plane, tmp_path):
    run_id = await launch_nodes(local_plane, tmp_path, 3, "print('x')\n", "python3 rdv.py; sleep 600")

    async def training():
        run = (await local_plane.http.get(f"/api/v1/runs/{run_id}")).json()
        lines = [await all_logs(local_plane, run_id, k) for k in range(3)]
        return run if run["status"] == "training" and all(lines) else None
    run = await wait_for(training, 120)
    r = await local_plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    assert r.status_code == 200, r.text
    provider = local_plane.runs.providers["local"]
    state = await provider.get_pod(run["pod_id"])
    assert state.phase == "gone" and len(state.nodes) == 3
    assert all(n.phase == "gone" for n in state.nodes)


async def test_a_node_lost_mid_run_ends_the_run_and_the_others(local_plane, tmp_path):
    run_id = await launch_nodes(local_plane, tmp_path, 2, "print('x')\n", "python3 rdv.py; sleep 600")

    async def training():
        run = (await local_plane.http.get(f"/api/v1/runs/{run_id}")).json()
        return run if run["status"] == "training" and len(run["nodes"]) == 2 and run["nodes"][1]["pod_id"] else None
    run = await wait_for(training, 120)
    provider = local_plane.runs.providers["local"]
    member = provider.pods_dir / run["nodes"][1]["pod_id"]  # the node vanishes as a host failure takes it

    async def command_started():  # the agent has started node 1's command (its process group is known)
        return (member / "agent.json").exists()
    await wait_for(command_started, 60)
    for pgid in (json.loads((member / "pod.json").read_text())["pid"],
                 json.loads((member / "agent.json").read_text())["child_pgid"]):
        os.killpg(int(pgid), signal.SIGKILL)
    run = await local_plane.wait_status(run_id, {"succeeded", "failed", "lost", "terminated"}, timeout=60)
    assert run["status"] in ("lost", "failed")
    assert "node 1" in run["status_reason"] and "cannot train without it" in run["status_reason"]

    async def ended():
        return (await provider.get_pod(run["pod_id"])).phase == "gone"
    await wait_for(ended, 60)


# -- real torchrun across two local nodes (CPU, gloo) ------------------------------------------------------

TORCH_VENV = Path(tempfile.gettempdir()) / "podtui-test-torch"

TRAIN = r'''
import os
import sys
import torch
import torch.distributed as dist


def say(line):  # one write: print() writes the line and its end apart, and the ranks share the pipe
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
assert world == int(os.environ["WORLD_SIZE"]) == 4, (world, os.environ["WORLD_SIZE"])
for step in (1, 2, 3):
    loss = torch.tensor([float(rank + 1) * step])  # each rank's own loss; the run's is their mean
    dist.all_reduce(loss, op=dist.ReduceOp.SUM)
    if rank == 0:
        say(f"step={step} loss={loss.item() / world}")
say(f"rank {rank} of {world} on node {os.environ['GROUP_RANK']} done")
dist.destroy_process_group()
'''


def torch_bin() -> Path:
    """A scratch venv with torch 2.13.0 (CPU; the machine's wheel), made once; the test is skipped without it."""
    bin_dir = TORCH_VENV / "bin"
    if not (bin_dir / "torchrun").exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(TORCH_VENV)], check=True, capture_output=True)
            subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True,
                           capture_output=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"torch 2.13.0 cannot be installed in a scratch venv here: {exc}")
    check = subprocess.run([str(bin_dir / "python"), "-c", "import torch.distributed as d; assert d.is_available()"],
                           capture_output=True)
    if check.returncode != 0:
        pytest.skip("torch.distributed is not available in the scratch venv")
    return bin_dir


@pytest.mark.timeout(900)
async def test_real_torchrun_across_two_local_nodes_of_two_processes(local_plane, tmp_path):
    bin_dir = await asyncio.to_thread(torch_bin)
    r = await local_plane.http.post("/api/v1/runs", json={
        "dataset": "demo", "gpu_types": ["local"], "nodes": 2, "gpu_count": 2, "keep_alive_s": 0,
        "workdir": workdir_with(tmp_path, TRAIN), "env": {"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"},
        "command": f"export PATH={bin_dir}:$PATH; $PODTUI_TORCHRUN rdv.py"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    run = await local_plane.wait_status(run_id, {"succeeded", "failed", "lost", "terminated"}, timeout=600)
    texts = {k: [x["text"] for x in await all_logs(local_plane, run_id, k)] for k in (0, 1)}
    assert run["status"] == "succeeded", (run["status_reason"], texts)
    # the mean of the ranks' losses (1, 2, 3, 4) x step, all-reduced across both nodes, read from rank 0
    page = (await local_plane.http.get(f"/api/v1/runs/{run_id}/metrics")).json()
    assert page["series"]["loss"]["steps"] == [1, 2, 3], texts
    assert page["series"]["loss"]["values"] == [2.5, 5.0, 7.5]
    assert any(t.startswith("rank 0 of 4 on node 0 done") for t in texts[0])
    assert any(t.startswith("rank 3 of 4 on node 1 done") or t.startswith("rank 2 of 4 on node 1 done")
               for t in texts[1])


OUTPUTS = ("import os\n"
           "open(os.path.join(os.environ['PODTUI_OUTPUT_DIR'], 'r.txt'), 'w').write(os.environ['NODE_RANK'])\n")


@pytest.mark.parametrize(("outputs_from", "connect"), [("0", "push"), ("all", "push"), ("0", "pull")])
async def test_outputs_come_from_node_0_or_from_every_node_under_its_folder(local_plane, tmp_path, outputs_from,
                                                                           connect):
    run_id = await launch_nodes(local_plane, tmp_path, 2, OUTPUTS, outputs_from=outputs_from, connect=connect)
    run = await local_plane.wait_status(run_id, {"succeeded", "failed", "lost", "terminated"}, timeout=120)
    events = (await local_plane.http.get(f"/api/v1/runs/{run_id}/events")).json()
    assert run["status"] == "succeeded", (run["status_reason"], [(e["kind"], e["message"][:200]) for e in events])
    want = {"r.txt": "0"} if outputs_from == "0" else {"node0/r.txt": "0", "node1/r.txt": "1"}

    async def home():
        page = (await local_plane.http.get(f"/api/v1/runs/{run_id}/outputs")).json()
        got = {f["path"] for f in page["files"] if f.get("home_at")}
        return page if got == set(want) else None
    page = await wait_for(home, 60)
    for path, text in want.items():
        assert (Path(page["folder"]) / path).read_text() == text
    provider = local_plane.runs.providers["local"]

    async def ended():  # both nodes end once the outputs are home (neither waits out the 30 min keep-alive)
        return (await provider.get_pod(run["pod_id"])).phase == "gone"
    await wait_for(ended, 60)


async def test_what_several_nodes_cannot_be_is_refused_at_launch(local_plane):
    base = {"dataset": "demo", "gpu_types": ["local"], "command": "true"}
    for extra, status, said in [
        ({"nodes": 2, "connect": "pull", "outputs_from": "all"}, 409, "from node 0 only"),
        ({"nodes": 2, "spot": True}, 409, "no spot pricing"),
        ({"nodes": 0}, 422, "nodes"),
        ({"nodes": 65}, 422, "nodes"),
    ]:
        r = await local_plane.http.post("/api/v1/runs", json={**base, **extra})
        assert r.status_code == status, (extra, r.text)
        assert said in r.json()["error"]["message"], (extra, r.text)
    assert await local_plane.store.list_runs() == []


async def test_the_cli_launches_several_nodes_and_names_a_bad_count(local_plane):
    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "podtui.cli", "--server", local_plane.url, "--token",
            local_plane.control.admin_token, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await cli("launch", "--dataset", "demo", "--nodes", "2", "--gpu-count", "3", "--keep-alive", "0",
                               "--command", "echo $PODTUI_TORCHRUN", "--wait", "--json")
    assert code == 0, err
    run = json.loads(out)
    assert run["status"] == "succeeded" and run["spec"]["nodes"] == 2 and len(run["nodes"]) == 2
    code, out, _ = await cli("logs", run["id"], "--node", "0")
    assert any(line.startswith("[node 0] torchrun --nnodes=2 --node_rank=0 --nproc_per_node=3 "
                               "--master_addr=127.0.0.1 --master_port=") for line in out.splitlines()), out
    code, _, err = await cli("launch", "--dataset", "demo", "--nodes", "0", "--command", "true")
    assert code == 2 and "--nodes: must be at least 1" in err and "Traceback" not in err


async def test_pull_mode_reaches_each_node_of_a_cluster_through_runpods_proxy(plane):
    """Every member of a cluster exposes the run's port; node k is reached at its own pod's proxy address (the
    pull path itself is the local test's above: the fake proxy serves one port per machine, so members cannot
    run side by side behind it)."""
    from podtui.models import LaunchSpec, Run, RunNode, RunStatus
    from podtui.providers.runpod import RunPodProvider

    provider = RunPodProvider("test-key", "http://127.0.0.1:9")
    plane.runs.providers["runpod"] = provider
    try:
        run = Run(id="r1", name="r", provider="runpod", status=RunStatus.training, dataset_id="d",
                  created_at=time.time(), pod_id="cluster:cl1", pod_port=8419,
                  spec=LaunchSpec(dataset="demo", gpu_types=["x"], nodes=2, connect="pull"),
                  nodes=[RunNode(rank=0, pod_id="podzero"), RunNode(rank=1, pod_id="podone")])
        puller = plane.runs.puller
        assert puller.url_of(run, 0) == "https://podzero-8419.proxy.runpod.net"
        assert puller.url_of(run, 1) == "https://podone-8419.proxy.runpod.net"
        assert puller.url_of(run.model_copy(update={"nodes": []}), 1) is None  # not named yet: waited for
    finally:
        del plane.runs.providers["runpod"]
        await provider.close()


async def test_each_node_boots_once_and_a_boot_past_that_is_a_restart(plane):
    """A node may fetch its start script after another has started downloading (it booted later): that is no
    container restart; a boot past one per node is."""
    from podtui.models import LaunchSpec, Run, RunStatus
    from podtui.tokens import hash_token, new_token

    record = await plane.store.find_dataset("demo")
    token = new_token()
    run = Run(id="twonodes01", name="t", provider="local", status=RunStatus.booting, created_at=time.time(),
              spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true", nodes=2),
              dataset_id=record.dataset.id)
    await plane.store.create_run(run, hash_token(token))
    auth = {"Authorization": f"Bearer {token}"}
    r = await plane.http.get(f"/api/v1/boot/{run.id}/script", headers=auth)
    assert r.status_code == 200
    await plane.store.update_run(run.id, status=RunStatus.downloading)  # node 0 downloads
    r = await plane.http.get(f"/api/v1/boot/{run.id}/script", headers=auth)  # node 1 boots now
    assert r.status_code == 200, r.text
    r = await plane.http.get(f"/api/v1/boot/{run.id}/script", headers=auth)  # a third boot: a restart
    assert r.status_code == 410 and r.json()["error"]["code"] == "container_restarted"


async def test_budget_and_stall_act_on_the_whole_group(tmp_path):
    """The group bills every node's price: a $3 budget at $1/s per node is reached in about 1.5 s, not 3 s; the
    control plane's stall guardrail watches every node's output (node 1 printing keeps the run from being called
    stalled at 3 s; its max runtime ends it)."""
    from tests.support import make_settings, start_plane

    plane = await start_plane(make_settings(tmp_path, supervisor_interval_s=0.3, local_price_per_hour=3600.0,
                                            stall_timeout_s=3.0))
    try:
        r = await plane.http.post("/api/v1/runs", json={
            "dataset": "demo", "gpu_types": ["local"], "nodes": 2, "command": "sleep 60", "budget_usd": 3.0})
        run_id = r.json()["id"]
        run = await plane.wait_status(run_id, {"terminated", "failed", "succeeded", "lost"}, timeout=60)
        assert run["status"] == "terminated" and "budget of $3.00 reached" in run["status_reason"]
        assert run["price_per_hour"] == 7200.0  # two nodes at $3600/h each
        assert run["ended_at"] - run["started_at"] < 2.9  # before one node alone would have cost $3 (3 s)

        r = await plane.http.post("/api/v1/runs", json={
            "dataset": "demo", "gpu_types": ["local"], "nodes": 2, "max_runtime_s": "6s",
            "command": 'if [ "$NODE_RANK" = 1 ]; then while true; do echo tick; sleep 0.5; done; else sleep 60; fi'})
        run_id = r.json()["id"]
        run = await plane.wait_status(run_id, {"terminated", "failed", "succeeded", "lost"}, timeout=60)
        assert run["status"] == "terminated" and "max runtime" in run["status_reason"], run["status_reason"]
    finally:
        for run in await plane.store.list_runs(live_only=True):
            await plane.http.post(f"/api/v1/runs/{run.id}/terminate")
        await plane.http.aclose()
        await plane.control.stop()
