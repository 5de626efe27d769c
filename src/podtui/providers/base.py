"""The Provider protocol every pod provider implements, and the values it trades in."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..models import GpuOffer

log = logging.getLogger(__name__)

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
    """The container's arguments (RunPod: `args`): quote-free, so shell-like and whitespace splitting agree."""
    env: dict[str, str]
    container_disk_gb: int = 20
    ports: list[str] = field(default_factory=list)
    """Ports to expose, like `8000/http`; none by default (podtui never connects in unless asked)."""
    ssh: bool = False
    """Expose 22/tcp and ask RunPod to start sshd (narrows Community capacity to hosts with a public IP)."""
    min_cuda_version: str | None = None
    """Lowest CUDA version of the host, `major.minor` (the image's own CUDA)."""
    network_volume_id: str | None = None
    """A RunPod network volume to mount at `volume_path`; the pod then goes to `data_center_ids`, Secure Cloud."""
    volume_path: str = "/workspace"
    data_center_ids: list[str] = field(default_factory=list)
    nodes: int = 1
    """Pods of the run; more than one is one group (a RunPod cluster; local: that many processes) with one id,
    each node getting NODE_RANK, NUM_NODES, MASTER_ADDR and MASTER_PORT from the provider."""


@dataclass
class Pod:
    """A pod that exists at a provider."""

    pod_id: str
    gpu_type: str
    price_per_hour: float


@dataclass
class NodeState:
    """One pod of a group (a cluster member) as its provider says it is now."""

    rank: int
    pod_id: str
    phase: PodPhase
    price_per_hour: float | None = None
    exit_code: int | None = None
    gpu_util: float | None = None
    gpu_mem: float | None = None
    detail: str = ""


@dataclass
class PodState:
    """What a provider says of a pod now."""

    pod_id: str
    phase: PodPhase
    price_per_hour: float | None = None
    exit_code: int | None = None
    detail: str = ""
    name: str = ""
    gpu_util: float | None = None
    """Mean GPU utilisation over the pod's GPUs, percent (RunPod's runtime), when the provider reports it."""
    gpu_mem: float | None = None
    """Mean GPU memory use, percent."""
    nodes: list[NodeState] = field(default_factory=list)
    """A group's members (one pod: empty). The group is `running` while any member runs; the supervisor decides
    what a member gone means for the run."""


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
    """Shell command a pod runs to end itself (RunPod: none, its agent asks REST v2 and waits for its own end;
    local: empty, exit)."""

    async def list_offers(self, refresh: bool = False, cloud: str = "SECURE", count: int = 1) -> list[GpuOffer]:
        """GPU types with live prices, and their stock for this cloud type (SECURE, COMMUNITY, ALL) and GPU count."""
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


async def poll_pods(provider: Provider, pod_ids: list[str]) -> dict[str, PodState]:
    """The state of each pod, in as few calls as the provider allows: its own `poll_pods(pod_ids)` when it has
    one (RunPod: one list call), else one `get_pod` each. A pod that could not be asked about is left out
    (unknown, not gone)."""
    batch = getattr(provider, "poll_pods", None)
    if batch is not None:
        states: dict[str, PodState] = await batch(pod_ids)
        return states
    states = {}
    for pod_id in pod_ids:
        try:
            states[pod_id] = await provider.get_pod(pod_id)
        except ProviderError as exc:
            log.warning("cannot poll pod %s: %s", pod_id, exc)
    return states
