"""What the API answers for reading a run: metrics, logs, outputs; health, doctor, errors."""


from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from .base import MetricValue, _Model
from .report import LogLine


class MetricSeries(_Model):
    """One metric of a run, as parallel arrays (compact for long runs)."""

    steps: list[int]
    values: list[MetricValue]
    ts: list[float]
    downsampled: bool = False
    attempts: list[int] = Field(default_factory=list)
    """Which attempt (pod) each point came from (--retries): a later attempt's value replaces an earlier one's."""


class MetricsPage(_Model):
    """A run's metrics by name."""

    run_id: str
    series: dict[str, MetricSeries]


class LogsPage(_Model):
    """A page of a run's log lines, oldest first."""

    run_id: str
    lines: list[LogLine]
    next_after_seq: int | None


class Health(_Model):
    """Answer of /healthz."""

    status: str
    version: str


class DoctorCheck(_Model):
    """One check of `podtui doctor`, made by the CLI or by the control plane."""

    name: str
    status: Literal["ok", "warn", "fail"]
    message: str


class ErrorDetail(_Model):
    """What went wrong and what to do."""

    code: str
    message: str


class ErrorBody(_Model):
    """Every error answer of the control plane."""

    error: ErrorDetail


class OutputFile(_Model):
    """One file of a run's outputs on the control plane: the version home (hash checked), and one moving."""

    path: str
    """Relative to the run's outputs folder."""
    size: int | None = None
    """Bytes of the version home (None while no version is home yet)."""
    sha256: str | None = None
    mtime: float | None = None
    """When the pod last changed the version home (the pod's clock)."""
    home_at: float | None = None
    """When that version arrived and its sha256 matched."""
    moving_size: int | None = None
    """Size of a newer version on its way (None when nothing moves)."""
    received: int = 0
    """Bytes of that version received so far."""


class OutputsSummary(_Model):
    """A run's outputs at a glance: what is home, what still moves, and the pod's last moment."""

    files_home: int = 0
    bytes_home: int = 0
    files_moving: int = 0
    bytes_moving: int = 0
    bytes_received: int = 0
    state: Literal["none", "moving", "synced", "home"] = "none"
    """none: nothing yet; moving: a sync is under way; synced: a sync finished while the run goes on; home: the
    final sync after the command ended is complete."""
    last_sync_at: float | None = None
    final_at: float | None = None
    pod_until: float | None = None
    """When the pod ends at the latest if the outputs are not home by then (the keep-alive bound)."""


class VolumeOutputs(_Model):
    """Where a run's outputs are on its volume (`launch --outputs-on-volume`), and what is there."""

    volume: str
    provider: Literal["local", "runpod"]
    path: str
    """The folder as the pod sees it: `<mount>/podtui/outputs/<run id>/`."""
    location: str
    """Where to find it from here: a local volume's folder, or `s3://<volume id>/podtui/outputs/<run id>/` on
    RunPod's S3 API."""
    files: list[OutputFile] = Field(default_factory=list)
    """The files there now (size, mtime; a sha256 once fetched home)."""
    note: str | None = None
    """Why the files could not be listed (no S3 API key, the S3 API refused), or how to fetch them."""


class OutputsPage(_Model):
    """A run's outputs: its files and a summary."""

    run_id: str
    folder: str
    """Where they are on the control plane's machine."""
    files: list[OutputFile]
    summary: OutputsSummary
    volume: VolumeOutputs | None = None
    """With `--outputs-on-volume`: the outputs on the volume (`files` then lists what was fetched home)."""
