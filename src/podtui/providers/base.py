"""The Provider protocol every pod provider implements, and the values it trades in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..models import GpuOffer

PodPhase = Literal["starting", "running", "exited", "gone"]


@dataclass
class PodRequest:
    """Everything a provider needs to create a run's pod."""

    run_id: str
    name: str
    """Pod name: podtui's prefix plus the run id, so a lost create can be found again by name."""
    gpu_types: list[str]
    gpu_count: int
    cloud_type: str
    spot: bool
    image: str
    start_command: str
    """Free of quotes, backslashes and newlines (the runpod SDK inlines it into GraphQL unescaped)."""
    env: dict[str, str]
    container_disk_gb: int = 20


@dataclass
class Pod:
    """A pod that exists at a provider."""

    pod_id: str
    gpu_type: str
    price_per_hour: float


@dataclass
class PodState:
    """What a provider says of a pod now."""

    pod_id: str
    phase: PodPhase
    price_per_hour: float | None = None
    exit_code: int | None = None
    detail: str = ""
    name: str = ""


@dataclass
class LaunchAttempt:
    """One try at creating a pod on one GPU type."""

    gpu_type: str
    ok: bool
    message: str
    extra: dict[str, str] = field(default_factory=dict)


class ProviderError(RuntimeError):
    """A provider call failed; the message says what to do."""


class NoCapacity(ProviderError):
    """None of the asked GPU types had capacity."""


AttemptCallback = Callable[[LaunchAttempt], Awaitable[None]]


class Provider(Protocol):
    """A source of pods. Every method is safe to call again (idempotent)."""

    name: str
    self_terminate_command: str
    """Shell command a pod runs to end itself (RunPod: runpodctl remove pod ...; local: empty, exit)."""

    async def list_offers(self, refresh: bool = False) -> list[GpuOffer]:
        """GPU types with live prices and stock."""
        ...

    async def create_pod(self, request: PodRequest, on_attempt: AttemptCallback) -> Pod:
        """Create a pod, trying request.gpu_types in order while capacity is missing."""
        ...

    async def get_pod(self, pod_id: str) -> PodState:
        """The pod's state; phase `gone` once it no longer exists."""
        ...

    async def terminate_pod(self, pod_id: str) -> None:
        """End the pod and its billing; returns once the provider confirms it is gone."""
        ...

    async def stop_pod(self, pod_id: str) -> None:
        """Stop the pod (GPU billing ends; its disk is kept where the provider keeps disks)."""
        ...

    async def list_pods(self) -> list[PodState]:
        """Every pod of this account that podtui may have made (names with podtui's prefix)."""
        ...

    async def close(self) -> None:
        """Release resources (not the pods)."""
        ...


POD_NAME_PREFIX = "podtui-"
