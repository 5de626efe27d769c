"""Spot (interruptible) pods: RunPod's REST API v2 has none, so these still go through GraphQL
`podRentInterruptable`, sent with the runpod SDK's transport. RunPod retires GraphQL in early 2027; from then on
spot launches fail with a clear message and on-demand pods (REST v2) keep working.

The SDK is imported lazily, in a worker thread, and only here: the import takes about 1.5 s and calls
logging.basicConfig (a stderr handler that would write onto a running TUI), so podtui's logging is restored
right after it. It honours RUNPOD_API_BASE_URL (the tests' fake API).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

from .base import PodRequest, ProviderError
from .runpod_api import ApiProblem, Unanswered

log = logging.getLogger(__name__)

SPOT_RETIREMENT = ("spot pods go through RunPod's GraphQL API, which RunPod retires in early 2027 "
                   "(REST v2 has no spot pods)")
_import_lock = threading.Lock()

SPOT_PRICES_QUERY = """
query GpuTypes {
  gpuTypes { id secureSpotPrice communitySpotPrice lowestPrice(input: {gpuCount: 1}) { minimumBidPrice } }
}
"""


def import_runpod(api_key: str) -> Any:
    """Import the SDK (once), set its key, and undo its logging.basicConfig."""
    with _import_lock:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        import runpod  # ~1.5 s and ~60 MB; only ever imported here, off the UI thread

        root.handlers[:] = handlers
        root.setLevel(level)
        runpod.api_key = api_key
        return runpod


def gql(value: Any) -> str:
    """A value written as a GraphQL literal: strings escaped the JSON way (GraphQL's string syntax is the same
    for every character JSON escapes), so quotes, backslashes and newlines cannot break out of the mutation."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


CUDA_RELEASES = ("11.8", "12.0", "12.1", "12.2", "12.3", "12.4", "12.5", "12.6", "12.7", "12.8", "12.9", "13.0",
                 "13.1", "13.2")
"""CUDA versions a host may report (GraphQL's allowedCudaVersions matches exactly and has no minimum; assumed: the
list RunPod's console offers, plus the next releases)."""


def allowed_cuda(minimum: str | None) -> list[str]:
    """The CUDA versions at or above `minimum` (none: no constraint)."""
    if not minimum:
        return []
    floor = tuple(int(p) for p in minimum.split("."))
    return [v for v in CUDA_RELEASES if tuple(int(p) for p in v.split(".")) >= floor]


def spot_mutation(request: PodRequest, gpu_type: str, cloud: str, bid: float) -> str:
    """The podRentInterruptable mutation for one GPU type: the same CUDA floor and ports as an on-demand pod."""
    env = ", ".join(f"{{ key: {gql(k)}, value: {gql(v)} }}" for k, v in request.env.items())
    ports = ",".join([*request.ports, *(["22/tcp"] if request.ssh and "22/tcp" not in request.ports else [])])
    cuda = allowed_cuda(request.min_cuda_version)
    allowed = f", allowedCudaVersions: [{', '.join(gql(v) for v in cuda)}]" if cuda else ""
    return f"""
    mutation {{
      podRentInterruptable(input: {{
        bidPerGpu: {gql(bid)}, cloudType: {cloud}, gpuCount: {request.gpu_count},
        volumeInGb: 0, containerDiskInGb: {request.container_disk_gb}, minVcpuCount: 1, minMemoryInGb: 1,
        gpuTypeId: {gql(gpu_type)}, name: {gql(request.name)}, imageName: {gql(request.image)},
        dockerArgs: {gql(request.start_command)}, ports: {gql(ports)}, volumeMountPath: "/workspace",
        startSsh: {gql(request.ssh)}, supportPublicIp: {gql(request.ssh)}, env: [{env}]{allowed}
      }}) {{ id costPerHr }}
    }}"""


