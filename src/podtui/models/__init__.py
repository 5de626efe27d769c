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
from ..stored_runs import POD_END_FAILED_LABEL
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


def node_line(node: RunNode) -> str:
    """One node of a run as the run detail shows it."""
    parts = [f"node {node.rank}", node.pod_id or "(no pod yet)", node.status]
    if node.gpu_util is not None:
        parts.append(f"GPU {node.gpu_util:.0f}%" + (f" (memory {node.gpu_mem:.0f}%)" if node.gpu_mem is not None
                                                     else ""))
    if node.price_per_hour is not None:
        parts.append(f"${node.price_per_hour:.2f}/h")
    if node.spent_usd:
        parts.append(f"${node.spent_usd:.2f} spent")
    return "  ".join(parts)


_SPEC_PATTERNS = {
    "name": "letters, digits, `.`, `_` and `-`, starting with a letter or digit",
    "image": "an image reference with no spaces, like runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
    "min_cuda_version": "a version like 12.8",
    "workdir": "an absolute path",
    "provider": "local or runpod",
    "env": "names of letters, digits and _ (not starting with a digit)",
}
"""What a LaunchSpec field's pattern asks for, in words."""
_DURATION_FIELDS = {"max_runtime_s", "keep_alive_s", "sync_outputs_s", "min_gpu_util_s"}


def _plain(number: Any) -> str:
    """0 and 100000, not 0.0 and 100000.0."""
    return f"{number:g}" if isinstance(number, float) else str(number)


def spec_problems(exc: ValidationError, name_of: Callable[[str], str]) -> str:
    """A LaunchSpec's problems as a person reads them, each named by `name_of(field)` (a CLI option, a form's
    label): in words, where pydantic shows a regular expression, or a limit in seconds for a duration typed in
    days."""
    problems = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        kind, ctx = err["type"], err.get("ctx") or {}
        if kind == "string_pattern_mismatch":
            said = f"must be {_SPEC_PATTERNS.get(field, 'plain text without control characters')}"
        elif kind == "greater_than_equal":
            said = f"must be at least {_plain(ctx.get('ge'))}"
        elif kind == "greater_than":
            said = f"must be more than {_plain(ctx.get('gt'))}"
        elif kind == "less_than_equal" and field in _DURATION_FIELDS:
            said = f"must be at most {MAX_DURATION_S // 86400} days"
        elif kind == "less_than_equal":
            said = f"must be at most {_plain(ctx.get('le'))}"
        elif kind == "string_too_short":
            said = "must not be empty" if ctx.get("min_length") == 1 else \
                f"must be at least {ctx.get('min_length')} characters"
        elif kind == "string_too_long":
            said = f"must be at most {ctx.get('max_length')} characters"
        else:
            said = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{name_of(field)}: {said}")
    return "; ".join(dict.fromkeys(problems))


