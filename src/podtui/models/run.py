"""A run: its status, its pods (attempts, nodes), what it cost, and its events."""

from __future__ import annotations

import time
from enum import StrEnum

from pydantic import Field, computed_field

from .base import MetricValue, _Model
from .report import DownloadProgress
from .spec import LaunchSpec


class RunStatus(StrEnum):
    """Where a run is in its life (DESIGN.md, A run's life)."""

    pending = "pending"
    provisioning = "provisioning"
    booting = "booting"
    downloading = "downloading"
    training = "training"
    succeeded = "succeeded"
    failed = "failed"
    terminated = "terminated"
    lost = "lost"

    @property
    def is_live(self) -> bool:
        """True while a pod may exist and bill."""
        return self in LIVE_STATUSES

    @property
    def is_final(self) -> bool:
        """True once the run has ended."""
        return self not in LIVE_STATUSES


LIVE_STATUSES = frozenset(
    {RunStatus.pending, RunStatus.provisioning, RunStatus.booting, RunStatus.downloading, RunStatus.training}
)


class RunNode(_Model):
    """One pod of a run of more than one (node 0 is the primary: the run's metrics and outputs)."""

    rank: int
    pod_id: str | None = None
    status: str = "starting"
    """The node's state: starting, running, training, succeeded, failed, gone."""
    gpu_util: float | None = None
    gpu_mem: float | None = None
    price_per_hour: float | None = None
    """What this node bills per hour (RunPod: the member pod's `cost`)."""
    spent_usd: float = 0.0
    """What this node has cost so far (its rate over the supervisor's passes while the run lives)."""
    updated_at: float | None = None
    """When the supervisor last looked at this node (the cost accrues from there)."""


class Attempt(_Model):
    """One pod of a run: a run that outlives its pod has several (`--retries`)."""

    pod_id: str | None = None
    gpu: str | None = None
    """The pod's GPU type."""
    started_at: float | None = None
    ended_at: float | None = None
    reason: str | None = None
    """Why the attempt ended (the pod was lost, or the run's own end); None while it lasts."""
    cost_usd: float = 0.0
    price_per_hour: float | None = None


class Run(_Model):
    """A training run and the pod that carries it."""

    id: str
    name: str
    provider: str
    status: RunStatus
    status_reason: str | None = None
    spec: LaunchSpec
    dataset_id: str
    pod_id: str | None = None
    gpu_type: str | None = None
    price_per_hour: float | None = None
    created_at: float
    started_at: float | None = None
    """When the pod was created (billing starts)."""
    ended_at: float | None = None
    last_heartbeat: float | None = None
    exit_code: int | None = None
    progress: DownloadProgress | None = None
    last_step: int | None = None
    last_loss: MetricValue | None = None
    keep_alive_until: float | None = None
    last_activity: float | None = None
    """When the pod last sent a new metric or log line."""
    gpu_util: float | None = None
    """GPU utilisation of the pod as its provider last reported it, percent (mean over its GPUs)."""
    gpu_mem: float | None = None
    """GPU memory in use, percent."""
    pod_port: int | None = None
    """The pod's HTTP port in pull mode."""
    metrics_source: str | None = None
    """How the pod read this run's metrics from its output, e.g. "tqdm postfix, step from the bar's counter"."""
    live: list[str] = Field(default_factory=list)
    """The progress rows the command is drawing now (shown in place under the log), [] when none."""
    pod_end_failed: str | None = None
    """What the pod said when it could not end itself (it bills until podtui ends it); None once it is gone."""
    ended_attempts: list[Attempt] = Field(default_factory=list)
    """The attempts whose pod was lost and replaced (the current pod is the run's own pod_id, started_at...)."""
    data_wait_from: float | None = None
    """When the pod began getting its dataset (it reported downloading)."""
    data_wait_until: float | None = None
    """When it began training."""
    nodes: list[RunNode] = Field(default_factory=list)
    """Per node, for a run of more than one pod ([] for one pod)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def data_wait_s(self) -> float | None:
        """Seconds the pod spent getting its data before training (so far, while it still downloads)."""
        if self.data_wait_from is None:
            return None
        end = self.data_wait_until or self.ended_at or time.time()
        return round(max(0.0, end - self.data_wait_from), 3)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def data_wait_usd(self) -> float | None:
        """What that wait cost at the pod's rate."""
        wait = self.data_wait_s
        if wait is None or self.price_per_hour is None:
            return None
        return round(wait / 3600.0 * self.price_per_hour, 6)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def connect(self) -> str:
        """How the pod and the control plane talk: `push` or `pull` (decided at launch)."""
        return self.spec.connect or "push"

    def pod_in_use(self, now: float) -> bool:
        """Whether the run still uses its pod, so more of its outputs can come home: it lives, or its pod stays to
        bring them home (keep-alive)."""
        return self.status.is_live or (self.keep_alive_until is not None and self.keep_alive_until > now)

    def cost_at(self, now: float) -> float:
        """Cost so far: price per hour x billed time (until the run ended, or now), over every attempt."""
        return sum(a.cost_usd for a in self.ended_attempts) + self.attempt_cost_at(now)

    def attempt_cost_at(self, now: float) -> float:
        """The current (or last) attempt's cost so far: its pod's price per hour x its billed time."""
        if self.price_per_hour is None or self.started_at is None:
            return 0.0
        return max(0.0, (self.ended_at or now) - self.started_at) / 3600.0 * self.price_per_hour

    def runtime_at(self, now: float) -> float:
        """Billed time so far over every attempt (what --max-runtime counts), seconds."""
        earlier = sum(max(0.0, (a.ended_at or 0.0) - (a.started_at or a.ended_at or 0.0))
                      for a in self.ended_attempts)
        if self.started_at is None:
            return earlier
        return earlier + max(0.0, (self.ended_at or now) - self.started_at)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def attempt(self) -> int:
        """The current (or last) attempt's number, from 1."""
        return len(self.ended_attempts) + 1

    @computed_field  # type: ignore[prop-decorator]
    @property
    def attempts(self) -> list[Attempt]:
        """Every pod of the run so far, the current one last (its cost counted until now)."""
        out = list(self.ended_attempts)
        if self.pod_id:
            cost = self.attempt_cost_at(time.time())
            out.append(Attempt(pod_id=self.pod_id, gpu=self.gpu_type, started_at=self.started_at,
                               ended_at=self.ended_at, reason=self.status_reason if self.ended_at else None,
                               cost_usd=round(cost, 6), price_per_hour=self.price_per_hour))
        return out

    @computed_field  # type: ignore[prop-decorator]
    @property
    def spent_usd(self) -> float:
        """Cost so far in US dollars."""
        return round(self.cost_at(time.time()), 6)


class RunEvent(_Model):
    """Something that happened to a run: a launch attempt, a status change, a guardrail, an error."""

    id: int
    run_id: str
    ts: float
    kind: str
    message: str
