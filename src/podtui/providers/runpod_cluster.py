"""RunPod Instant Clusters (REST v2 `/v2/clusters*`): a run of more than one pod is one cluster of type TRAINING.

podtui knows a cluster by the id `cluster:<RunPod's cluster id>` wherever it keeps a pod id (the run, the pods
table), so every part that handles "the run's pod" handles the whole cluster: its state is its members', its price
their `cost` summed, and ending it is `DELETE /v2/clusters/{id}`, confirmed once no member is left.

- Create: `POST /v2/clusters` {name, type TRAINING, compute {gpuTypeId, gpuCountPerPod, podCount}, image, args,
  env, ports, disk}; Secure Cloud only (a cluster has no `cloud`), and no private registry (the request has no
  `registry` field). The provider's failover loop tries the GPU types by RunPod's error table, and a lost answer
  is looked for by the cluster's name in `GET /v2/clusters` before anything is created again.
- Polling: members come with the other pods in the one `GET /v2/pods?includeClusterPods=true` of a supervisor
  pass (`cluster {id, rank}` on each); a cluster with no member listed is asked for by id (404 twice, past a
  grace after its create: gone).
- A member missing from the listing that was seen before, or EXITED/ERROR/TERMINATED, is a node gone: the
  supervisor ends the run and the cluster (training across nodes cannot go on without it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .base import NodeState, PodPhase, PodRequest, PodState, ProviderError
from .runpod_api import ApiProblem, RunPodApi, Unanswered, end_until_gone

log = logging.getLogger(__name__)

CLUSTER_PREFIX = "cluster:"
"""How podtui writes a cluster's id where it keeps a pod id."""
_PHASES: dict[str, PodPhase] = {"PROVISIONING": "starting", "STARTING": "starting", "RUNNING": "running",
                                "EXITED": "exited", "ERROR": "exited", "TERMINATED": "gone"}


def is_cluster(pod_id: str) -> bool:
    """Whether podtui's pod id names a cluster."""
    return pod_id.startswith(CLUSTER_PREFIX)


def cluster_id_of(pod_id: str) -> str:
    """RunPod's id of the cluster that podtui's pod id names."""
    return pod_id[len(CLUSTER_PREFIX):]


def cluster_body(request: PodRequest, gpu_type: str) -> dict[str, Any]:
    """A `CreateClusterRequest` for one GPU type: every member gets the same container config."""
    ports = list(request.ports)
    if request.ssh and "22/tcp" not in ports:
        ports.append("22/tcp")
    body: dict[str, Any] = {
        "name": request.name, "type": "TRAINING",
        "compute": {"gpuTypeId": gpu_type, "gpuCountPerPod": request.gpu_count, "podCount": request.nodes},
        "image": request.image, "args": request.start_command, "env": dict(request.env),
        "disk": request.container_disk_gb, "ports": ports,
    }
    if request.ssh:
        body["startSsh"] = True
    if request.network_volume_id:  # the document: `mounts` mounts the network volume on every member; a cluster
        # is placed in one data center, which must be the volume's
        body["mounts"] = {"network": [{"volumeId": request.network_volume_id, "path": request.volume_path}]}
        body["dataCenterIds"] = list(request.data_center_ids)
    return body


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _mean(values: list[float | None]) -> float | None:
    numbers = [v for v in values if v is not None]
    return round(sum(numbers) / len(numbers), 1) if numbers else None


def node_of(member: dict[str, Any], index: int) -> NodeState:
    """A member pod (a v2 `Pod` with `cluster`) as a node."""
    runtime = member.get("runtime") or {}
    gpus = [g for g in (runtime.get("gpus") or []) if isinstance(g, dict)] if isinstance(runtime, dict) else []
    rank = (member.get("cluster") or {}).get("rank")
    cost = _number(member.get("cost"))
    return NodeState(rank=rank if isinstance(rank, int) else index, pod_id=str(member.get("id")),
                     phase=_PHASES.get(str(member.get("status")), "starting"),
                     price_per_hour=cost, gpu_util=_mean([_number(g.get("util")) for g in gpus]),
                     gpu_mem=_mean([_number(g.get("memoryUtil")) for g in gpus]), detail=str(member.get("status")))


def group_state(pod_id: str, name: str, nodes: list[NodeState]) -> PodState:
    """A cluster's state from its nodes: running while any member runs (the supervisor judges a node gone)."""
    phases = {n.phase for n in nodes}
    phase: PodPhase = "running" if "running" in phases else "starting" if "starting" in phases else \
        "exited" if "exited" in phases else "gone"
    live = [n for n in nodes if n.phase != "gone"]
    price = sum(n.price_per_hour or 0.0 for n in live)
    detail = "; ".join(f"node {n.rank}: {n.detail or n.phase}" for n in nodes if n.phase in ("gone", "exited"))
    return PodState(pod_id=pod_id, phase=phase, name=name, price_per_hour=round(price, 4) if price else None,
                    detail=detail, gpu_util=_mean([n.gpu_util for n in live]),
                    gpu_mem=_mean([n.gpu_mem for n in live]), nodes=sorted(nodes, key=lambda n: n.rank))


