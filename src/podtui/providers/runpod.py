"""The RunPod provider, on the runpod SDK (1.12).

The SDK is imported lazily, in a worker thread, the first time it is needed: the import takes about 1.5 s and
calls logging.basicConfig (a stderr handler that would write onto a running TUI), so podtui's logging is
restored right after it. Every SDK call is blocking (requests) and runs in a thread. The SDK does not read
RUNPOD_API_KEY itself: the key comes from the settings. It honours RUNPOD_API_BASE_URL (the tests' fake API).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..models import GpuOffer
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

log = logging.getLogger(__name__)
T = TypeVar("T")

NO_CAPACITY = "There are no longer any instances available"
SELF_TERMINATE = "runpodctl remove pod $RUNPOD_POD_ID"
OFFERS_TTL_S = 60.0
UNSAFE = ('"', "\\", "\n", "\r")
_TRANSIENT = {"JSONDecodeError", "ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout", "ChunkedEncodingError"}
_import_lock = threading.Lock()

OFFERS_QUERY = """
query GpuTypes {
  gpuTypes {
    id displayName memoryInGb maxGpuCount secureCloud communityCloud securePrice communityPrice
    secureSpotPrice communitySpotPrice
    lowestPrice(input: {gpuCount: 1}) { minimumBidPrice uninterruptablePrice stockStatus }
  }
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


class Transient(ProviderError):
    """RunPod answered 429 or a non-JSON 5xx page, or did not answer: worth retrying."""


def _classify(exc: BaseException) -> Exception:
    """Turn an SDK/requests exception into a ProviderError a user can act on."""
    name = type(exc).__name__
    text = str(exc)
    if name == "AuthenticationError":
        if "No API key" in text:
            return ProviderError("no RunPod API key: set RUNPOD_API_KEY (or runpod_api_key in config.toml)")
        return ProviderError("RunPod rejected the API key (401): check RUNPOD_API_KEY (or runpod_api_key in "
                             "config.toml); keys are under Settings > API Keys on runpod.io")
    if name == "QueryError":
        return ProviderError(f"RunPod: {text}")
    if name in _TRANSIENT:
        return Transient(f"RunPod did not answer usably ({name}); it may be overloaded or down")
    if isinstance(exc, KeyError | TypeError):
        return Transient(f"RunPod answered without the expected data ({name}: {text})")
    return ProviderError(f"RunPod call failed: {name}: {text}")


def _check_safe(request: PodRequest) -> None:
    """The SDK inlines values into GraphQL without escaping: refuse what would break (or inject into) it."""
    values = [request.start_command, request.name, request.image, *request.env.keys(), *request.env.values()]
    for value in values:
        if any(ch in value for ch in UNSAFE):
            raise ProviderError(f"cannot send {value[:40]!r} to RunPod: quotes, backslashes and newlines are not "
                                "allowed in the image, the name or env values")


def phase_of(pod: dict[str, Any] | None) -> PodPhase:
    """RunPod's desiredStatus (and runtime) as a pod phase."""
    if not pod:
        return "gone"
    status = pod.get("desiredStatus")
    if status in ("TERMINATED", "DEAD"):
        return "gone"
    if status in ("EXITED", "PAUSED"):
        return "exited"
    if status == "RUNNING" and pod.get("runtime"):
        return "running"
    return "starting"  # CREATED, RESTARTING, or RUNNING with runtime null: the image is still being pulled


class RunPodProvider:
    """Pods on RunPod."""

    name = "runpod"
    self_terminate_command = SELF_TERMINATE

    def __init__(self, api_key: str, retries: int = 3, backoff_s: float = 1.0,
                 terminate_confirm_s: float = 60.0) -> None:
        self.api_key = api_key
        self.retries = retries
        self.backoff_s = backoff_s
        self.terminate_confirm_s = terminate_confirm_s
        self._sdk: Any = None
        self._offers: tuple[float, list[GpuOffer]] | None = None

    async def sdk(self) -> Any:
        """The runpod module, imported on first use in a worker thread."""
        if self._sdk is None:
            self._sdk = await asyncio.to_thread(import_runpod, self.api_key)
        return self._sdk

    async def _call(self, fn: Callable[..., T], *args: Any, retry: bool = True, **kwargs: Any) -> T:
        """One SDK call in a thread; transient failures (429, HTML 5xx, timeouts) retried with backoff."""
        await self.sdk()
        attempts = self.retries if retry else 1
        for attempt in range(attempts):
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except Exception as exc:
                error = _classify(exc)
                if isinstance(error, Transient) and attempt + 1 < attempts:
                    delay = self.backoff_s * 2**attempt * (0.5 + random.random())
                    log.warning("RunPod: %s; retrying in %.1f s", error, delay)
                    await asyncio.sleep(delay)
                    continue
                raise error from exc
        raise AssertionError("unreachable")

    async def graphql(self, query: str) -> dict[str, Any]:
        """A raw query through the SDK's transport (for what the SDK has no function for)."""
        await self.sdk()
        from runpod.api.graphql import run_graphql_query

        return await self._call(run_graphql_query, query)

    # -- offers ----------------------------------------------------------------------------------

    async def list_offers(self, refresh: bool = False) -> list[GpuOffer]:
        """GPU types with on-demand and spot prices and stock; cached for a minute."""
        if self._offers and not refresh and time.monotonic() - self._offers[0] < OFFERS_TTL_S:
            return self._offers[1]
        data = await self.graphql(OFFERS_QUERY)
        offers = []
        for gpu in data["data"]["gpuTypes"]:
            if gpu.get("id") in (None, "unknown"):
                continue
            lowest = gpu.get("lowestPrice") or {}
            spot = gpu.get("communitySpotPrice") or gpu.get("secureSpotPrice") or lowest.get("minimumBidPrice")
            offers.append(GpuOffer(
                id=gpu["id"], name=gpu.get("displayName") or gpu["id"], provider=self.name,
                vram_gb=gpu.get("memoryInGb"),
                secure_price=gpu.get("securePrice") if gpu.get("secureCloud", True) else None,
                community_price=gpu.get("communityPrice") if gpu.get("communityCloud", True) else None,
                spot_price=spot, stock=lowest.get("stockStatus"), max_gpu_count=gpu.get("maxGpuCount")))
        offers.sort(key=lambda o: (o.secure_price or o.community_price or 1e9, o.id))
        self._offers = (time.monotonic(), offers)
        return offers

    # -- pods ------------------------------------------------------------------------------------

    async def create_pod(self, request: PodRequest, on_attempt: AttemptCallback) -> Pod:
        """Try each GPU type in order while RunPod has no capacity; reconcile lost answers by pod name."""
        _check_safe(request)
        sdk = await self.sdk()
        tried: list[str] = []
        for gpu_type in request.gpu_types:
            tried.append(gpu_type)
            try:
                created = await self._create_once(sdk, request, gpu_type, on_attempt)
            except ProviderError as exc:
                message = str(exc)
                await on_attempt(LaunchAttempt(gpu_type, False, message))
                if NO_CAPACITY in message or "No GPU found" in message:
                    continue
                raise
            price = float(created.get("costPerHr") or 0.0)
            if not price:
                price = await self._price_of(created["id"])
            await on_attempt(LaunchAttempt(gpu_type, True, f"pod {created['id']} created"
                                           f"{' (spot)' if request.spot else ''} at ${price:.3f}/h"))
            return Pod(pod_id=created["id"], gpu_type=gpu_type, price_per_hour=price)
        raise NoCapacity(f"no capacity on RunPod for {', '.join(tried)} ({request.cloud_type.lower()} cloud); "
                         "add more GPU types as fallbacks or try another cloud type")

    async def _create_once(self, sdk: Any, request: PodRequest, gpu_type: str,
                           on_attempt: AttemptCallback) -> dict[str, Any]:
        """One create call; a lost answer is reconciled by name before anything is retried."""
        for attempt in range(self.retries):
            try:
                if request.spot:
                    return await self._rent_spot(request, gpu_type)
                return await asyncio.to_thread(
                    sdk.create_pod, request.name, request.image, gpu_type, cloud_type=request.cloud_type,
                    gpu_count=request.gpu_count, container_disk_in_gb=request.container_disk_gb, volume_in_gb=0,
                    docker_args=request.start_command, env=request.env, ports="22/tcp", start_ssh=True,
                    support_public_ip=True)
            except Exception as exc:
                error = exc if isinstance(exc, ProviderError) else _classify(exc)
                if not isinstance(error, Transient):
                    raise error from exc
                # The create may have happened even though its answer was lost: look before trying again.
                found = await self._find_by_name(request.name)
                if found is not None:
                    await on_attempt(LaunchAttempt(gpu_type, True, f"{error}; the create went through: found pod "
                                                   f"{found['id']} by its name"))
                    return found
                if attempt + 1 >= self.retries:
                    raise error from exc
                await on_attempt(LaunchAttempt(gpu_type, False, f"{error}; no pod by that name; trying again"))
                await asyncio.sleep(self.backoff_s * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def _rent_spot(self, request: PodRequest, gpu_type: str) -> dict[str, Any]:
        """The SDK has no spot call: podRentInterruptable, with values checked by _check_safe."""
        offers = {o.id: o for o in await self.list_offers()}
        bid = offers[gpu_type].spot_price if gpu_type in offers else None
        if bid is None:
            raise ProviderError(f"{gpu_type} has no spot price on RunPod; launch it on demand")
        env = ", ".join(f'{{ key: "{k}", value: "{v}" }}' for k, v in request.env.items())
        mutation = f"""
        mutation {{
          podRentInterruptable(input: {{
            bidPerGpu: {bid}, cloudType: {request.cloud_type}, gpuCount: {request.gpu_count},
            volumeInGb: 0, containerDiskInGb: {request.container_disk_gb}, minVcpuCount: 1, minMemoryInGb: 1,
            gpuTypeId: "{gpu_type}", name: "{request.name}", imageName: "{request.image}",
            dockerArgs: "{request.start_command}", ports: "22/tcp", volumeMountPath: "/workspace",
            startSsh: true, env: [{env}]
          }}) {{ id imageName env machineId costPerHr machine {{ podHostId }} }}
        }}"""
        from runpod.api.graphql import run_graphql_query

        data = await asyncio.to_thread(run_graphql_query, mutation)
        return dict(data["data"]["podRentInterruptable"])

    async def _price_of(self, pod_id: str) -> float:
        try:
            pod = await self._call((await self.sdk()).get_pod, pod_id)
        except ProviderError:
            return 0.0
        return float((pod or {}).get("costPerHr") or 0.0)

    async def _find_by_name(self, name: str) -> dict[str, Any] | None:
        try:
            pods = await self._call((await self.sdk()).get_pods)
        except ProviderError as exc:
            raise Transient(f"could not check whether the lost create made a pod: {exc}") from exc
        return next((p for p in pods or [] if p.get("name") == name), None)

    async def get_pod(self, pod_id: str) -> PodState:
        """Phase and price of a pod (`gone` once RunPod no longer has it)."""
        pod = await self._call((await self.sdk()).get_pod, pod_id)
        return PodState(pod_id=pod_id, phase=phase_of(pod), price_per_hour=(pod or {}).get("costPerHr"),
                        name=(pod or {}).get("name") or "", detail=(pod or {}).get("desiredStatus") or "gone")

    async def terminate_pod(self, pod_id: str) -> None:
        """Terminate, then poll until RunPod confirms the pod is gone (retrying the terminate meanwhile)."""
        sdk = await self.sdk()
        deadline = time.monotonic() + self.terminate_confirm_s
        delay = self.backoff_s
        while True:
            problem: ProviderError | None = None
            try:
                await self._call(sdk.terminate_pod, pod_id)
            except ProviderError as exc:  # e.g. already gone: the status check below decides
                problem = exc
            try:
                if phase_of(await self._call(sdk.get_pod, pod_id)) == "gone":
                    return
            except ProviderError as exc:
                problem = exc
            if problem is not None and "API key" in str(problem):
                raise problem
            if time.monotonic() >= deadline:
                raise ProviderError(f"RunPod has not confirmed that pod {pod_id} is gone"
                                    f"{f' ({problem})' if problem else ''}; check the RunPod console (podtui "
                                    "keeps trying)")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def stop_pod(self, pod_id: str) -> None:
        """Stop the pod: GPU billing ends; its disk is kept (and billed) until it is terminated."""
        await self._call((await self.sdk()).stop_pod, pod_id)

    async def list_pods(self) -> list[PodState]:
        """Pods of this account whose name carries podtui's prefix."""
        pods = await self._call((await self.sdk()).get_pods)
        return [PodState(pod_id=p["id"], phase=phase_of(p), price_per_hour=p.get("costPerHr"), name=p["name"],
                         detail=p.get("desiredStatus") or "")
                for p in pods or [] if str(p.get("name", "")).startswith(POD_NAME_PREFIX)]

    async def close(self) -> None:
        """Nothing to release (the SDK uses plain requests calls)."""
