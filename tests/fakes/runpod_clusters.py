"""The fake RunPod v2 API's clusters (`/v2/clusters*`, "Instant Clusters"), from RunPod's published document.

Routes: listClusters, createCluster, getCluster, updateCluster (rename), deleteCluster, listClusterPods. Bodies are
validated against the document by the fake's pipeline (CreateClusterRequest has no `registry`: a body with one is
a 422 there), and every answer against its response schema.

A create (type TRAINING or APPLICATION; SLURM and RAY answer 400 here: not modelled) checks, in order: balance
(402), pool access (403, `forbidden_gpus`), `gpuCountPerPod` against the GPU type's Secure maximum (400), the
account's cluster spending limit (400 with CLUSTER_LIMIT: the document says accounts have one, not how a create
over it is answered; assumed 400 with a detail), then placement (400 NO_CAPACITY when `no_capacity` holds the GPU
type or every allowed data center for it: a cluster is placed in one data center, Secure Cloud). It answers 201
with the Cluster; its `podCount` members are pods of the fake (same life as pods: PROVISIONING, STARTING,
RUNNING; executed in execute mode) with `cluster {id, rank, ip}`, each billed at the GPU type's Secure price x
`gpuCountPerPod`. Members are not in `GET /v2/pods` unless `includeClusterPods=true`, and the pod endpoints refuse
to change or delete them (409: the document says they "cannot be modified or deleted via the pod endpoints", not
with which status; assumed 409 Conflict). DELETE /v2/clusters/{id} terminates every member and the cluster is gone
(404) at once.

Every member's container gets RunPod's cluster env (`PRIMARY_ADDR`/`MASTER_ADDR`, `PRIMARY_PORT`/`MASTER_PORT`,
`NODE_ADDR`, `NODE_RANK`, `NUM_NODES`, `NUM_TRAINERS`, `HOST_NODE_ADDR`, `WORLD_SIZE`). The addresses are the
members' overlay IPs (10.65.0.<rank + 2>) in the records; in execute mode, where every member runs on this
machine, the env says 127.0.0.1 and a free port instead, so a real rendezvous works.

Knobs: `spending_limit` (USD per hour, default 100: a create whose members would bill more answers 400),
`create_fault` (shared with pods: the next create of either kind loses its answer after the cluster exists),
`lose_member(cluster_id, rank)` (a member vanishes mid-run, as a host failure takes it: its pod is TERMINATED and
unlisted, the cluster stays).
"""

from __future__ import annotations

import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runpod_v2 import FakeRunPodV2, Reply

CLUSTER_OPS = ("listClusters", "createCluster", "getCluster", "updateCluster", "deleteCluster", "listClusterPods")
CLUSTER_LIMIT = "cluster spending limit exceeded: this cluster would cost ${cost:.2f}/h and the account's limit " \
                "for clusters is ${limit:.2f}/h; contact support to raise it"
