"""The models' limits: the pod report's (defined once, with the agent that sends it: bootstrap/agent/report.py),
a log line's and a request body's, a duration's and a run's nodes."""

from __future__ import annotations

from ..bootstrap.agent.report import (  # the report's limits, defined once, with the agent that sends it
    INT64_MAX,
    MAX_BATCH_LINES,
    MAX_BATCH_POINTS,
    MAX_LIVE_ROW,
    MAX_LIVE_ROWS,
    MAX_METRIC_NAME,
    MAX_METRICS_SOURCE,
    MAX_POD_END_FAILED,
    MAX_REPORT_ERROR,
    MAX_STOP_REASON,
    MAX_TIMESTAMP,
)

__all__ = [
    "INT64_MAX", "MAX_BATCH_LINES", "MAX_BATCH_POINTS", "MAX_DURATION_S", "MAX_LIVE_ROW", "MAX_LIVE_ROWS",
    "MAX_LOG_LINE", "MAX_METRICS_SOURCE", "MAX_METRIC_NAME", "MAX_NODES", "MAX_POD_END_FAILED", "MAX_REPORT_BYTES",
    "MAX_REPORT_ERROR", "MAX_STOP_REASON", "MAX_TIMESTAMP", "TRUNCATION_MARKER",
]

MAX_LOG_LINE = 16 * 1024
TRUNCATION_MARKER = " …[truncated by podtui: line over 16 KiB]"
MAX_REPORT_BYTES = 1024 * 1024

MAX_DURATION_S = 30 * 86400

MAX_NODES = 64
