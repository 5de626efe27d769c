"""The RunPod provider, on RunPod's REST API v2 (runpod_api.py); spot pods alone on GraphQL (runpod_spot.py).

A create follows RunPod's own table for a failed create (the createPod operation's description):
400 -> next candidate (no capacity, or a rule every candidate will break: then the last detail is the reason);
402 -> stop, the balance is too low; 403 -> skip this GPU type; 422 -> fail with RunPod's `errors`;
429 -> wait `Retry-After` (runpod_api.py); 5xx, timeouts, resets and unreadable answers -> the create may have
happened: look for the pod by its name several times over about 15 s (listing lags a create), and only then
create again on the same candidate.

Polling is one `GET /v2/pods` per supervisor pass for all live pods. A pod missing from that list is asked for
by id; it counts as gone on a 404 only once it has been missed twice in a row and is past a grace period after
its create (listing lags), or at once when RunPod says TERMINATED.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ..models import GpuOffer, LaunchSpec
from .base import (
    POD_NAME_PREFIX,
    AttemptCallback,
    LaunchAttempt,
    NoCapacity,
    Pod,
    PodPhase,
    PodRequest,
    PodState,
    ProviderError,
)
from .runpod_api import DEFAULT_API_URL, ApiProblem, KeyRejected, RunPodApi, Unanswered, end_until_gone
from .runpod_cluster import RunPodClusters, is_cluster
from .runpod_spot import SpotRental
from .runpod_volumes import RunPodVolumes

log = logging.getLogger(__name__)

OFFERS_TTL_S = 60.0
STOCK_RANK = {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3}
CATALOG_PARAMS = {"include": "AVAILABILITY", "product": "POD"}
NO_CAPACITY = "no longer any instances available"
PROXY_URL = "https://{pod_id}-{port}.proxy.runpod.net"
NO_SSH_KEYS = ("your RunPod account has no SSH public key registered, so the pod would start without SSH (RunPod's "
               "startSsh provisions the account's keys only): add one under Settings > SSH Public Keys on runpod.io")
LOGS_TTL_S = 10.0
"""A pod's logs are read from RunPod at most this often (each read is two requests of the key's quota)."""
GONE_GRACE_S = 60.0
"""A pod younger than this (since podtui created it) is not called gone for missing from RunPod's answers."""

_PHASES: dict[str, PodPhase] = {"PROVISIONING": "starting", "STARTING": "starting", "RUNNING": "running",
                                "EXITED": "exited", "ERROR": "exited", "TERMINATED": "gone"}


def phase_of(pod: dict[str, Any] | None) -> PodPhase:
    """A v2 pod's `status` as a pod phase (`gone` for none at all)."""
    if not pod:
        return "gone"
    return _PHASES.get(str(pod.get("status")), "starting")


