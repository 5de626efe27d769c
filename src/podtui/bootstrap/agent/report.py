"""What the agent posts (POST /api/v1/runs/{id}/report; in pull mode fetched from the pod's port): the report's
keys, their JSON types and their limits, once, in standard-library types. The control plane's two readers of a
report, `report_rows` (msgspec, the fast path) and `models.Report` (pydantic), take their limits from here, and
tests/unit/test_report_schema.py holds both, and what the agent really sends, to this schema."""

from __future__ import annotations

import typing

INT64_MAX = 2**63 - 1
MAX_BATCH_POINTS = 5000
MAX_BATCH_LINES = 5000
MAX_METRIC_NAME = 250
MAX_STOP_REASON = 300
MAX_REPORT_ERROR = 64 * 1024
MAX_TIMESTAMP = 1e11
MAX_LIVE_ROWS = 4
MAX_LIVE_ROW = 1000
MAX_METRICS_SOURCE = 300
MAX_POD_END_FAILED = 500
STATUSES = ("downloading", "training", "succeeded", "failed")
"""The statuses a pod reports (the control plane decides the others)."""
STREAMS = ("stdout", "stderr", "system")
"""Where a log line comes from: the command's two streams, or the agent's own notes."""


class Field(typing.NamedTuple):
    """One key of a report: its JSON type ("integer", "number", "string", "array" or "object"), whether it must be
    there, its bounds (a number's least and greatest value, a string's or an array's length, the strings it may be),
    and an array's item or an object's keys (`of`). A "number" may also be the string "NaN", "Infinity" or
    "-Infinity", as JSON has no such numbers (`outbox.json_value`)."""

    type: str
    required: bool = False
    minimum: typing.Optional[float] = None
    maximum: typing.Optional[float] = None
    min_length: typing.Optional[int] = None
    max_length: typing.Optional[int] = None
    choices: typing.Tuple[str, ...] = ()
    of: typing.Any = None


MAX_NODE = 255
"""The highest node rank a report may name (runs of more than one pod)."""

POINT = {
    "name": Field("string", True, min_length=1, max_length=MAX_METRIC_NAME),
    "step": Field("integer", True, 0, INT64_MAX),
    "value": Field("number", True),
    "ts": Field("number", True, 0, MAX_TIMESTAMP),
}
"""One value of one metric at one step."""

LINE = {
    "seq": Field("integer", True, 0, INT64_MAX),
    "ts": Field("number", True, 0, MAX_TIMESTAMP),
    "stream": Field("string", choices=STREAMS),
    "text": Field("string", True),
}
"""One log line (one printed line, a long one shortened: `patterns.shorten`; "stdout" when no stream is given)."""

PROGRESS = {
    "bytes_done": Field("integer", True, 0, INT64_MAX),
    "bytes_total": Field("integer", True, 0, INT64_MAX),
}
"""The dataset's download, from the start script's `##podtui progress` lines."""

REPORT = {
    "metrics": Field("array", max_length=MAX_BATCH_POINTS, of=Field("object", of=POINT)),
    "logs": Field("array", max_length=MAX_BATCH_LINES, of=Field("object", of=LINE)),
    "status": Field("string", choices=STATUSES),
    "exit_code": Field("integer", minimum=-255, maximum=255),
    "error": Field("string", max_length=MAX_REPORT_ERROR),
    "stopped": Field("string", max_length=MAX_STOP_REASON),
    "progress": Field("object", of=PROGRESS),
    "heartbeat_ts": Field("number", minimum=0, maximum=MAX_TIMESTAMP),
    "live": Field("array", max_length=MAX_LIVE_ROWS, of=Field("string", max_length=MAX_LIVE_ROW)),
    "metrics_source": Field("string", max_length=MAX_METRICS_SOURCE),
    "pod_end_failed": Field("string", max_length=MAX_POD_END_FAILED),
    "node": Field("integer", minimum=0, maximum=MAX_NODE),
}
"""A report: every key may be left out (a heartbeat alone is `{"heartbeat_ts": ...}`); no other key is taken."""
