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


def spot_mutation(request: PodRequest, gpu_type: str, cloud: str, bid: float) -> str:
    """The podRentInterruptable mutation for one GPU type."""
    env = ", ".join(f"{{ key: {gql(k)}, value: {gql(v)} }}" for k, v in request.env.items())
    ports = ",".join(request.ports)
    return f"""
    mutation {{
      podRentInterruptable(input: {{
        bidPerGpu: {gql(bid)}, cloudType: {cloud}, gpuCount: {request.gpu_count},
        volumeInGb: 0, containerDiskInGb: {request.container_disk_gb}, minVcpuCount: 1, minMemoryInGb: 1,
        gpuTypeId: {gql(gpu_type)}, name: {gql(request.name)}, imageName: {gql(request.image)},
        dockerArgs: {gql(request.start_command)}, ports: {gql(ports)}, volumeMountPath: "/workspace",
        startSsh: {gql(request.ssh)}, supportPublicIp: {gql(request.ssh)}, env: [{env}]
      }}) {{ id costPerHr }}
    }}"""


def graphql_problem(message: str) -> ProviderError:
    """A GraphQL error as the REST create table's status, so spot candidates fail over like on-demand ones."""
    lowered = message.lower()
    if "no longer any instances available" in lowered or "not enough free gpus" in lowered:
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
            preferred = gpu.get("communitySpotPrice") if cloud == "COMMUNITY" else gpu.get("secureSpotPrice")
            price = preferred or gpu.get("communitySpotPrice") or (gpu.get("lowestPrice") or {}).get(
                "minimumBidPrice")
            if price:
                return float(price)
        # Read as the create table's 400: the next candidate may have one.
        raise ApiProblem(400, "Bad Request", f"{gpu_type} has no spot price on RunPod; launch it on demand")

    async def rent(self, request: PodRequest, gpu_type: str, cloud: str) -> dict[str, Any]:
        """Rent one spot pod; returns {"id", "costPerHr"}."""
        bid = await self.bid(gpu_type, cloud)
        data = await self.graphql(spot_mutation(request, gpu_type, cloud, bid))
        pod = (data.get("data") or {}).get("podRentInterruptable")
        if not pod or not pod.get("id"):
            raise ProviderError(f"RunPod (GraphQL) answered a spot rental without a pod: {str(data)[:200]}")
        return dict(pod)
