"""API bodies of the pods and offers: GPU offers, orphan pods, a pod's provider-side logs; the answer to a report."""

from __future__ import annotations

from pydantic import Field

from .base import _Model
from .run import RunStatus


class GpuOffer(_Model):
    """One GPU type a provider offers, with live prices per GPU-hour and stock."""

    id: str
    name: str
    provider: str
    vram_gb: float | None = None
    secure_price: float | None = None
    community_price: float | None = None
    spot_price: float | None = None
    stock: str | None = None
    max_gpu_count: int | None = None


class OrphanPod(_Model):
    """A pod named like podtui's that no run of this control plane knows: it bills unseen."""

    provider: str
    pod_id: str
    name: str
    phase: str
    price_per_hour: float | None = None


class PodLogLine(_Model):
    """One line of a pod's own logs at its provider (container output or the host's lifecycle lines)."""

    ts: str
    source: str
    line: str


class PodLogs(_Model):
    """The tail of a pod's provider-side logs: why a pod never booted, before its agent reports."""

    run_id: str
    pod_id: str | None = None
    lines: list[PodLogLine] = Field(default_factory=list)
    note: str | None = None


class ReportReply(_Model):
    """The control plane's answer to a report: what it stored and whether the pod should stop."""

    accepted_metrics: int
    accepted_logs: int
    run_status: RunStatus
    stop: bool
    """True when the run has ended on the control plane's side (terminated, lost): the agent shuts down."""
    deadline_in_s: float | None = None
    """Seconds until the run's max runtime or budget runs out: the pod ends the command itself then (on its own
    clock), also while it cannot reach the control plane."""
    min_interval_s: float | None = None
    """Set while the control plane is busy: report no more often than this (seconds); agents batch meanwhile."""
    sync_outputs: bool = False
    """Someone asked for the outputs now (`podtui outputs RUN --sync`, key `o`): the pod sends what changed."""
