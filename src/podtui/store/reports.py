"""The store's query of a pod's report: its new metrics and log lines, heartbeat, progress and a forward status
change, in one write."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..models import Report, RunStatus
from ..report_rows import ReportBatch
from .engine import Engine, NotFound, _exec, _feed, _one
from .events import _event
from .inserts import _insert_rows
from .logs import SEQ_SPAN
from .metrics import _insert_attempt_metrics

_STATUS_RANK = {
    RunStatus.pending: 0,
    RunStatus.provisioning: 1,
    RunStatus.booting: 2,
    RunStatus.downloading: 3,
    RunStatus.training: 4,
}


@dataclass
class ReportResult:
    """What a report changed, and the run's status after it."""

    status: RunStatus
    keep_alive_until: float | None
    accepted_metrics: int
    accepted_logs: int
    status_changed: bool


def _data_wait(db: sqlite3.Connection, run_id: str, new_status: RunStatus, now: float) -> dict[str, float]:
    """The data wait's ends as a pod's status moves on: it starts downloading, then starts training (a pod
    that reports training first waited for nothing)."""
    row = _one(db, "SELECT data_wait_from FROM runs WHERE id = ?", (run_id,))
    started = row is not None and row[0] is not None  # pull mode: from the upload's start (start_data_wait)
    if new_status == RunStatus.downloading:
        return {} if started else {"data_wait_from": now}
    if new_status == RunStatus.training:
        return {"data_wait_until": now} if started else {"data_wait_from": now, "data_wait_until": now}
    return {}


class ReportQueries(Engine):
    """Pod reports (a part of `Store`)."""

    async def apply_report(self, run_id: str, report: Report | ReportBatch, now: float) -> ReportResult:
        """Store a pod's report: new metrics and log lines (resends change nothing), heartbeat, progress,
        and a forward status change while the run is live."""
        batch = report if isinstance(report, ReportBatch) else ReportBatch.from_report(run_id, report)
        metric_rows, log_rows, loss, progress = batch.metric_rows, batch.log_rows, batch.loss, batch.progress_json
        new_status = RunStatus(batch.status) if batch.status in ("downloading", "training") else None

        def job(db: sqlite3.Connection) -> ReportResult:
            row = _one(db, "SELECT status, progress, last_step, keep_alive_until, metrics_source, live, attempts "
                           "FROM runs WHERE id = ?", (run_id,))
            if row is None:
                raise NotFound(f"no run {run_id}")
            status, old_progress, last_step, keep_alive_until = RunStatus(row[0]), row[1], row[2], row[3]
            old_source, old_live = row[4], row[5] or "[]"
            attempt = len(json.loads(row[6])) + 1 if row[6] else 1
            if attempt > 1:
                accepted_metrics = _insert_attempt_metrics(db, run_id, attempt, metric_rows, now)
                base = (attempt - 1) * SEQ_SPAN + 1
                accepted_logs = _insert_rows(db, run_id, "logs", [(r[0], r[1] + base, *r[2:]) for r in log_rows],
                                             now)
            else:
                accepted_metrics = _insert_rows(db, run_id, "metrics", metric_rows, now)
                accepted_logs = _insert_rows(db, run_id, "logs", log_rows, now)
            sets: dict[str, Any] = {"last_heartbeat": now}
            if accepted_metrics or accepted_logs:
                sets["last_activity"] = now
            changed = False
            if status.is_live:
                if progress is not None and progress != old_progress:
                    sets["progress"] = progress
                    changed = True
                if loss is not None and (last_step is None or loss[0] >= last_step):
                    sets["last_step"] = loss[0]
                    sets["last_loss"] = None if math.isnan(loss[1]) else loss[1]
                    sets["last_loss_nan"] = int(math.isnan(loss[1]))
                    changed = True
                if new_status is not None and _STATUS_RANK[new_status] > _STATUS_RANK[status]:
                    sets.update(_data_wait(db, run_id, new_status, now))
                    sets["status"] = new_status.value
                    _event(db, run_id, new_status.value, f"pod reports {new_status.value}", now)
                    status = new_status
                    changed = True
                if batch.exit_code is not None:
                    sets["exit_code"] = batch.exit_code
                if batch.live_json is not None and batch.live_json != old_live:
                    sets["live"] = batch.live_json
                    sets["last_activity"] = now  # a progress bar that moves is activity (the stall guardrail)
                    changed = True
            if batch.metrics_source is not None and batch.metrics_source != old_source:
                sets["metrics_source"] = batch.metrics_source
                changed = True
            assignments = ", ".join(f"{k} = ?" for k in sets)
            _exec(db, f"UPDATE runs SET {assignments} WHERE id = ?", (*sets.values(), run_id))
            if changed:
                _feed(db, run_id, "run", None, None, now)
            return ReportResult(status, keep_alive_until, accepted_metrics, accepted_logs, changed)

        return await self._write(job)
