"""The store's queries of runs: create, read, change and finish them, a new attempt when a pod is lost, and the
pod's ingest token (cached: every report asks)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite

from ..models import LIVE_STATUSES, Attempt, Run, RunNode, RunStatus
from .engine import Engine, NotFound, _exec, _feed, _one
from .events import _event
from .inserts import _insert_rows
from .logs import SEQ_SPAN
from .metrics import _insert_attempt_metrics
from .rows import _RUN_COLUMNS, _fetch_run, _row_to_run

_UPDATABLE = {
    "status", "status_reason", "pod_id", "gpu_type", "price_per_hour", "started_at", "ended_at",
    "last_heartbeat", "exit_code", "keep_alive_until", "ingest_revoked_at", "gpu_util", "gpu_mem", "pod_port",
    "pod_end_failed",
}


def _revoke_download_tokens(db: sqlite3.Connection, run_id: str, now: float) -> None:
    """The run's download tokens stop working (its run ended, or its pod was lost)."""
    _exec(db, "UPDATE download_tokens SET revoked_at = ? WHERE run_id = ? AND revoked_at IS NULL", (now, run_id))


class RunQueries(Engine):
    """Runs (a part of `Store`)."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        super().__init__(path, writer, reader)
        self._ingest: dict[str, tuple[str, float | None]] = {}

    async def create_run(self, run: Run, ingest_token_hash: str) -> Run:
        """Insert a new run with its first event."""

        def job(db: sqlite3.Connection) -> Run:
            _exec(db, """INSERT INTO runs (id, name, provider, status, spec, dataset_id, created_at,
                         ingest_token_hash, pod_port) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                  (run.id, run.name, run.provider, run.status.value, run.spec.model_dump_json(), run.dataset_id,
                   run.created_at, ingest_token_hash, run.pod_port))
            _event(db, run.id, "created", f"run created on {run.provider}", run.created_at)
            _feed(db, run.id, "run", None, None, run.created_at)
            return run

        return await self._write(job)

    async def get_run(self, run_id: str) -> Run:
        """One run; NotFound when there is none."""
        rows = await self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise NotFound(f"no run {run_id}")
        return _row_to_run(rows[0])

    async def list_runs(self, live_only: bool = False) -> list[Run]:
        """Runs, newest first."""
        where = ""
        if live_only:
            where = "WHERE status IN ({})".format(",".join(f"'{s.value}'" for s in LIVE_STATUSES))
        rows = await self._read(f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY created_at DESC")
        return [_row_to_run(r) for r in rows]

    async def ingest_token_hash(self, run_id: str) -> tuple[str, float | None] | None:
        """The run's ingest token hash and when it was revoked (None when still valid); cached, since every
        pod report asks."""
        if run_id in self._ingest:
            return self._ingest[run_id]
        rows = await self._read("SELECT ingest_token_hash, ingest_revoked_at FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return None
        self._ingest[run_id] = (rows[0][0], rows[0][1])
        return self._ingest[run_id]

    async def update_run(
        self, run_id: str, *, event: tuple[str, str] | None = None, only_if_live: bool = False,
        **fields: Any,
    ) -> Run | None:
        """Change a run's columns (and add an event) in one write.

        With only_if_live, nothing changes when the run has already ended, and None is returned.
        """
        bad = set(fields) - _UPDATABLE
        if bad:
            raise ValueError(f"cannot update {bad}")
        now = time.time()

        def job(db: sqlite3.Connection) -> Run | None:
            current = _fetch_run(db, run_id)
            if only_if_live and not current.status.is_live:
                return None
            values = {k: (v.value if isinstance(v, RunStatus) else v) for k, v in fields.items()}
            if values:
                assignments = ", ".join(f"{k} = ?" for k in values)
                _exec(db, f"UPDATE runs SET {assignments} WHERE id = ?", (*values.values(), run_id))
                _feed(db, run_id, "run", None, None, now)
            if event:
                _event(db, run_id, event[0], event[1], now)
            return _fetch_run(db, run_id)

        return await self._write(job)

    async def finish_run(self, run_id: str, status: RunStatus, reason: str, *, exit_code: int | None = None,
                         keep_alive_until: float | None = None) -> Run | None:
        """Move a live run to a final status, revoke its download tokens (and its ingest token unless a
        keep-alive window is open). None when the run had already ended."""
        now = time.time()

        def job(db: sqlite3.Connection) -> Run | None:
            current = _fetch_run(db, run_id)
            if not current.status.is_live:
                return None
            _exec(db, """UPDATE runs SET status = ?, status_reason = ?, ended_at = ?,
                         exit_code = coalesce(?, exit_code), keep_alive_until = ?, ingest_revoked_at = ?,
                         live = NULL WHERE id = ?""",
                  (status.value, reason, now, exit_code, keep_alive_until,
                   None if keep_alive_until else now, run_id))
            _revoke_download_tokens(db, run_id, now)
            _event(db, run_id, status.value, reason, now)
            _feed(db, run_id, "run", None, None, now)
            return _fetch_run(db, run_id)

        try:
            return await self._write(job)
        finally:
            self._ingest.pop(run_id, None)

    async def begin_attempt(self, run_id: str, lost_pod_id: str, ended: Attempt, ingest_token_hash: str,
                            event: tuple[str, str], boundary: str) -> Run | None:
        """Close the run's current attempt (its pod is lost and already gone) and make the run wait for its next
        pod: the pod's columns cleared, a new ingest token (the lost pod's no longer answers), its download tokens
        revoked, and a log line marking the boundary. None when the run has ended or moved on meanwhile."""
        now = time.time()

        def job(db: sqlite3.Connection) -> Run | None:
            current = _fetch_run(db, run_id)
            if not current.status.is_live or current.pod_id != lost_pod_id:
                return None
            attempts = [a.model_dump(mode="json") for a in [*current.ended_attempts, ended]]
            _exec(db, """UPDATE runs SET attempts = ?, status = ?, pod_id = NULL, gpu_type = NULL,
                         price_per_hour = NULL, started_at = NULL, last_heartbeat = NULL, last_activity = NULL,
                         progress = NULL, live = NULL, last_step = NULL, last_loss = NULL, last_loss_nan = 0,
                         gpu_util = NULL, gpu_mem = NULL, exit_code = NULL, ingest_token_hash = ?,
                         ingest_revoked_at = NULL WHERE id = ?""",
                  (json.dumps(attempts), RunStatus.provisioning.value, ingest_token_hash, run_id))
            _revoke_download_tokens(db, run_id, now)
            seq = len(attempts) * SEQ_SPAN
            _insert_rows(db, run_id, "logs", [(run_id, seq, now, "system", boundary)], now)
            _event(db, run_id, event[0], event[1], now)
            _feed(db, run_id, "run", None, None, now)
            return _fetch_run(db, run_id)

        try:
            return await self._write(job)
        finally:
            self._ingest.pop(run_id, None)

    async def set_ingest_token(self, run_id: str, ingest_token_hash: str) -> bool:
        """A live run's pod token replaced (its next pod gets the new one); False when the run has ended."""

        def job(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE runs SET ingest_token_hash = ?, ingest_revoked_at = NULL WHERE id = ? AND "
                             "status IN ({})".format(",".join(f"'{s.value}'" for s in LIVE_STATUSES)),
                             (ingest_token_hash, run_id))
            try:
                return cur.rowcount > 0
            finally:
                cur.close()

        try:
            return await self._write(job)
        finally:
            self._ingest.pop(run_id, None)

    async def update_nodes(self, run_id: str, changes: dict[int, dict[str, Any]]) -> bool:
        """Merge `changes` (per node rank, its fields) into a run's nodes; one write, a feed row only when
        something changed. True when it did."""
        now = time.time()

        def job(db: sqlite3.Connection) -> bool:
            row = _one(db, "SELECT nodes FROM runs WHERE id = ?", (run_id,))
            if row is None:
                raise NotFound(f"no run {run_id}")
            nodes = {int(n["rank"]): n for n in (json.loads(row[0]) if row[0] else [])}
            changed = False
            for rank, fields in changes.items():
                node = nodes.setdefault(rank, RunNode(rank=rank).model_dump())
                for key, value in fields.items():
                    if node.get(key) != value:
                        node[key] = value
                        changed = True
            if changed:
                text = json.dumps([nodes[k] for k in sorted(nodes)])
                _exec(db, "UPDATE runs SET nodes = ? WHERE id = ?", (text, run_id))
                _feed(db, run_id, "run", None, None, now)
            return changed

        return await self._write(job)

    async def record_gpu_use(self, run_id: str, util: float | None, mem: float | None, step: int,
                             now: float) -> None:
        """GPU use the provider reports for a run's pod: on the run (the runs table) and as the metrics
        `gpu_util` and `gpu_mem` at `step` (seconds since the pod was created)."""
        rows = [(run_id, name, step, value, now) for name, value in (("gpu_util", util), ("gpu_mem", mem))
                if value is not None]

        def job(db: sqlite3.Connection) -> None:
            row = _one(db, "SELECT attempts FROM runs WHERE id = ?", (run_id,))
            attempt = len(json.loads(row[0])) + 1 if row and row[0] else 1
            if attempt > 1:  # the points carry the pod's attempt (their steps go on across attempts)
                _insert_attempt_metrics(db, run_id, attempt, rows, now)
            else:
                _insert_rows(db, run_id, "metrics", rows, now)
            # The run itself goes out to every watcher: only when its figures changed, not every poll.
            cur = db.execute("UPDATE runs SET gpu_util = ?, gpu_mem = ? WHERE id = ? AND "
                             "(gpu_util IS NOT ? OR gpu_mem IS NOT ?)", (util, mem, run_id, util, mem))
            try:
                if cur.rowcount > 0:
                    _feed(db, run_id, "run", None, None, now)
            finally:
                cur.close()

        await self._write(job)

    async def revoke_ingest_token(self, run_id: str) -> None:
        """End a kept-alive run's ingest token (its pod is gone)."""
        now = time.time()
        try:
            await self._write(lambda db: _exec(
                db, "UPDATE runs SET ingest_revoked_at = ?, keep_alive_until = NULL WHERE id = ? "
                    "AND ingest_revoked_at IS NULL", (now, run_id)))
        finally:
            self._ingest.pop(run_id, None)