class RunPodClusters:
    """The cluster side of the RunPod provider (it owns the API client and the failover loop)."""

    def __init__(self, api: RunPodApi, gone_grace_s: float, terminate_confirm_s: float, backoff_s: float) -> None:
        self.api = api
        self.gone_grace_s = gone_grace_s
        self.terminate_confirm_s = terminate_confirm_s
        self.backoff_s = backoff_s
        self._created: dict[str, float] = {}
        self._misses: dict[str, int] = {}
        self._seen: dict[str, dict[int, str]] = {}
        """Per cluster, its members by rank as last listed: one missing later is a node gone."""
        self._names: dict[str, str] = {}

    async def create(self, request: PodRequest, gpu_type: str) -> dict[str, Any]:
        """POST /v2/clusters for one GPU type: the Cluster, with podtui's id (`cluster:<id>`) as `id`."""
        created = await self.api.json("POST", "/v2/clusters", json=cluster_body(request, gpu_type))
        if not isinstance(created, dict) or not created.get("id"):
            raise Unanswered(f"RunPod answered the cluster create without a cluster id: {str(created)[:200]}")
        return self.adopt(created)

    def adopt(self, cluster: dict[str, Any]) -> dict[str, Any]:
        """A cluster podtui now follows (created, or found by name after a lost answer)."""
        pod_id = CLUSTER_PREFIX + str(cluster["id"])
        self._created[pod_id] = time.monotonic()
        self._names[pod_id] = str(cluster.get("name") or "")
        return {**cluster, "id": pod_id}

    async def list_raw(self) -> list[dict[str, Any]]:
        """GET /v2/clusters."""
        data = await self.api.json("GET", "/v2/clusters")
        clusters = (data or {}).get("clusters") if isinstance(data, dict) else None
        if not isinstance(clusters, list):
            raise Unanswered(f"RunPod's cluster list came without `clusters`: {str(data)[:200]}")
        return [c for c in clusters if isinstance(c, dict) and c.get("id")]

    async def find_by_name(self, name: str) -> dict[str, Any] | None:
        """The cluster with this name (podtui's id as `id`), or None."""
        try:
            found = next((c for c in await self.list_raw() if c.get("name") == name), None)
        except ProviderError as exc:
            log.warning("looking for cluster %s: %s", name, exc)
            return None
        return self.adopt(found) if found is not None else None

    async def list_states(self) -> list[PodState]:
        """Every cluster of the account, as one pod each (for strays and restarts; members are not read)."""
        states = []
        for cluster in await self.list_raw():
            summary = cluster.get("pods") or {}
            total = summary.get("total") if isinstance(summary, dict) else None
            phase: PodPhase = "running" if total else "exited"
            states.append(PodState(pod_id=CLUSTER_PREFIX + str(cluster["id"]), phase=phase,
                                   name=str(cluster.get("name") or ""), detail=f"cluster of {total or 0} pods"))
        return states

    async def list_members(self) -> list[dict[str, Any]]:
        """GET /v2/pods?includeClusterPods=true: the account's pods with every cluster's members."""
        data = await self.api.json("GET", "/v2/pods", params={"includeClusterPods": "true"})
        pods = (data or {}).get("pods") if isinstance(data, dict) else None
        if not isinstance(pods, list):
            raise Unanswered(f"RunPod's pod list came without `pods`: {str(data)[:200]}")
        return [p for p in pods if isinstance(p, dict)]

    async def _get(self, pod_id: str) -> dict[str, Any] | None:
        """GET /v2/clusters/{id}; None on a 404."""
        try:
            cluster = await self.api.json("GET", f"/v2/clusters/{cluster_id_of(pod_id)}")
        except ApiProblem as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(cluster, dict) or not cluster.get("id"):
            raise Unanswered(f"RunPod answered cluster {pod_id} without a cluster: {str(cluster)[:100]}")
        return cluster

    async def members(self, pod_id: str) -> list[dict[str, Any]] | None:
        """GET /v2/clusters/{id}/pods: every member as a Pod; None on a 404 (no such cluster)."""
        try:
            data = await self.api.json("GET", f"/v2/clusters/{cluster_id_of(pod_id)}/pods")
        except ApiProblem as exc:
            if exc.status == 404:
                return None
            raise
        pods = (data or {}).get("pods") if isinstance(data, dict) else None
        if not isinstance(pods, list):
            raise Unanswered(f"RunPod's member list of {pod_id} came without `pods`: {str(data)[:200]}")
        return [p for p in pods if isinstance(p, dict)]

    def state_from(self, pod_id: str, members: list[dict[str, Any]]) -> PodState:
        """A cluster's state from its listed members; one seen before and missing now is a node gone."""
        nodes = [node_of(m, i) for i, m in enumerate(members)]
        seen = self._seen.setdefault(pod_id, {})
        listed = {n.rank for n in nodes}
        for rank, member_id in sorted(seen.items()):
            if rank not in listed:
                nodes.append(NodeState(rank=rank, pod_id=member_id, phase="gone", detail="no longer listed"))
        for node in nodes:
            if node.phase != "gone":
                seen[node.rank] = node.pod_id
        return group_state(pod_id, self._names.get(pod_id, ""), nodes)

    async def poll(self, pod_ids: list[str], listed: list[dict[str, Any]]) -> dict[str, PodState]:
        """The clusters' states from the members of one `GET /v2/pods?includeClusterPods=true`; a cluster with
        none listed is asked for by id."""
        by_cluster: dict[str, list[dict[str, Any]]] = {}
        for pod in listed:
            cluster = pod.get("cluster")
            if isinstance(cluster, dict) and cluster.get("id"):
                by_cluster.setdefault(CLUSTER_PREFIX + str(cluster["id"]), []).append(pod)
        states: dict[str, PodState] = {}
        for pod_id in pod_ids:
            members = by_cluster.get(pod_id)
            if members:
                self._misses.pop(pod_id, None)
                states[pod_id] = self.state_from(pod_id, members)
                continue
            try:
                cluster = await self._get(pod_id)
            except ProviderError as exc:
                log.warning("cannot poll cluster %s: %s", pod_id, exc)
                continue
            young = time.monotonic() - self._created.get(pod_id, 0.0) < self.gone_grace_s
            if cluster is None:
                misses = self._misses[pod_id] = self._misses.get(pod_id, 0) + 1
                if misses >= 2 and not young:
                    self._misses.pop(pod_id, None)
                    states[pod_id] = PodState(pod_id=pod_id, phase="gone", detail="cluster not found (404)",
                                              nodes=[NodeState(rank, member, "gone", detail="cluster deleted")
                                                     for rank, member in sorted(self._seen.get(pod_id, {}).items())])
                continue
            self._misses.pop(pod_id, None)
            if young:  # the listing lags a create: members come
                states[pod_id] = PodState(pod_id=pod_id, phase="starting", name=str(cluster.get("name") or ""))
            else:  # it exists and has no member left: it only waits to be deleted
                states[pod_id] = self.state_from(pod_id, [])
                if states[pod_id].phase == "gone":
                    states[pod_id].phase = "exited"
                    states[pod_id].detail = states[pod_id].detail or "the cluster has no member pods"
        return states

    async def get(self, pod_id: str) -> PodState:
        """A cluster's state from its own routes (`gone` on a 404)."""
        members = await self.members(pod_id)
        if members is None:
            return PodState(pod_id=pod_id, phase="gone", detail="cluster not found (404)")
        return self.state_from(pod_id, members)

    async def primary(self, pod_id: str) -> str | None:
        """The pod id of the cluster's node 0, for its logs."""
        cluster = await self._get(pod_id)
        primary = (cluster or {}).get("primary") or {}
        return str(primary["podId"]) if isinstance(primary, dict) and primary.get("podId") else None

    async def terminate(self, pod_id: str) -> None:
        """DELETE /v2/clusters/{id}, retried, until no member is left (the cluster's pods answer 404, or list
        none still alive) within terminate_confirm_s."""
        cluster_id = cluster_id_of(pod_id)

        async def ask(deadline: float) -> None:
            try:
                await self.api.send("DELETE", f"/v2/clusters/{cluster_id}", deadline=deadline)
            except ApiProblem as exc:
                if exc.status != 404:
                    raise

        async def gone(deadline: float) -> bool:
            members = await self.members(pod_id)
            alive = [m for m in members or [] if _PHASES.get(str(m.get("status"))) != "gone"]
            if not alive:  # and no member still listed among the account's pods (RunPod ends them after)
                listed = await self.list_members()
                alive = [m for m in listed if str((m.get("cluster") or {}).get("id")) == cluster_id
                         and _PHASES.get(str(m.get("status"))) != "gone"]
            if alive:
                return False
            for table in (self._created, self._seen, self._misses, self._names):
                table.pop(pod_id, None)
            return True

        await end_until_gone(f"cluster {cluster_id} and its pods", ask, gone, self.terminate_confirm_s,
                             self.backoff_s)
