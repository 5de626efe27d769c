"""Pydantic models shared by the store, the control plane, the client, the CLI and the TUI, one module per domain:
limits, spec (the launch spec), run (a run and its events), report (what a pod reports), api (the pods' and offers'
bodies, the answer to a report), pages (what the API answers for reading a run), datasets (and volumes), base (the
common base and value types). Every name is importable from here.

The validation limits of the pod report live here (models/limits.py), not in handlers, so every route and the
OpenAPI description agree on them (its keys' limits come from the agent's report schema, bootstrap/agent/report.py).
Wording the CLI and the TUI show is in podtui/wording.py, the CLI's and the screens' own next to them.
"""

from __future__ import annotations

from ..bootstrap.agent.nodes import NODE_SEQ_STRIDE as NODE_SEQ_STRIDE  # the agent numbers each node's lines
from ..bootstrap.agent.nodes import node_of_seq as node_of_seq
from ..wording import (  # the wording's home is podtui/wording.py; importable here as before
    POD_END_FAILED_LABEL,
    spec_problems,
)
from .api import GpuOffer, OrphanPod, PodLogLine, PodLogs, ReportReply
from .base import (
    Int64,
    MetricValue,
    ReportedValue,
    Timestamp,
    _Model,
    json_number,
)
from .datasets import Dataset, DatasetCreate, DatasetPush, Volume, VolumeCreate
from .limits import (
    INT64_MAX,
    MAX_BATCH_LINES,
    MAX_BATCH_POINTS,
    MAX_DURATION_S,
    MAX_LIVE_ROW,
    MAX_LIVE_ROWS,
    MAX_LOG_LINE,
    MAX_METRIC_NAME,
    MAX_METRICS_SOURCE,
    MAX_NODES,
    MAX_POD_END_FAILED,
    MAX_REPORT_BYTES,
    MAX_REPORT_ERROR,
    MAX_STOP_REASON,
    MAX_TIMESTAMP,
    TRUNCATION_MARKER,
)
from .pages import (
    DoctorCheck,
    ErrorBody,
    ErrorDetail,
    Health,
    LogsPage,
    MetricSeries,
    MetricsPage,
    OutputFile,
    OutputsPage,
    OutputsSummary,
)
from .report import POD_REPORTABLE, DownloadProgress, LogLine, MetricPoint, Report
from .run import LIVE_STATUSES, Attempt, Run, RunEvent, RunNode, RunStatus
from .spec import DEFAULT_IMAGE, Duration, EnvName, EnvValue, LaunchSpec, cuda_of_image, parse_duration
