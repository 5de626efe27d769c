"""A pod's report as the control plane validates it (pydantic; the fast path is report_rows, msgspec): its points,
log lines and download progress. Its keys and limits are the agent's schema (bootstrap/agent/report.py), and
tests/unit/test_report_schema.py holds this model to it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict

from .base import Int64, ReportedValue, Timestamp, _Model
from .limits import (
    MAX_BATCH_LINES,
    MAX_BATCH_POINTS,
    MAX_LIVE_ROW,
    MAX_LIVE_ROWS,
    MAX_LOG_LINE,
    MAX_METRIC_NAME,
    MAX_METRICS_SOURCE,
    MAX_POD_END_FAILED,
    MAX_REPORT_ERROR,
    MAX_STOP_REASON,
    TRUNCATION_MARKER,
)

POD_REPORTABLE = ("downloading", "training", "succeeded", "failed")
"""The statuses a pod may report (the control plane decides the others)."""


class DownloadProgress(_Model):
    """Bytes of the dataset a pod has downloaded."""

    model_config = ConfigDict(extra="forbid")
    bytes_done: Int64
    bytes_total: Int64


class MetricPoint(_Model):
    """One value of one metric at one step."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=MAX_METRIC_NAME)
    step: Int64
    value: ReportedValue
    ts: Timestamp


def _truncate(text: Any) -> Any:
    if isinstance(text, str) and len(text) > MAX_LOG_LINE:
        return text[:MAX_LOG_LINE] + TRUNCATION_MARKER
    return text


class LogLine(_Model):
    """One line of a pod's output."""

    model_config = ConfigDict(extra="forbid")
    seq: Int64
    ts: Timestamp
    stream: Literal["stdout", "stderr", "system"] = "stdout"
    text: Annotated[str, BeforeValidator(_truncate)]


class Report(_Model):
    """What a pod posts about once a second: new metrics and log lines, status, progress, heartbeat."""

    model_config = ConfigDict(extra="forbid")
    metrics: list[MetricPoint] = Field(default_factory=list, max_length=MAX_BATCH_POINTS)
    logs: list[LogLine] = Field(default_factory=list, max_length=MAX_BATCH_LINES)
    status: Literal["downloading", "training", "succeeded", "failed"] | None = None
    exit_code: Annotated[int, Strict(), Field(ge=-255, le=255)] | None = None
    error: str | None = Field(None, max_length=MAX_REPORT_ERROR)
    stopped: str | None = Field(None, max_length=MAX_STOP_REASON)
    """Why the pod ended the command itself at the run's own limit (max runtime, budget, stall): the run is then
    terminated, as if the control plane had ended it."""
    progress: DownloadProgress | None = None
    heartbeat_ts: Timestamp | None = None
    live: list[Annotated[str, Field(max_length=MAX_LIVE_ROW)]] | None = Field(None, max_length=MAX_LIVE_ROWS)
    """The progress rows the command is drawing now (a bar redrawn with \\r), as a terminal shows them; [] when
    none. Sent when they change: they are no log lines until the command leaves them."""
    metrics_source: str | None = Field(None, max_length=MAX_METRICS_SOURCE)
    """How the pod read the run's metrics: which formats, and where their steps came from."""
    pod_end_failed: str | None = Field(None, max_length=MAX_POD_END_FAILED)
    """The pod asked its provider to end it and is still running: the control plane ends it with the user's key."""
    node: int | None = Field(None, ge=0, le=255)
    """Which node of a run of more than one pod reports (absent: node 0)."""
