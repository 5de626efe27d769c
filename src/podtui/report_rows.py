"""A pod's report flattened into the rows the store writes: the ingest hot path.

Pods post about once a second, each report carrying up to thousands of points. Validating such a body as
`models.Report` builds a pydantic model per point: measured as the largest share of the control plane's CPU per
report (130 us per 100 points; msgspec decodes and checks the same body in 32 us). `parse_report_json` decodes
the common shape of a report (what the agent sends) with msgspec, against the same limits as `models.Report`.
Anything it does not take (NaN/Infinity spelled as literals or strings, an unknown key, a wrong type, a value
out of range) returns None, and the caller validates the body with `models.Report`, which accepts the same
body with the same rows or explains what is wrong. tests/unit/test_report_rows.py holds the two to that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import orjson
from msgspec import Meta, Struct

from .metric_names import TRAIN_LOSS_NAMES
from .models import (
    INT64_MAX,
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
    MAX_TIMESTAMP,
    TRUNCATION_MARKER,
    Report,
)

MetricRow = tuple[str, str, int, float | None, float]
"""(run_id, name, step, value, ts); NaN is stored as NULL."""
LogRow = tuple[str, int, float, str, str]
"""(run_id, seq, ts, stream, text)."""


@dataclass(slots=True)
class ReportBatch:
    """A validated report as rows for the store, plus what the handler answers from."""

    metric_rows: list[MetricRow]
    log_rows: list[LogRow]
    loss: tuple[int, float] | None
    """(step, value) of the newest loss point in the batch."""
    status: str | None = None
    exit_code: int | None = None
    error: str | None = None
    progress_json: str | None = None
    """{"bytes_done": n, "bytes_total": n}, compact, so an unchanged progress compares equal."""
    stopped: str | None = None
    """Why the pod ended the command at the run's own limit."""
    live_json: str | None = None
    """The rows being drawn now as a compact JSON list; None when the report did not say (unchanged)."""
    metrics_source: str | None = None
    """How the pod read the metrics; None when the report did not say."""
    pod_end_failed: str | None = None
    """The pod could not end itself: what it said."""
    node: int = 0
    """The node that reports (runs of more than one pod)."""

    @classmethod
    def from_report(cls, run_id: str, report: Report) -> ReportBatch:
        """The rows of a report validated by `models.Report`."""
        metric_rows: list[MetricRow] = []
        for m in report.metrics:
            value = float(m.value)
            metric_rows.append((run_id, m.name, m.step, None if math.isnan(value) else value, m.ts))
        log_rows: list[LogRow] = [(run_id, line.seq, line.ts, line.stream, line.text) for line in report.logs]
        progress = report.progress
        return cls(metric_rows, log_rows, _newest_loss(metric_rows), report.status, report.exit_code, report.error,
                   None if progress is None else progress_json(progress.bytes_done, progress.bytes_total),
                   report.stopped, None if report.live is None else live_json(report.live), report.metrics_source,
                   report.pod_end_failed, report.node or 0)


def progress_json(done: int, total: int) -> str:
    return orjson.dumps({"bytes_done": done, "bytes_total": total}).decode()


def live_json(rows: list[str]) -> str:
    return orjson.dumps(rows).decode()


# The shape of `models.Report` for msgspec, whose decoder checks types and limits in C as it parses. It reads
# neither NaN literals nor NaN strings, so those reports take the model's path.
_Int64 = Annotated[int, Meta(ge=0, le=INT64_MAX)]
_Timestamp = Annotated[float, Meta(ge=0, le=MAX_TIMESTAMP)]


class _Point(Struct, forbid_unknown_fields=True, gc=False):
    name: Annotated[str, Meta(min_length=1, max_length=MAX_METRIC_NAME)]
    step: _Int64
    value: float
    ts: _Timestamp


class _Line(Struct, forbid_unknown_fields=True, gc=False):
    seq: _Int64
    ts: _Timestamp
    text: str
    stream: Literal["stdout", "stderr", "system"] = "stdout"


class _Progress(Struct, forbid_unknown_fields=True, gc=False):
    bytes_done: _Int64
    bytes_total: _Int64


class _Report(Struct, forbid_unknown_fields=True, gc=False):
    metrics: Annotated[list[_Point], Meta(max_length=MAX_BATCH_POINTS)] = []
    logs: Annotated[list[_Line], Meta(max_length=MAX_BATCH_LINES)] = []
    status: Literal["downloading", "training", "succeeded", "failed"] | None = None
    exit_code: Annotated[int, Meta(ge=-255, le=255)] | None = None
    error: Annotated[str, Meta(max_length=MAX_REPORT_ERROR)] | None = None
    stopped: Annotated[str, Meta(max_length=MAX_STOP_REASON)] | None = None
    progress: _Progress | None = None
    heartbeat_ts: _Timestamp | None = None
    live: Annotated[list[Annotated[str, Meta(max_length=MAX_LIVE_ROW)]], Meta(max_length=MAX_LIVE_ROWS)] | None = None
    metrics_source: Annotated[str, Meta(max_length=MAX_METRICS_SOURCE)] | None = None
    pod_end_failed: Annotated[str, Meta(max_length=MAX_POD_END_FAILED)] | None = None
    node: Annotated[int, Meta(ge=0, le=255)] | None = None


_decoder = msgspec.json.Decoder(_Report)


def parse_report_json(run_id: str, body: bytes) -> ReportBatch | None:
    """The batch of a report body in the shape pods send, or None when `models.Report` has to decide."""
    try:
        report = _decoder.decode(body)
    except msgspec.DecodeError:
        return None
    metric_rows: list[MetricRow] = [(run_id, p.name, p.step, p.value, p.ts) for p in report.metrics]
    log_rows: list[LogRow] = [
        (run_id, line.seq, line.ts, line.stream,
         line.text if len(line.text) <= MAX_LOG_LINE else line.text[:MAX_LOG_LINE] + TRUNCATION_MARKER)
        for line in report.logs]
    progress = report.progress
    return ReportBatch(metric_rows, log_rows, _newest_loss(metric_rows), report.status, report.exit_code,
                       report.error, None if progress is None else progress_json(progress.bytes_done,
                                                                                 progress.bytes_total),
                       report.stopped, None if report.live is None else live_json(report.live), report.metrics_source,
                       report.pod_end_failed, report.node or 0)


def _newest_loss(rows: list[MetricRow]) -> tuple[int, float] | None:
    """(step, value) of the loss point with the highest step (the last one of them when steps tie)."""
    loss: tuple[int, float] | None = None
    for _, name, step, value, _ in rows:
        if name in TRAIN_LOSS_NAMES and (loss is None or step >= loss[0]):
            loss = (step, math.nan if value is None else value)
    return loss
