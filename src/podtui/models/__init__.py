"""Pydantic models shared by the store, the control plane, the client, the CLI and the TUI.

The validation limits of the pod report live here, not in handlers, so every route and the OpenAPI
description agree on them (its keys' limits come from the agent's report schema, bootstrap/agent/report.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    WithJsonSchema,
    computed_field,
    field_validator,
)

from ..bootstrap.agent.nodes import NODE_SEQ_STRIDE as NODE_SEQ_STRIDE  # the agent numbers each node's lines
from ..bootstrap.agent.nodes import node_of_seq as node_of_seq
from ..wording import (  # its wording is the CLI's and the launch form's; importable here as before
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
