"""Runs of more than one pod (nodes): the torchrun env contract and which node this pod is.

More than one pod (RunPod's cluster contract; `cluster_env`): the command gets MASTER_ADDR/PRIMARY_ADDR,
MASTER_PORT/PRIMARY_PORT, NODE_RANK, NUM_NODES, NUM_TRAINERS, WORLD_SIZE and PODTUI_TORCHRUN, from the pod's own
env where RunPod or the local provider set them, else single-node defaults (PODTUI_NODES, PODTUI_GPU_COUNT). A
node other than 0 numbers its log lines from NODE_RANK * NODE_SEQ_STRIDE, sends no metrics, and brings its
outputs home only with PODTUI_OUTPUTS_FROM=all (under node<k>/).
"""

from __future__ import annotations

import typing

NODE_SEQ_STRIDE = 10 ** 12
"""Node k's log lines are numbered from k * NODE_SEQ_STRIDE, so one run's nodes never share a number."""


def node_of_seq(seq: int) -> int:
    """The node that printed a run's log line number `seq` (the control plane and the TUI read it back)."""
    return seq // NODE_SEQ_STRIDE


DEFAULT_MASTER_PORT = "29500"


def count_of(value: typing.Optional[str], default: int = 1) -> int:
    try:
        return max(1, int(value or default))
    except ValueError:
        return default


def cluster_env(env: typing.Mapping[str, str]) -> dict:
    """The torchrun contract for the command: what RunPod sets on a cluster's nodes (kept where set), else
    the single-node values, and PODTUI_TORCHRUN built from them (concrete values: `$PODTUI_TORCHRUN train.py`
    expands once, so it must not hold further `$NAMES`)."""
    out: dict = {}
    nodes = count_of(env.get("NUM_NODES") or env.get("PODTUI_NODES"))
    trainers = count_of(env.get("NUM_TRAINERS") or env.get("PODTUI_GPU_COUNT") or env.get("RUNPOD_GPU_COUNT"))
    addr = env.get("MASTER_ADDR") or env.get("PRIMARY_ADDR") or "127.0.0.1"
    port = env.get("MASTER_PORT") or env.get("PRIMARY_PORT") or DEFAULT_MASTER_PORT
    try:
        rank = str(max(0, int(env.get("NODE_RANK") or 0)))
    except ValueError:
        rank = "0"
    out.update(MASTER_ADDR=addr, PRIMARY_ADDR=env.get("PRIMARY_ADDR") or addr, MASTER_PORT=port,
               PRIMARY_PORT=env.get("PRIMARY_PORT") or port, NODE_RANK=rank, NUM_NODES=str(nodes),
               NUM_TRAINERS=str(trainers), WORLD_SIZE=env.get("WORLD_SIZE") or str(nodes * trainers))
    if nodes > 1 and env.get("PODTUI_CLUSTER") == "runpod" and not env.get("NCCL_SOCKET_IFNAME"):
        out["NCCL_SOCKET_IFNAME"] = "ens1"  # RunPod: eth0 is for the internet; NCCL over it times out
    out["PODTUI_TORCHRUN"] = (f"torchrun --nnodes={nodes} --node_rank={rank} --nproc_per_node={trainers} "
                              f"--master_addr={addr} --master_port={port}")
    return out


def node_rank_of(env: typing.Mapping[str, str]) -> int:
    """This pod's node in a run of more than one (0 on a single pod: podtui's PODTUI_NODES first, so a user's own
    NUM_NODES on one pod changes nothing)."""
    if count_of(env.get("PODTUI_NODES") or env.get("NUM_NODES")) <= 1:
        return 0
    try:
        return max(0, min(255, int(env.get("NODE_RANK") or 0)))
    except ValueError:
        return 0