OVERLAY_CIDR = "10.65.0.0/16"
MEMBER_REFUSED = ("pod {pod_id} is a member of cluster {cluster_id}: member pods are managed through "
                  "/v2/clusters/{cluster_id}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeClusters:
    """The clusters of one FakeRunPodV2."""

    def __init__(self, fake: FakeRunPodV2) -> None:
        self.fake = fake
        self.clusters: dict[str, dict[str, Any]] = {}
        self.spending_limit = 100.0

    # -- queries the pod side asks -----------------------------------------------------------------------------

    @staticmethod
    def member_of(pod: dict[str, Any]) -> str | None:
        """The cluster a pod belongs to, or None."""
        cluster = pod.get("cluster")
        return str(cluster["id"]) if cluster else None

    def refuse_member(self, pod: dict[str, Any]) -> None:
        """The pod endpoints do not change or delete a cluster's members."""
        from .runpod_v2 import Problem

        cluster_id = self.member_of(pod)
        if cluster_id is not None:
            raise Problem(409, MEMBER_REFUSED.format(pod_id=pod["id"], cluster_id=cluster_id))

    def live(self) -> list[dict[str, Any]]:
        """Clusters not deleted."""
        return [c for c in self.clusters.values() if not c["_deleted"]]

    # -- routes ----------------------------------------------------------------------------------------------------

    async def dispatch(self, op_id: str, cluster_id: str, body: Any) -> Reply:
        from .runpod_v2 import Reply

        if op_id == "listClusters":
            return Reply(200, {"clusters": [self.view(c) for c in self.live()]})
        if op_id == "createCluster":
            return Reply(201, self.create(body))
        cluster = self.get(cluster_id)
        if op_id == "getCluster":
            return Reply(200, self.view(cluster))
        if op_id == "updateCluster":
            cluster["name"] = body["name"]
            return Reply(200, self.view(cluster))
        if op_id == "deleteCluster":
            self.delete(cluster)
            return Reply(204)
        return Reply(200, {"pods": [self.fake._view(p) for p in self.members(cluster)]})

    def get(self, cluster_id: str) -> dict[str, Any]:
        from .runpod_v2 import Problem

        cluster = self.clusters.get(cluster_id)
        if cluster is None or cluster["_deleted"]:
            raise Problem(404, f"cluster {cluster_id} not found")
        return cluster

    def members(self, cluster: dict[str, Any]) -> list[dict[str, Any]]:
        """The cluster's member pods that still exist (listed by rank)."""
        pods = [self.fake.pods[p] for p in cluster["_pods"] if p in self.fake.pods]
        return [p for p in pods if self.fake._visible(p)]

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        from .runpod_v2 import NO_CAPACITY, Problem

        fake = self.fake
        if body["type"] not in ("TRAINING", "APPLICATION"):
            raise Problem(400, f"cluster type {body['type']} is not supported by this fake")
        if fake.no_balance:
            raise Problem(402, "insufficient balance: add funds to deploy this cluster")
        compute = body["compute"]
        gpu = next((g for g in fake.gpus if g["id"] == compute["gpuTypeId"]), None)
        if gpu is None:
            raise Problem(400, f"unknown GPU type {compute['gpuTypeId']!r}")
        if gpu["id"] in fake.forbidden_gpus:
            raise Problem(403, f"your account cannot access the SECURE pool for {gpu['id']}")
        per_pod, count = int(compute["gpuCountPerPod"]), int(compute["podCount"])
        ceiling = gpu["maxCount"]["secure"]
        if not gpu["secure"] or per_pod > ceiling:
            raise Problem(400, f"compute.gpuCountPerPod {per_pod} exceeds the SECURE maximum of {ceiling} for "
                               f"{gpu['id']}")
        rate = gpu["price"]["secure"]
        cost = rate * per_pod * count
        if cost > self.spending_limit:
            raise Problem(400, CLUSTER_LIMIT.format(cost=cost, limit=self.spending_limit))
        mounts = body.get("mounts") or {}
        if "persistent" in mounts and "network" in mounts:
            raise Problem(400, "mounts.persistent and mounts.network are mutually exclusive")
        candidates = fake._data_centers_for(body, "SECURE")  # as on pod create: every member where the volume is
        placed = next((dc for dc in candidates if fake._has_capacity(gpu["id"], "SECURE", dc["id"])), None)
        if placed is None:
            raise Problem(400, NO_CAPACITY)
        cluster_id = "cl" + secrets.token_hex(6)
        now = time.time()
        port = _free_port() if fake.execute else 29500
        cluster: dict[str, Any] = {
            "id": cluster_id, "name": body["name"], "type": body["type"],
            "compute": {"gpuTypeId": gpu["id"], "gpuCountPerPod": per_pod, "podCount": count},
            "dataCenterId": placed["id"], "createdAt": _rfc3339(now),
            "network": {"cidr": OVERLAY_CIDR, "vxlanId": secrets.randbelow(4000) + 1, "vxlanPort": 4789},
            "_pods": [], "_deleted": False, "_port": port,
        }
        self.clusters[cluster_id] = cluster
        ips = [f"10.65.0.{rank + 2}" for rank in range(count)]
        for rank in range(count):
            addr = "127.0.0.1" if fake.execute else ips[0]
            node_addr = "127.0.0.1" if fake.execute else ips[rank]
            env = {"PRIMARY_ADDR": addr, "MASTER_ADDR": addr, "PRIMARY_PORT": str(port), "MASTER_PORT": str(port),
                   "NODE_ADDR": node_addr, "NODE_RANK": str(rank), "NUM_NODES": str(count),
                   "NUM_TRAINERS": str(per_pod), "HOST_NODE_ADDR": f"{addr}:{port}",
                   "WORLD_SIZE": str(count * per_pod)}
            pod = fake._new_pod(
                name=f"{body['name']}-{rank}", image=body.get("image", ""), args=body.get("args", ""),
                disk=body.get("disk", 20), mounts=dict(body.get("mounts") or {}), ports=list(body.get("ports") or []),
                env=dict(body.get("env") or {}), registry=None, compute={"gpu": {"id": gpu["id"], "count": per_pod}},
                cloud="SECURE", dc=placed["id"], cuda="12.8", rate=rate, count=per_pod, global_networking=False)
            pod["cluster"] = {"id": cluster_id, "rank": rank, "ip": ips[rank]}
            pod["_cluster_env"] = env
            cluster["_pods"].append(pod["id"])
        return self.view(cluster)

    def delete(self, cluster: dict[str, Any]) -> None:
        for pod_id in cluster["_pods"]:
            pod = self.fake.pods.get(pod_id)
            if pod is not None and pod["status"] != "TERMINATED":
                self.fake._terminate(pod)
        cluster["_deleted"] = True

    def lose_member(self, cluster_id: str, rank: int) -> str:
        """A member vanishes mid-run (a host failure): its pod is TERMINATED, the cluster stays. Its pod id."""
        pod = self.fake.pods[self.clusters[cluster_id]["_pods"][rank]]
        self.fake._terminate(pod)
        return str(pod["id"])

    def view(self, cluster: dict[str, Any]) -> dict[str, Any]:
        members = self.members(cluster)
        by_status: dict[str, int] = {}
        for pod in members:
            self.fake._sync(pod)
            by_status[pod["status"]] = by_status.get(pod["status"], 0) + 1
        out = {k: v for k, v in cluster.items() if not k.startswith("_")}
        out["pods"] = {"total": len(members), "byStatus": by_status}
        primary = next((p for p in members if p["cluster"]["rank"] == 0), None)
        if primary is not None:
            out["primary"] = {"podId": primary["id"], "status": primary["status"]}
        return out


def _rfc3339(t: float) -> str:
    from .runpod_v2 import rfc3339

    return rfc3339(t)