def _mean(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return round(sum(numbers) / len(numbers), 1) if numbers else None


def state_of(pod: dict[str, Any]) -> PodState:
    """What a v2 `Pod` object says: phase, billed rate, GPU use."""
    runtime = pod.get("runtime") or {}
    gpus = runtime.get("gpus") or [] if isinstance(runtime, dict) else []
    cost = pod.get("cost")
    return PodState(
        pod_id=str(pod.get("id")), phase=phase_of(pod), name=str(pod.get("name") or ""),
        price_per_hour=float(cost) if isinstance(cost, int | float) and cost > 0 else None,
        detail=str(pod.get("status") or ""),
        gpu_util=_mean([g.get("util") for g in gpus if isinstance(g, dict)]),
        gpu_mem=_mean([g.get("memoryUtil") for g in gpus if isinstance(g, dict)]),
    )


def create_body(request: PodRequest, gpu_type: str, cloud: str) -> dict[str, Any]:
    """A `CreatePodRequest` for one candidate."""
    gpu: dict[str, Any] = {"id": gpu_type, "count": request.gpu_count}
    if request.min_cuda_version:
        gpu["minCudaVersion"] = request.min_cuda_version
    ports = list(request.ports)
    if request.ssh and "22/tcp" not in ports:
        ports.append("22/tcp")
    body: dict[str, Any] = {
        "name": request.name, "image": request.image, "gpu": gpu, "cloud": cloud, "env": dict(request.env),
        "disk": request.container_disk_gb, "args": request.start_command, "ports": ports,
    }
    if request.ssh:
        body["startSsh"] = True
    if request.network_volume_id:  # attach only at create; the pod must be in the volume's data center
        body["mounts"] = {"network": [{"volumeId": request.network_volume_id, "path": request.volume_path}]}
    if request.data_center_ids:
        body["dataCenterIds"] = list(request.data_center_ids)
    return body


def candidates(request: PodRequest) -> list[tuple[str, str]]:
    """(GPU type, cloud) in the order to try; `ALL` tries Secure then Community for each GPU type."""
    clouds = ["SECURE", "COMMUNITY"] if request.cloud_type == "ALL" else [request.cloud_type]
    if request.nodes > 1:  # a cluster has no cloud: Secure Cloud
        clouds = ["SECURE"]
    return [(gpu, cloud) for gpu in request.gpu_types for cloud in clouds]


class RunPodProvider:
    """Pods on RunPod."""

    name = "runpod"
    self_terminate_command = ""
    """None: a RunPod pod ends itself through REST v2 (DELETE /v2/pods/$RUNPOD_POD_ID with its own key). runpodctl
    speaks GraphQL (retired early 2027) or REST v1 (retired), and no command's success proves a pod ended."""

    def __init__(self, api_key: str, api_url: str = DEFAULT_API_URL, retries: int = 3, backoff_s: float = 1.0,
                 terminate_confirm_s: float = 60.0, find_window_s: float = 15.0, timeout_s: float = 30.0,
                 gone_grace_s: float = GONE_GRACE_S, proxy_url: str = PROXY_URL) -> None:
        self.api = RunPodApi(api_key, api_url, timeout_s)
        self.proxy_url = proxy_url
        self.spot = SpotRental(api_key)
        self.retries = retries
        self.backoff_s = backoff_s
        self.terminate_confirm_s = terminate_confirm_s
        self.find_window_s = find_window_s
        self.gone_grace_s = gone_grace_s
        self._offers: tuple[float, list[GpuOffer]] | None = None
        self._offers_by: dict[tuple[str, int], tuple[float, list[GpuOffer]]] = {}
        self._max_counts: dict[str, dict[str, int]] = {}
        self._logs_cache: dict[tuple[str, int], tuple[float, list[dict[str, str]]]] = {}
        self._created: dict[str, float] = {}
        self._misses: dict[str, int] = {}
        self._spot_ids: set[str] = set()
        """Spot pods (GraphQL-created): v2 may not list, read or delete them (undocumented), so they are looked up
        and ended through GraphQL before they count as gone."""

        self.volumes = RunPodVolumes(self.api)
        """Network volumes (runpod_volumes.py)."""
        self.clusters = RunPodClusters(self.api, gone_grace_s, terminate_confirm_s, backoff_s)
        """Runs of more than one pod: RunPod Instant Clusters (runpod_cluster.py)."""

    # -- offers ----------------------------------------------------------------------------------

    async def list_offers(self, refresh: bool = False, cloud: str = "SECURE", count: int = 1) -> list[GpuOffer]:
        """GPU types with per-GPU prices per cloud and the current pod stock for this cloud (`ALL`: the better of
        Secure and Community) and GPU count; cached for a minute per (cloud, count)."""
        key = (cloud, count)
        cached = self._offers_by.get(key)
        if cached and not refresh and time.monotonic() - cached[0] < OFFERS_TTL_S:
            return cached[1]
        reads = []
        for one in (["SECURE", "COMMUNITY"] if cloud == "ALL" else [cloud]):
            data = await self.api.json("GET", "/v2/catalog/gpus",
                                       params={**CATALOG_PARAMS, "cloud": one, "count": count})
            reads.append([g for g in (data or {}).get("gpus") or [] if isinstance(g, dict)])
        stock: dict[str, str] = {}
        for gpus in reads:
            for gpu in gpus:
                level = str(gpu.get("availability") or "").upper()
                if level and STOCK_RANK.get(level, 0) >= STOCK_RANK.get(stock.get(str(gpu.get("id")), ""), -1):
                    stock[str(gpu.get("id"))] = level
        offers = []
        for gpu in reads[0]:
            if gpu.get("id") in (None, "unknown"):
                continue
            price = gpu.get("price") or {}
            most = gpu.get("maxCount") or {}
            known = stock.get(str(gpu["id"]))
            offers.append(GpuOffer(
                id=gpu["id"], name=gpu.get("name") or gpu["id"], provider=self.name, vram_gb=gpu.get("memory"),
                secure_price=price.get("secure") if gpu.get("secure", True) else None,
                community_price=price.get("community") if gpu.get("community", True) else None,
                spot_price=None, stock=known.title() if known else None,
                max_gpu_count=max([int(v) for v in most.values() if isinstance(v, int)], default=None)))
        offers.sort(key=lambda o: (o.secure_price or o.community_price or 1e9, o.id))
        self._max_counts = {str(g["id"]): {k: int(v) for k, v in (g.get("maxCount") or {}).items()
                                           if isinstance(v, int)}
                            for g in reads[0] if g.get("id")}
        self._offers = (time.monotonic(), offers)
        self._offers_by[key] = self._offers
        return offers

    async def catalog_price(self, gpu_type: str, cloud: str, count: int) -> float | None:
        """The list price of `count` GPUs of this type in this cloud (per hour), from the catalog."""
        try:
            offers = {o.id: o for o in await self.list_offers()}
        except ProviderError as exc:
            log.warning("cannot read RunPod's catalog for a price: %s", exc)
            return None
        offer = offers.get(gpu_type)
        if offer is None:
            return None
        price = offer.community_price if cloud == "COMMUNITY" else offer.secure_price
        price = price or offer.secure_price or offer.community_price
        return round(price * count, 4) if price else None

    def max_count(self, gpu: str, cloud: str, fallback: int | None) -> int:
        """The most GPUs of a type on one pod in a cloud (`ALL`: the larger of the two), from the catalog."""
        per_cloud = self._max_counts.get(gpu) or {}
        clouds = ("secure", "community") if cloud == "ALL" else (cloud.lower(),)
        known = [per_cloud[c] for c in clouds if c in per_cloud]
        return max(known) if known else (fallback or 10**6)

    async def check_spec(self, spec: LaunchSpec) -> list[str]:
        """What RunPod would refuse in this launch, each naming the field; checked against the catalog before
        anything is created (nothing when the catalog cannot be read now: the create's answer decides)."""
        try:
            offers = {o.id: o for o in await self.list_offers()}
        except ProviderError as exc:
            log.info("launch not checked against RunPod's catalog: %s", exc)
            return []
        problems = []
        for gpu in spec.gpu_types:
            offer = offers.get(gpu)
            if offer is None:
                problems.append(f"gpu_types: RunPod has no GPU type {gpu!r} (`podtui gpus --provider runpod` "
                                "lists them)")
            elif spec.gpu_count > self.max_count(gpu, cloud := "SECURE" if spec.nodes > 1 else spec.cloud_type,
                                                 offer.max_gpu_count):
                most = self.max_count(gpu, cloud, offer.max_gpu_count)
                problems.append(f"gpu_count: RunPod puts at most {most} x {gpu} on one pod "
                                f"({spec.cloud_type.lower()} cloud)")
            elif spec.cloud_type == "SECURE" and offer.secure_price is None and not spec.spot:
                problems.append(f"cloud_type: {gpu} is not offered in Secure Cloud; choose COMMUNITY or ALL")
            elif spec.cloud_type == "COMMUNITY" and offer.community_price is None and not spec.spot:
                problems.append(f"cloud_type: {gpu} is not offered in Community Cloud; choose SECURE or ALL")
        if spec.ssh:
            try:
                registered = await self.ssh_keys()
            except ProviderError as exc:
                log.info("SSH keys not checked: %s", exc)
            else:
                if not registered:
                    problems.append(f"ssh: {NO_SSH_KEYS}")
        return problems

    async def ssh_keys(self) -> list[str]:
        """The account's registered SSH public keys (`GET /v2/account/ssh-keys`): what `startSsh` provisions."""
        data = await self.api.json("GET", "/v2/account/ssh-keys")
        found = data.get("keys") if isinstance(data, dict) else None
        return [str(k) for k in found] if isinstance(found, list) else []

    # -- pods ------------------------------------------------------------------------------------

    async def create_pod(self, request: PodRequest, on_attempt: AttemptCallback) -> Pod:
        """Create one pod, trying (GPU type, cloud) candidates in order as RunPod's failure table says."""
        last_400: ApiProblem | None = None
        every_400 = every_403 = True
        tried: list[str] = []
        for gpu_type, cloud in candidates(request):
            tried.append(gpu_type if request.cloud_type != "ALL" else f"{gpu_type} ({cloud.lower()})")
            try:
                created = await self._create_candidate(request, gpu_type, cloud, on_attempt)
            except ApiProblem as exc:
                if isinstance(exc, KeyRejected):
                    await on_attempt(LaunchAttempt(gpu_type, False, str(exc)))
                    raise
                message = self._attempt_message(exc, cloud)
                await on_attempt(LaunchAttempt(gpu_type, False, message))
                every_403 = every_403 and exc.status == 403
                if exc.status == 400:
                    last_400 = exc
                    continue
                every_400 = False
                if exc.status == 403:
                    continue
                if exc.status == 402:
                    raise ProviderError("insufficient balance on RunPod (402): add credit under Billing on "
                                        "runpod.io; no GPU type will start until then") from None
                if exc.status == 422:
                    raise ProviderError(f"RunPod refused the pod's settings (422): "
                                        f"{'; '.join(exc.errors) or exc.detail}") from None
                raise ProviderError(message) from None
            pod_id = str(created["id"])
            self._created[pod_id] = time.monotonic()
            if request.spot:
                self._spot_ids.add(pod_id)
            price = await self._price(created, gpu_type, cloud, request.gpu_count) * request.nodes
            what = f"pod {pod_id}" if request.nodes <= 1 else f"{pod_id} ({request.nodes} pods)"
            await on_attempt(LaunchAttempt(gpu_type, True, f"{what} created in {cloud.lower()} cloud"
                                           f"{' (spot)' if request.spot else ''} at ${price:.3f}/h"))
            return Pod(pod_id=pod_id, gpu_type=gpu_type, price_per_hour=price)
        if every_403 and tried:
            raise ProviderError(
                f"RunPod refused this key for creating pods (403 on every GPU type tried: {', '.join(tried)}): a "
                "read-only or restricted key? Create a key with read/write access under Settings > API Keys on "
                "runpod.io and set RUNPOD_API_KEY to it; if the key has it, this account may not use these GPU "
                "types or this cloud")
        if last_400 is not None and every_400 and NO_CAPACITY not in last_400.detail.lower():
            raise ProviderError(f"RunPod refused the pod on every GPU type tried (400): {last_400.detail}")
        raise NoCapacity(f"no capacity on RunPod for {', '.join(tried)} ({request.cloud_type.lower()} cloud); "
                         "add more GPU types as fallbacks or try another cloud type")

    @staticmethod
    def _attempt_message(exc: ApiProblem, cloud: str) -> str:
        where = f" ({cloud.lower()} cloud)"
        if exc.status == 400:
            return f"RunPod: {exc.detail or exc.title}{where}"
        if exc.status == 403:
            return f"RunPod: this account cannot use this GPU type{where} (403: {exc.detail}); skipping it"
        if exc.status == 402:
            return f"RunPod: insufficient balance (402: {exc.detail})"
        return str(exc)

    async def _create_candidate(self, request: PodRequest, gpu_type: str, cloud: str,
                                on_attempt: AttemptCallback) -> dict[str, Any]:
        """One candidate; a lost answer is looked for by name before anything is created again."""
        for attempt in range(self.retries):
            try:
                if request.spot:
                    return await self.spot.rent(request, gpu_type, cloud)
                if request.nodes > 1:
                    return await self.clusters.create(request, gpu_type)
                created = await self.api.json("POST", "/v2/pods", json=create_body(request, gpu_type, cloud))
                if not isinstance(created, dict) or not created.get("id"):
                    raise Unanswered(f"RunPod answered the create without a pod id: {str(created)[:200]}")
                return created
            except Unanswered as exc:
                found = await (self._find_cluster_by_name(request.name) if request.nodes > 1
                               else self._find_by_name(request.name))
                if found is not None:
                    await on_attempt(LaunchAttempt(gpu_type, True, f"{exc}; the create went through: found pod "
                                                   f"{found['id']} by its name"))
                    return found
                if attempt + 1 >= self.retries:
                    raise ProviderError(f"{exc}; tried {self.retries} times and found no pod by its name") from None
                await on_attempt(LaunchAttempt(gpu_type, False, f"{exc}; no pod by that name; trying again"))
                await asyncio.sleep(self.backoff_s * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def _price(self, created: dict[str, Any], gpu_type: str, cloud: str, count: int) -> float:
        """The billed rate (`cost`, or spot's costPerHr); else the catalog's list price: never 0."""
        for key in ("cost", "costPerHr"):
            value = created.get(key)
            if isinstance(value, int | float) and value > 0:
                return float(value)
        price = await self.catalog_price(gpu_type, cloud, count)
        if price:
            return price
        log.warning("RunPod reported no price for pod %s and the catalog has none for %s; counting the "
                    "catalog's highest price", created.get("id"), gpu_type)
        # A budget must never be silently off: the highest list price in the catalog is an upper bound.
        offers = self._offers[1] if self._offers else []
        highest = max((o.secure_price or o.community_price or 0.0 for o in offers), default=0.0)
        return round(highest * count, 4) or 10.0 * count

    async def find_pod_by_name(self, name: str) -> PodState | None:
        """A live pod (or cluster) with this name, looked for over find_window_s (RunPod's listing lags a
        create)."""
        found = await self._find_by_name(name)
        if found is None:
            cluster = await self._find_cluster_by_name(name)
            return None if cluster is None else PodState(pod_id=str(cluster["id"]), phase="starting", name=name)
        return state_of(found)

    async def _find_cluster_by_name(self, name: str) -> dict[str, Any] | None:
        """A cluster by name, a few times over find_window_s (as pods: the listing may lag a create)."""
        return await self._look_a_while(lambda: self.clusters.find_by_name(name))

    async def _find_by_name(self, name: str) -> dict[str, Any] | None:
        """Look for a pod by name a few times over find_window_s (RunPod's listing lags a create)."""

        async def look() -> dict[str, Any] | None:
            try:
                pods = await self._list_raw()
            except ProviderError as exc:
                log.warning("looking for pod %s: %s", name, exc)
                return None
            return next((p for p in pods if p.get("name") == name and phase_of(p) != "gone"), None)

        return await self._look_a_while(look)

    async def _look_a_while(self, look: Callable[[], Awaitable[dict[str, Any] | None]]) -> dict[str, Any] | None:
        """look() until it finds something or find_window_s has passed."""
        deadline = time.monotonic() + self.find_window_s
        delay = max(0.2, self.find_window_s / 8)
        while True:
            found = await look()
            if found is not None or time.monotonic() + delay > deadline:
                return found
            await asyncio.sleep(delay)

    async def _list_raw(self) -> list[dict[str, Any]]:
        data = await self.api.json("GET", "/v2/pods")
        pods = (data or {}).get("pods") if isinstance(data, dict) else None
        if not isinstance(pods, list):
            raise Unanswered(f"RunPod's pod list came without `pods`: {str(data)[:200]}")
        return [p for p in pods if isinstance(p, dict)]

    def note_spot(self, pod_id: str) -> None:
        """This pod is a spot pod (after a restart the provider no longer knows which were)."""
        self._spot_ids.add(pod_id)

    async def _get_raw(self, pod_id: str, deadline: float | None = None) -> dict[str, Any] | None:
        """The pod, or None on a 404 (for a spot pod: once GraphQL does not know it either)."""
        try:
            pod = await self.api.json("GET", f"/v2/pods/{pod_id}", deadline=deadline)
        except ApiProblem as exc:
            if exc.status == 404:  # RunPod's own problem object (an edge's HTML 404 is Unanswered)
                return await self._spot_pod(pod_id) if pod_id in self._spot_ids else None
            raise
        if not isinstance(pod, dict) or not pod.get("id"):
            raise Unanswered(f"RunPod answered pod {pod_id} without a pod: {str(pod)[:100]}")
        return pod

    async def _spot_pod(self, pod_id: str) -> dict[str, Any] | None:
        """A spot pod v2 does not know, as GraphQL sees it, in v2's shape; None once GraphQL says it is gone.
        GraphQL not answering raises: such a pod must not count as gone unseen."""
        found = await self.spot.pod(pod_id)
        if found is None:
            self._spot_ids.discard(pod_id)
            return None
        status = {"CREATED": "STARTING", "RESTARTING": "STARTING", "PAUSED": "EXITED", "DEAD": "EXITED"}.get(
            str(found.get("desiredStatus")), str(found.get("desiredStatus")))
        return {"id": pod_id, "status": status, "cost": found.get("costPerHr")}

    async def get_pod(self, pod_id: str) -> PodState:
        """Phase, billed rate and GPU use of a pod (`gone` on a 404 or TERMINATED); of a cluster, its nodes'."""
        if is_cluster(pod_id):
            return await self.clusters.get(pod_id)
        pod = await self._get_raw(pod_id)
        if pod is None:
            return PodState(pod_id=pod_id, phase="gone", detail="not found (404)")
        return state_of(pod)

    async def poll_pods(self, pod_ids: list[str]) -> dict[str, PodState]:
        """One list call for all; a pod missing from it is asked for by id, and called gone only after two
        misses in a row past the grace period after its create."""
        if not pod_ids:
            return {}
        clusters = [p for p in pod_ids if is_cluster(p)]
        pod_ids = [p for p in pod_ids if not is_cluster(p)]
        if clusters:  # the one list call brings the clusters' members too
            everything = await self.clusters.list_members()
            states = await self.clusters.poll(clusters, [p for p in everything if p.get("cluster")])
            listed = {str(p.get("id")): p for p in everything if not p.get("cluster")}
        else:
            states = {}
            listed = {str(p.get("id")): p for p in await self._list_raw()} if pod_ids else {}
        for pod_id in pod_ids:
            if pod_id in listed:
                self._misses.pop(pod_id, None)
                states[pod_id] = state_of(listed[pod_id])
                continue
            misses = self._misses[pod_id] = self._misses.get(pod_id, 0) + 1
            try:
                pod = await self._get_raw(pod_id)
            except ProviderError as exc:
                log.warning("cannot poll pod %s: %s", pod_id, exc)
                continue
            if pod is not None:
                self._misses.pop(pod_id, None)  # two 404s in a row make a pod gone, not two misses ever
                states[pod_id] = state_of(pod)
                continue
            young = time.monotonic() - self._created.get(pod_id, 0.0) < self.gone_grace_s
            if misses >= 2 and not young:
                self._misses.pop(pod_id, None)
                states[pod_id] = PodState(pod_id=pod_id, phase="gone", detail="not found (404)")
        return states

    async def terminate_pod(self, pod_id: str) -> None:
        """DELETE, then confirm by a 404 (retrying the delete meanwhile) within terminate_confirm_s (a cluster:
        DELETE /v2/clusters/{id}, confirmed when no member is left)."""
        if is_cluster(pod_id):
            await self.clusters.terminate(pod_id)
            return

        async def ask(deadline: float) -> None:
            try:
                await self.api.send("DELETE", f"/v2/pods/{pod_id}", deadline=deadline)
            except ApiProblem as exc:
                if exc.status != 404:
                    raise
                if pod_id in self._spot_ids:  # v2 may not delete a GraphQL spot pod: end it where it was made
                    await self.spot.terminate(pod_id)

        async def gone(deadline: float) -> bool:
            pod = await self._get_raw(pod_id, deadline=deadline)
            if pod is None or phase_of(pod) == "gone":
                self._created.pop(pod_id, None)
                return True
            return False

        await end_until_gone(f"pod {pod_id}", ask, gone, self.terminate_confirm_s, self.backoff_s)

    async def stop_pod(self, pod_id: str) -> None:
        """Stop the pod: GPU billing ends; its disk is kept (and billed) until it is terminated. A cluster has no
        stop: it is deleted."""
        if is_cluster(pod_id):
            await self.clusters.terminate(pod_id)
            return
        try:
            await self.api.send("POST", f"/v2/pods/{pod_id}/action", json={"action": "stop"})
        except ApiProblem as exc:
            if exc.status != 409:  # 409: not a state that can stop (already exited): nothing to do
                raise

    def pod_endpoint(self, pod_id: str, port: int) -> str:
        """A pod's HTTP port through RunPod's HTTPS proxy (pull mode)."""
        return self.proxy_url.format(pod_id=pod_id, port=port)

    async def list_pods(self) -> list[PodState]:
        """Pods of this account whose name carries podtui's prefix."""
        pods = [state_of(p) for p in await self._list_raw()]
        pods += await self.clusters.list_states()
        return [p for p in pods if p.name.startswith(POD_NAME_PREFIX)]

    async def pod_logs(self, pod_id: str, tail: int = 50, wait_s: float = 2.0,
                       idle_s: float = 0.3) -> list[dict[str, str]]:
        """The last lines of a pod's container and system logs ({"ts", "source", "line"}), oldest first.

        RunPod streams them as Server-Sent Events and keeps following: the tail is read until the stream has been
        quiet for idle_s (or wait_s has passed), both sources at once."""
        if is_cluster(pod_id):  # node 0's
            try:
                primary = await self.clusters.primary(pod_id)
            except ProviderError as exc:
                return [{"ts": "", "source": "system", "line": f"(cannot read the cluster: {exc})"}]
            if primary is None:
                return []
            pod_id = primary
        cached = self._logs_cache.get((pod_id, tail))
        if cached and time.monotonic() - cached[0] < LOGS_TTL_S:  # two streams count against RunPod's quota
            return cached[1]
        lines: list[dict[str, str]] = []

        async def read(source: str) -> None:
            try:
                await asyncio.wait_for(self._read_logs(pod_id, source, tail, idle_s, lines), wait_s)
            except TimeoutError:
                pass
            except ProviderError as exc:
                lines.append({"ts": "", "source": source, "line": f"(cannot read the {source} log: {exc})"})

        await asyncio.gather(read("system"), read("container"))
        lines.sort(key=lambda item: item.get("ts") or "")
        self._logs_cache = {k: v for k, v in self._logs_cache.items() if time.monotonic() - v[0] < LOGS_TTL_S}
        self._logs_cache[pod_id, tail] = (time.monotonic(), lines[-tail:])
        return lines[-tail:]

    async def _read_logs(self, pod_id: str, source: str, tail: int, idle_s: float,
                         into: list[dict[str, str]]) -> None:
        response = await self.api.send("GET", f"/v2/pods/{pod_id}/logs", params={"source": source, "tail": tail},
                                       stream=True, accept="text/event-stream")  # the only type it declares
        count = 0
        lines = response.aiter_lines()
        try:
            while count < tail:
                try:
                    raw = await asyncio.wait_for(anext(lines), idle_s if count else None)
                except (StopAsyncIteration, TimeoutError):
                    return
                except httpx.HTTPError as exc:  # the stream broke off: keep what came
                    log.info("pod %s %s log stream ended: %s", pod_id, source, type(exc).__name__)
                    return
                if not raw.startswith("data:"):
                    continue
                try:
                    item = json.loads(raw[5:].strip())
                except ValueError:
                    continue
                if isinstance(item, dict):
                    into.append({"ts": str(item.get("ts") or ""), "source": str(item.get("source") or source),
                                 "line": str(item.get("line") or "")[:2000]})
                    count += 1
        finally:
            await response.aclose()

    async def check_key(self) -> tuple[bool, str]:
        """Whether the key works against v2, and what RunPod says of it (for doctor)."""
        try:
            await self.api.json("GET", "/v2/pods")
        except KeyRejected as exc:
            return False, str(exc)
        except ApiProblem as exc:
            if exc.status == 403:
                return False, ("RunPod accepted the key but it may not read pods (403): give the key read/write "
                               "access to pods under Settings > API Keys")
            return False, str(exc)
        except ProviderError as exc:
            return False, str(exc)
        # RunPod's document offers no harmless way to learn what a key may do (a write would have to be tried):
        # a read-only key passes here and shows at the first launch.
        return True, (f"API key accepted by REST v2 (read access; a read-only key shows only at the first launch: "
                      f"RunPod says 403 to the create); rate limits: {self.api.rate.describe()}")

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.api.close()
