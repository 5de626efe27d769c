"""A run's row in the store and the model it becomes."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..models import Attempt, DownloadProgress, LaunchSpec, Run, RunNode, RunStatus
from .engine import NotFound, _one

_RUN_COLUMNS = (
    "id, name, provider, status, status_reason, spec, dataset_id, pod_id, gpu_type, price_per_hour, created_at, "
    "started_at, ended_at, last_heartbeat, exit_code, progress, last_step, last_loss, last_loss_nan, "
    "keep_alive_until, last_activity, gpu_util, gpu_mem, pod_port, metrics_source, live, pod_end_failed, attempts, "
    "data_wait_from, data_wait_until, nodes"
)


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _row_to_run(row: Sequence[Any]) -> Run:
    (rid, name, provider, status, reason, spec, dataset_id, pod_id, gpu_type, price, created, started, ended,
     heartbeat, exit_code, progress, last_step, last_loss, last_loss_nan, keep_alive_until, last_activity,
     gpu_util, gpu_mem, pod_port, metrics_source, live, pod_end_failed, attempts, data_wait_from,
     data_wait_until, nodes) = row
    loss = math.nan if last_loss_nan else last_loss
    return Run(
        id=rid, name=name, provider=provider, status=RunStatus(status), status_reason=reason,
        spec=LaunchSpec.model_validate_json(spec), dataset_id=dataset_id, pod_id=pod_id, gpu_type=gpu_type,
        price_per_hour=price, created_at=created, started_at=started, ended_at=ended, last_heartbeat=heartbeat,
        exit_code=exit_code, progress=DownloadProgress.model_validate_json(progress) if progress else None,
        last_step=last_step, last_loss=loss, keep_alive_until=keep_alive_until, last_activity=last_activity,
        gpu_util=gpu_util, gpu_mem=gpu_mem, pod_port=pod_port, metrics_source=metrics_source,
        live=json.loads(live) if live else [], pod_end_failed=pod_end_failed,
        ended_attempts=[Attempt.model_validate(a) for a in json.loads(attempts)] if attempts else [],
        data_wait_from=data_wait_from, data_wait_until=data_wait_until,
        nodes=[RunNode.model_validate(n) for n in json.loads(nodes)] if nodes else [],
    )


def _fetch_run(db: sqlite3.Connection, run_id: str) -> Run:
    row = _one(db, f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
    if row is None:
        raise NotFound(f"no run {run_id}")
    return _row_to_run(row)