def graphql_problem(message: str) -> ProviderError:
    """A GraphQL error as the REST create table's status, so spot candidates fail over like on-demand ones."""
    lowered = message.lower()
    if "no longer any instances available" in lowered or "not enough free gpus" in lowered:
        return ApiProblem(400, "Bad Request", message)
    if "bid" in lowered:  # a refused bid (below the current minimum): the next candidate may take it
        return ApiProblem(400, "Bad Request", message)
    if "balance" in lowered or "insufficient funds" in lowered:
        return ApiProblem(402, "Payment Required", message)
    return ProviderError(f"RunPod (GraphQL): {message}")


class SpotRental:
    """Spot rentals through GraphQL (the runpod SDK's transport)."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self._sdk: Any = None

    async def graphql(self, query: str) -> dict[str, Any]:
        """Send one query; errors as ProviderError naming GraphQL's retirement when it no longer answers."""
        if self._sdk is None:
            self._sdk = await asyncio.to_thread(import_runpod, self.api_key)
        from runpod.api.graphql import run_graphql_query

        try:
            answer = await asyncio.to_thread(run_graphql_query, query)
        except Exception as exc:
            name = type(exc).__name__
            if name == "AuthenticationError":
                raise ProviderError("RunPod's GraphQL API rejected the API key (401): check RUNPOD_API_KEY") from exc
            if name == "QueryError":
                raise graphql_problem(str(exc)) from exc
            raise Unanswered(f"RunPod's GraphQL API did not answer usably ({name}); {SPOT_RETIREMENT}") from exc
        if not isinstance(answer, dict) or "data" not in answer:
            detail = answer.get("detail") or answer.get("title") if isinstance(answer, dict) else None
            raise ProviderError(f"RunPod's GraphQL API answered without data ({detail or 'no detail'}); "
                                f"{SPOT_RETIREMENT}")
        return answer

    async def bid(self, gpu_type: str, cloud: str) -> float:
        """RunPod's current spot price for one GPU of this type (the bid podtui offers)."""
        data = await self.graphql(SPOT_PRICES_QUERY)
        for gpu in (data.get("data") or {}).get("gpuTypes") or []:
            if gpu.get("id") != gpu_type:
                continue
            # This cloud's own spot price only: a Secure request never bids the (lower) Community price.
            price = gpu.get("communitySpotPrice") if cloud == "COMMUNITY" else gpu.get("secureSpotPrice")
            if price:
                return float(price)
        # Read as the create table's 400: the next candidate may have one.
        raise ApiProblem(400, "Bad Request", f"{gpu_type} has no {cloud.lower()} spot price on RunPod; try another "
                                             "GPU type or cloud, or launch it on demand")

    async def pod(self, pod_id: str) -> dict[str, Any] | None:
        """A spot pod as GraphQL sees it ({"id", "desiredStatus", "costPerHr"}), or None once it is gone (for the
        spot pods REST v2 does not list: whether it does is undocumented)."""
        data = await self.graphql(f"query {{ pod(input: {{podId: {gql(pod_id)}}}) {{ id desiredStatus costPerHr }} }}")
        found = (data.get("data") or {}).get("pod")
        return dict(found) if isinstance(found, dict) and found.get("id") else None

    async def terminate(self, pod_id: str) -> None:
        """GraphQL podTerminate (answers null whether or not the pod existed: confirm with pod())."""
        await self.graphql(f"mutation {{ podTerminate(input: {{podId: {gql(pod_id)}}}) }}")

    async def rent(self, request: PodRequest, gpu_type: str, cloud: str) -> dict[str, Any]:
        """Rent one spot pod; returns {"id", "costPerHr"}."""
        bid = await self.bid(gpu_type, cloud)
        data = await self.graphql(spot_mutation(request, gpu_type, cloud, bid))
        pod = (data.get("data") or {}).get("podRentInterruptable")
        if not pod or not pod.get("id"):
            raise ProviderError(f"RunPod (GraphQL) answered a spot rental without a pod: {str(data)[:200]}")
        return dict(pod)
