"""The SQLite store's queries: runs, events, pods, datasets, tokens, metrics, logs and the live feed. The engine
(connections, the group-committing writer, checkpoints, migrations) is store/engine.py; the schema store/schema.py.

A metric value of NaN is stored as NULL (SQLite turns a NaN REAL into NULL anyway) and read back as NaN.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ..feed import FeedEntry, LogsAdded, MetricsAdded, RunChanged, RunEventAdded
from ..metric_names import TRAIN_LOSS_NAMES
from ..models import (
    LIVE_STATUSES,
    Attempt,
    Dataset,
    DownloadProgress,
    LaunchSpec,
    LogLine,
    MetricPoint,
    OutputFile,
    Report,
    Run,
    RunEvent,
    RunNode,
    RunStatus,
)
from ..report_rows import ReportBatch
from .engine import Engine, StoreUnavailable, _all, _exec, _one

__all__ = ["DatasetRecord", "FeedItem", "NotFound", "ReportResult", "Store", "StoreUnavailable", "TokenCheck"]

log = logging.getLogger(__name__)
T = TypeVar("T")


_STATUS_RANK = {
    RunStatus.pending: 0,
    RunStatus.provisioning: 1,
    RunStatus.booting: 2,
    RunStatus.downloading: 3,
    RunStatus.training: 4,
}
_RUN_COLUMNS = (
    "id, name, provider, status, status_reason, spec, dataset_id, pod_id, gpu_type, price_per_hour, created_at, "
    "started_at, ended_at, last_heartbeat, exit_code, progress, last_step, last_loss, last_loss_nan, "
    "keep_alive_until, last_activity, gpu_util, gpu_mem, pod_port, metrics_source, live, pod_end_failed, attempts, "
    "data_wait_from, data_wait_until, nodes"
)
SEQ_SPAN = 10**12
"""Log line numbers of attempt N start at (N - 1) x SEQ_SPAN: each new pod's agent counts from 0 again, and a
run's lines stay in order and unique across its attempts."""
_UPDATABLE = {
    "status", "status_reason", "pod_id", "gpu_type", "price_per_hour", "started_at", "ended_at",
    "last_heartbeat", "exit_code", "keep_alive_until", "ingest_revoked_at", "gpu_util", "gpu_mem", "pod_port",
    "pod_end_failed",
}


class NotFound(LookupError):
    """No such row."""


@dataclass
class DatasetRecord:
    """A dataset with what serving it needs: the real root and the files registered under it."""

    dataset: Dataset
    root: str
    manifest: list[dict[str, Any]]


@dataclass
class TokenCheck:
    """The outcome of presenting a download token."""

    ok: bool
    reason: str = ""
    dataset_id: str = ""
    run_id: str = ""


@dataclass
class ReportResult:
    """What a report changed, and the run's status after it."""

    status: RunStatus
    keep_alive_until: float | None
    accepted_metrics: int
    accepted_logs: int
    status_changed: bool


@dataclass
class FeedItem:
    """One entry of the live feed with its id (the SSE id a client resumes from)."""

    id: int
    run_id: str
    entry: FeedEntry


@dataclass(slots=True)
class FeedRow:
    """A feed row whose points or lines were not read (`feed_tail` reads them only for the runs asked)."""

    id: int
    run_id: str
    kind: str


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


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


_DATASET_COLS = "id, name, path, kind, size_bytes, file_count, sha256, created_at, source, revision"


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


def _row_to_dataset(row: Sequence[Any]) -> Dataset:
    rid, name, path, kind, size, count, sha, created, source, revision = row
    return Dataset(id=rid, name=name, path=path, kind=kind, size_bytes=size, file_count=count, sha256=sha,
                   created_at=created, source=source or path, revision=revision)



def _fetch_run(db: sqlite3.Connection, run_id: str) -> Run:
    row = _one(db, f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
    if row is None:
        raise NotFound(f"no run {run_id}")
    return _row_to_run(row)



_INSERT_CHUNKS = (192, 48, 12, 3, 1)
"""Rows per INSERT statement: few distinct statements (each stays in the statement cache), few steps per batch,
and at most 960 parameters (SQLite before 3.32 allowed 999)."""


_COLUMNS = {"metrics": "(run_id, name, step, value, ts)", "logs": "(run_id, seq, ts, stream, text)"}


def _insert_sql(table: str, n: int) -> str:
    return f"INSERT OR IGNORE INTO {table} {_COLUMNS[table]} VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * n)


_INSERT_SQL = {(table, n): _insert_sql(table, n) for table in ("metrics", "logs") for n in _INSERT_CHUNKS}


def _insert_rows(db: sqlite3.Connection, run_id: str, table: str, rows: list[tuple[Any, ...]], now: float) -> int:
    """INSERT OR IGNORE rows (5 columns) and feed the rowid range of the new ones.

    Multi-row statements, not executemany: the sqlite3 module takes the GIL back between the rows of an
    executemany, and the event loop thread holds it for milliseconds at a time, so the writer waited on the GIL
    more than on SQLite. With one writer the new rows' rowids are contiguous, ending at the last insert's."""
    added = 0
    last_rowid = 0
    i = 0
    for n in _INSERT_CHUNKS:
        while len(rows) - i >= n:
            cur = db.execute(_INSERT_SQL[table, n], [value for row in rows[i:i + n] for value in row])
            try:
                if cur.rowcount > 0:
                    added += cur.rowcount
                    last_rowid = cur.lastrowid or 0
            finally:
                cur.close()
            i += n
    if added:
        _feed(db, run_id, table, last_rowid - added + 1, last_rowid, now)
    return added


def _insert_attempt_metrics(db: sqlite3.Connection, run_id: str, attempt: int, rows: list[tuple[Any, ...]],
                            now: float) -> int:
    """A later attempt's points: where it redoes steps (it resumed from an older checkpoint), its values replace
    the earlier attempts' from its first step of each metric on; the new rows carry their attempt."""
    first: dict[str, int] = {}
    for row in rows:
        name, step = row[1], row[2]
        if name not in first or step < first[name]:
            first[name] = step
    for name, step in first.items():
        _exec(db, "DELETE FROM metrics WHERE run_id = ? AND name = ? AND step >= ? AND attempt < ?",
              (run_id, name, step, attempt))
    before = _one(db, "SELECT coalesce(max(rowid), 0) FROM metrics", ())
    added = _insert_rows(db, run_id, "metrics", rows, now)
    if added:
        _exec(db, "UPDATE metrics SET attempt = ? WHERE rowid > ?", (attempt, before[0] if before else 0))
    return added


def _feed(db: sqlite3.Connection, run_id: str, kind: str, lo: int | None, hi: int | None, now: float) -> None:
    _exec(db, "INSERT INTO feed (run_id, kind, lo, hi, ts) VALUES (?, ?, ?, ?, ?)", (run_id, kind, lo, hi, now))


def _event(db: sqlite3.Connection, run_id: str, kind: str, message: str, now: float) -> int:
    eid = _exec(db, "INSERT INTO run_events (run_id, ts, kind, message) VALUES (?, ?, ?, ?)",
                (run_id, now, kind, message))
    _feed(db, run_id, "run_event", eid, eid, now)
    return eid


class Store(Engine):
    """The queries: datasets, runs, events, pods, tokens, reports, metrics, logs and the live feed."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        super().__init__(path, writer, reader)
        self._ingest: dict[str, tuple[str, float | None]] = {}

    # -- datasets -----------------------------------------------------------------------------

    async def save_dataset(self, dataset: Dataset, root: str, manifest: list[dict[str, Any]]) -> Dataset:
        """Insert a dataset, or re-point the same name with the same content (a removed one comes back). Other
        names, with the same content or not, are left alone."""

        def job(db: sqlite3.Connection) -> Dataset:
            _exec(db, """INSERT INTO datasets (id, name, path, root, kind, size_bytes, file_count, sha256,
                         manifest, created_at, source, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                         ON CONFLICT(id) DO UPDATE SET name = excluded.name, path = excluded.path,
                         root = excluded.root, manifest = excluded.manifest, created_at = excluded.created_at,
                         source = excluded.source, revision = excluded.revision, removed_at = NULL""",
                  (dataset.id, dataset.name, dataset.path, root, dataset.kind, dataset.size_bytes,
                   dataset.file_count, dataset.sha256, json.dumps(manifest), dataset.created_at,
                   dataset.source or dataset.path, dataset.revision))
            return dataset

        return await self._write(job)

    async def list_datasets(self) -> list[Dataset]:
        """Datasets, newest first; a name re-registered with new content shows its newest version only; removed
        ones are left out."""
        rows = await self._read(
            f"SELECT {_DATASET_COLS} FROM datasets d WHERE removed_at IS NULL AND created_at = "
            "(SELECT max(created_at) FROM datasets e WHERE e.name = d.name AND e.removed_at IS NULL) "
            "ORDER BY created_at DESC")
        return [_row_to_dataset(r) for r in rows]

    async def find_dataset(self, name_or_id: str) -> DatasetRecord:
        """A dataset by id (removed ones too: a run keeps its dataset), or by name (the newest of that name) or id
        prefix (8+ characters) among those not removed."""
        cols = f"{_DATASET_COLS}, root, manifest"
        width = len(_DATASET_COLS.split(","))
        rows = await self._read(f"SELECT {cols} FROM datasets WHERE id = ?", (name_or_id,))
        if not rows:
            rows = await self._read(f"SELECT {cols} FROM datasets WHERE name = ? AND removed_at IS NULL "
                                    "ORDER BY created_at DESC LIMIT 1", (name_or_id,))
        if not rows and len(name_or_id) >= 8 and all(c in "0123456789abcdef" for c in name_or_id):
            rows = await self._read(f"SELECT {cols} FROM datasets WHERE id LIKE ? AND removed_at IS NULL LIMIT 2",
                                    (name_or_id + "%",))
            if len(rows) > 1:
                raise NotFound(f"dataset id prefix {name_or_id!r} is ambiguous")
        if not rows:
            raise NotFound(f"no dataset named {name_or_id!r}; `podtui datasets` lists them")
        row = rows[0]
        return DatasetRecord(_row_to_dataset(row[:width]), root=row[width], manifest=json.loads(row[width + 1]))

    async def update_dataset_manifest(self, dataset_id: str, manifest: list[dict[str, Any]],
                                      sha256: str | None = None) -> None:
        """Keep what a pod learnt fetching a remote dataset (the sha256s of a first fetch)."""

        def job(db: sqlite3.Connection) -> None:
            _exec(db, "UPDATE datasets SET manifest = ?, sha256 = coalesce(?, sha256) WHERE id = ?",
                  (json.dumps(manifest), sha256, dataset_id))

        await self._write(job)

    async def start_data_wait(self, run_id: str, now: float) -> None:
        """The pod's wait for its data begins (pull mode: the control plane starts uploading its inputs)."""
        await self._write(lambda db: _exec(
            db, "UPDATE runs SET data_wait_from = coalesce(data_wait_from, ?) WHERE id = ?", (now, run_id)))

    async def record_volume_dataset(self, provider: str, volume: str, cache_key: str, dataset_id: str) -> None:
        """A pod found or put a dataset whole on a volume."""
        now = time.time()
        await self._write(lambda db: _exec(
            db, """INSERT INTO volume_datasets (provider, volume, cache_key, dataset_id, at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(provider, volume, cache_key) DO UPDATE SET dataset_id = excluded.dataset_id,
                   at = excluded.at""", (provider, volume, cache_key, dataset_id, now)))

    async def volume_datasets(self) -> list[tuple[str, str, str]]:
        """(provider, volume, dataset name) for every registered dataset known to be on a volume: the one a pod
        put there, and any other name with the same content."""
        rows = await self._read(
            "SELECT DISTINCT v.provider, v.volume, d.name FROM volume_datasets v "
            "JOIN datasets s ON s.id = v.dataset_id JOIN datasets d ON d.id = s.id OR "
            "(d.kind = s.kind AND d.sha256 = s.sha256 AND d.sha256 != '') WHERE d.removed_at IS NULL")
        return [(str(p), str(v), str(n)) for p, v, n in rows]

    async def forget_volume(self, provider: str, volume: str) -> None:
        """A volume was deleted: nothing is cached on it any more."""
        await self._write(lambda db: _exec(db, "DELETE FROM volume_datasets WHERE provider = ? AND volume = ?",
                                           (provider, volume)))

    async def remove_dataset(self, name: str) -> int:
        """Take a name out of the registry (every version of it); runs that used it keep their rows. The files
        are not touched. Raises NotFound for an unknown name; returns how many versions were removed."""

        def job(db: sqlite3.Connection) -> int:
            cur = db.execute("UPDATE datasets SET removed_at = ? WHERE name = ? AND removed_at IS NULL",
                             (time.time(), name))
            count = cur.rowcount
            cur.close()
            if not count:
                raise NotFound(f"no dataset named {name!r}; `podtui datasets` lists them")
            return int(count)

        return await self._write(job)

    # -- runs -------------------------------------------------------------------------------

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
            _exec(db, "UPDATE download_tokens SET revoked_at = ? WHERE run_id = ? AND revoked_at IS NULL",
                  (now, run_id))
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
            _exec(db, "UPDATE download_tokens SET revoked_at = ? WHERE run_id = ? AND revoked_at IS NULL",
                  (now, run_id))
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

    async def first_nonfinite_loss(self, run_id: str) -> tuple[int, float] | None:
        """(step, value) of a run's first NaN or infinite training loss (NaN is stored as NULL), or None."""
        names = ",".join("?" * len(TRAIN_LOSS_NAMES))
        rows = await self._read(
            f"SELECT step, value FROM metrics WHERE run_id = ? AND name IN ({names}) AND "
            "(value IS NULL OR value > 1.7e308 OR value < -1.7e308) ORDER BY step LIMIT 1",
            (run_id, *TRAIN_LOSS_NAMES))
        return (int(rows[0][0]), _none_to_nan(rows[0][1])) if rows else None

    async def has_event(self, run_id: str, kind: str, since: float | None = None) -> bool:
        """Whether a run has an event of this kind (e.g. a budget warning already given), at `since` or later."""
        rows = await self._read("SELECT 1 FROM run_events WHERE run_id = ? AND kind = ? AND ts >= ? LIMIT 1",
                                (run_id, kind, since or 0.0))
        return bool(rows)

    async def add_event(self, run_id: str, kind: str, message: str) -> int:
        """Record something that happened to a run."""
        now = time.time()
        return await self._write(lambda db: _event(db, run_id, kind, message, now))

    async def list_events(self, run_id: str, after_id: int = 0, limit: int = 1000) -> list[RunEvent]:
        """A run's events, oldest first."""
        rows = await self._read(
            "SELECT id, run_id, ts, kind, message FROM run_events WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
            (run_id, after_id, limit))
        return [RunEvent(id=r[0], run_id=r[1], ts=r[2], kind=r[3], message=r[4]) for r in rows]

    # -- pods -------------------------------------------------------------------------------

    async def record_pod(self, provider: str, pod_id: str, run_id: str, gpu_type: str | None,
                         price_per_hour: float | None, status: str) -> None:
        """Remember a pod the moment it exists, so no restart can forget it."""
        now = time.time()
        await self._write(lambda db: _exec(
            db, """INSERT INTO pods (provider, pod_id, run_id, gpu_type, price_per_hour, status, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(provider, pod_id) DO UPDATE SET status = excluded.status""",
            (provider, pod_id, run_id, gpu_type, price_per_hour, status, now)))

    async def set_pod_status(self, provider: str, pod_id: str, status: str) -> None:
        """Update a pod's last known status (`gone` once terminated)."""
        now = time.time()
        await self._write(lambda db: _exec(
            db, "UPDATE pods SET status = ?, ended_at = CASE WHEN ? = 'gone' THEN ? ELSE ended_at END "
                "WHERE provider = ? AND pod_id = ?", (status, status, now, provider, pod_id)))

    async def pods_not_gone(self) -> list[tuple[str, str, str]]:
        """(provider, pod id, run id) of every pod not known to be gone."""
        rows = await self._read("SELECT provider, pod_id, run_id FROM pods WHERE status != 'gone'")
        return [(r[0], r[1], r[2]) for r in rows]

    async def known_pod_ids(self, provider: str) -> set[str]:
        """Every pod id this store has ever recorded for a provider."""
        rows = await self._read("SELECT pod_id FROM pods WHERE provider = ?", (provider,))
        return {r[0] for r in rows}

    # -- download tokens --------------------------------------------------------------------

    async def add_download_token(self, token_hash: str, dataset_id: str, run_id: str, expires_at: float) -> None:
        """Store a new download token's hash (never the token)."""
        now = time.time()
        await self._write(lambda db: _exec(
            db, "INSERT INTO download_tokens (hash, dataset_id, run_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (token_hash, dataset_id, run_id, now, expires_at)))

    async def use_download_token(self, token_hash: str, now: float) -> TokenCheck:
        """Check a download token and count the use; first use is recorded."""

        def job(db: sqlite3.Connection) -> TokenCheck:
            row = _one(db, "SELECT dataset_id, run_id, expires_at, revoked_at FROM download_tokens WHERE hash = ?",
                       (token_hash,))
            if row is None:
                return TokenCheck(False, "unknown")
            dataset_id, run_id, expires_at, revoked_at = row
            if revoked_at is not None:
                return TokenCheck(False, "revoked", dataset_id, run_id)
            if expires_at <= now:
                return TokenCheck(False, "expired", dataset_id, run_id)
            _exec(db, "UPDATE download_tokens SET uses = uses + 1, first_used_at = coalesce(first_used_at, ?) "
                      "WHERE hash = ?", (now, token_hash))
            return TokenCheck(True, "", dataset_id, run_id)

        return await self._write(job)

    async def download_token_stats(self, run_id: str) -> list[dict[str, Any]]:
        """Uses, first use, expiry and revocation of a run's download tokens (no hashes)."""
        rows = await self._read(
            "SELECT dataset_id, created_at, expires_at, first_used_at, uses, revoked_at FROM download_tokens "
            "WHERE run_id = ? ORDER BY created_at", (run_id,))
        keys = ("dataset_id", "created_at", "expires_at", "first_used_at", "uses", "revoked_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def delete_expired_tokens(self, now: float) -> int:
        """Delete download tokens past their expiry; returns how many."""

        def job(db: sqlite3.Connection) -> int:
            cur = db.execute("DELETE FROM download_tokens WHERE expires_at <= ?", (now,))
            try:
                return cur.rowcount
            finally:
                cur.close()

        return await self._write(job)

    # -- pod reports ------------------------------------------------------------------------

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

    # -- outputs (issue 13) -------------------------------------------------------------------

    async def output_files(self, run_id: str) -> list[OutputFile]:
        """A run's output files (received bytes are filled in by the caller from the partial files)."""
        rows = await self._read("SELECT path, size, sha256, mtime, home_at, moving_size FROM outputs "
                                "WHERE run_id = ? ORDER BY path", (run_id,))
        return [OutputFile(path=r[0], size=r[1], sha256=r[2], mtime=r[3], home_at=r[4], moving_size=r[5])
                for r in rows]

    async def output_moving(self, run_id: str, path: str, size: int, mtime: float) -> tuple[int | None, float | None]:
        """Record a version of a file on its way; returns the (size, mtime) that was moving before, if any."""
        now = time.time()

        def job(db: sqlite3.Connection) -> tuple[int | None, float | None]:
            row = _one(db, "SELECT moving_size, moving_mtime FROM outputs WHERE run_id = ? AND path = ?",
                       (run_id, path))
            _exec(db, """INSERT INTO outputs (run_id, path, moving_size, moving_mtime, updated_at)
                         VALUES (?, ?, ?, ?, ?) ON CONFLICT(run_id, path) DO UPDATE SET
                         moving_size = excluded.moving_size, moving_mtime = excluded.moving_mtime,
                         updated_at = excluded.updated_at""", (run_id, path, size, mtime, now))
            return (row[0], row[1]) if row else (None, None)

        return await self._write(job)

    async def output_home(self, run_id: str, path: str, size: int, mtime: float, sha256: str) -> None:
        """A file arrived whole and its sha256 matched: it is home (the version moving is done)."""
        now = time.time()
        await self._write(lambda db: _exec(
            db, """INSERT INTO outputs (run_id, path, size, sha256, mtime, home_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, path) DO UPDATE SET size = excluded.size,
                   sha256 = excluded.sha256, mtime = excluded.mtime, home_at = excluded.home_at,
                   moving_size = NULL, moving_mtime = NULL, updated_at = excluded.updated_at""",
            (run_id, path, size, sha256, mtime, now, now)))

    async def output_not_moving(self, run_id: str, path: str) -> None:
        """The version that was moving will not arrive (refused, or sent again from the start later)."""
        now = time.time()

        def job(db: sqlite3.Connection) -> None:
            _exec(db, "UPDATE outputs SET moving_size = NULL, moving_mtime = NULL, updated_at = ? "
                      "WHERE run_id = ? AND path = ?", (now, run_id, path))
            _exec(db, "DELETE FROM outputs WHERE run_id = ? AND path = ? AND size IS NULL", (run_id, path))

        await self._write(job)

    async def output_sync(self, run_id: str) -> tuple[float | None, float | None]:
        """(last sync completed, final sync completed) of a run. (Migration 6's requested_at column is unused: a
        push pod's "sync now" is held in memory, `Outputs.asked`, until its next report.)"""
        rows = await self._read("SELECT last_sync_at, final_at FROM output_syncs WHERE run_id = ?", (run_id,))
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    async def set_output_sync(self, run_id: str, *, synced: bool = False, final: bool = False) -> None:
        """A sync completed (final: the one after the command ended)."""
        now = time.time()

        def job(db: sqlite3.Connection) -> None:
            _exec(db, "INSERT OR IGNORE INTO output_syncs (run_id) VALUES (?)", (run_id,))
            if synced:
                _exec(db, "UPDATE output_syncs SET last_sync_at = ? WHERE run_id = ?", (now, run_id))
            if final:
                _exec(db, "UPDATE output_syncs SET final_at = ? WHERE run_id = ?", (now, run_id))
            _feed(db, run_id, "run", None, None, now)

        await self._write(job)

    # -- reading metrics and logs -------------------------------------------------------------

    async def metric_rows(self, run_id: str, name: str | None = None,
                          after_step: int | None = None) -> dict[str, list[tuple[int, float, float, int]]]:
        """A run's metrics as {name: [(step, value, ts, attempt), ...]} ordered by step."""
        sql = "SELECT name, step, value, ts, attempt FROM metrics WHERE run_id = ?"
        params: list[Any] = [run_id]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        if after_step is not None:
            sql += " AND step > ?"
            params.append(after_step)
        sql += " ORDER BY name, step"
        out: dict[str, list[tuple[int, float, float, int]]] = {}
        for n, step, value, ts, attempt in await self._read(sql, params):
            out.setdefault(n, []).append((step, _none_to_nan(value), ts, attempt))
        return out

    async def log_lines(self, run_id: str, after_seq: int = -1, limit: int = 1000, tail: bool = False,
                        before_seq: int | None = None) -> list[LogLine]:
        """A run's log lines with after_seq < seq (< before_seq), oldest first; with tail, the last `limit` of
        them, else the first."""
        bound = "" if before_seq is None else " AND seq < ?"
        params: tuple[Any, ...] = (run_id, after_seq) + (() if before_seq is None else (before_seq,)) + (limit,)
        if tail:
            rows = await self._read(
                f"SELECT seq, ts, stream, text FROM (SELECT * FROM logs WHERE run_id = ? AND seq > ?{bound} "
                "ORDER BY seq DESC LIMIT ?) ORDER BY seq", params)
        else:
            rows = await self._read(
                f"SELECT seq, ts, stream, text FROM logs WHERE run_id = ? AND seq > ?{bound} ORDER BY seq LIMIT ?",
                params)
        return [LogLine(seq=r[0], ts=r[1], stream=r[2], text=r[3]) for r in rows]

    # -- the live feed ------------------------------------------------------------------------

    async def last_feed_id(self) -> int:
        """The newest feed entry's id (0 when empty)."""
        rows = await self._read("SELECT coalesce(max(id), 0) FROM feed")
        return int(rows[0][0])

    async def feed_after(self, after_id: int, limit: int = 200, run_id: str | None = None,
                         full: frozenset[str] | None = None) -> list[FeedItem]:
        """Feed entries after an id, built from their rows (runs, events, metrics, log lines): of one run, or with
        `full`, metrics and log lines of those runs only (run changes and events of all)."""
        sql = "SELECT id, run_id, kind, lo, hi FROM feed WHERE id > ?"
        params: list[Any] = [after_id]
        if run_id:
            sql += " AND run_id = ?"
            params.append(run_id)
        if full is not None:
            sql += f" AND (kind IN ('run', 'run_event') OR run_id IN ({', '.join('?' * len(full))}))"
            params.extend(sorted(full))
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        try:
            # One hop to the reader's thread for the batch and every row it names: a hop per entry (a run change
            # each report) cost more than the reads, times every watcher.
            rows, runs, events, ranges = await self._r._execute(_read_feed, self._r._conn, sql, params)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"the store cannot be read: {exc}") from exc
        return [item for item in _items(rows, runs, events, ranges) if isinstance(item, FeedItem)]

    async def feed_tail(self, after_id: int, limit: int,
                        full: frozenset[str] | None) -> tuple[list[FeedItem | FeedRow], int, bool]:
        """Every feed entry after an id, for a cache many streams share: run changes and events built, and metrics
        and log lines built for the runs in `full` (every run when None), the others as bare `FeedRow`s; the id of
        the last row read (`after_id` when none); and whether there may be more (`limit` rows came)."""
        sql = "SELECT id, run_id, kind, lo, hi FROM feed WHERE id > ? ORDER BY id LIMIT ?"
        try:
            rows, runs, events, ranges = await self._r._execute(_read_feed, self._r._conn, sql, [after_id, limit],
                                                                full)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"the store cannot be read: {exc}") from exc
        return _items(rows, runs, events, ranges), (rows[-1][0] if rows else after_id), len(rows) == limit


def _items(rows: list[Any], runs: dict[str, Any], events: dict[int, Any],
           ranges: dict[int, list[Any]]) -> list[FeedItem | FeedRow]:
    """Feed rows as entries, a bare `FeedRow` where their points or lines were not read. Every run change of a run
    carries its row as it is now, so within a batch only the last one goes out."""
    items: list[FeedItem | FeedRow] = []
    runs_seen: dict[str, Run] = {}
    last_change = {rid: fid for fid, rid, kind, _, _ in rows if kind == "run"}
    for fid, rid, kind, lo, _ in rows:
        if kind == "run" and last_change[rid] != fid:
            continue
        if kind in ("metrics", "logs") and fid not in ranges:
            items.append(FeedRow(fid, rid, kind))
            continue
        entry = _entry(kind, rid, fid, lo, runs, events, ranges, runs_seen)
        if entry is not None:
            items.append(FeedItem(fid, rid, entry))
    return items


def _read_feed(db: sqlite3.Connection, sql: str, params: list[Any], full: frozenset[str] | None = None) -> tuple[
        list[Any], dict[str, Any], dict[int, Any], dict[int, list[Any]]]:
    """Feed rows and the rows they name: runs by id, run events by id, metrics and log lines by feed id (of the
    runs in `full` only, when given)."""
    rows = _all(db, sql, params)
    run_ids = sorted({rid for _, rid, kind, _, _ in rows if kind == "run"})
    runs = {}
    if run_ids:
        runs = {r[0]: r for r in _all(
            db, f"SELECT {_RUN_COLUMNS} FROM runs WHERE id IN ({', '.join('?' * len(run_ids))})", run_ids)}
    event_ids = [lo for _, _, kind, lo, _ in rows if kind == "run_event"]
    events = {}
    if event_ids:
        events = {r[0]: r for r in _all(
            db, f"SELECT id, run_id, ts, kind, message FROM run_events WHERE id IN ({', '.join('?' * len(event_ids))})",
            event_ids)}
    ranges: dict[int, list[Any]] = {}
    for fid, rid, kind, lo, hi in rows:
        if full is not None and rid not in full:
            continue
        if kind == "metrics":
            ranges[fid] = _all(db, "SELECT name, step, value, ts FROM metrics WHERE rowid BETWEEN ? AND ? "
                                   "ORDER BY rowid", (lo, hi))
        elif kind == "logs":
            ranges[fid] = _all(db, "SELECT seq, ts, stream, text FROM logs WHERE rowid BETWEEN ? AND ? "
                                   "ORDER BY rowid", (lo, hi))
    return rows, runs, events, ranges


def _entry(kind: str, run_id: str, fid: int, lo: int | None, runs: dict[str, Any], events: dict[int, Any],
           ranges: dict[int, list[Any]], runs_seen: dict[str, Run]) -> FeedEntry | None:
    """One feed row as its typed entry (None when its rows are gone). Rows come from this store, already checked
    on the way in: the models are built without validating them again."""
    if kind == "run":
        if run_id not in runs_seen:
            if run_id not in runs:
                raise NotFound(f"no run {run_id}")
            runs_seen[run_id] = _row_to_run(runs[run_id])
        return RunChanged(run=runs_seen[run_id])
    if kind == "run_event":
        row = events.get(lo) if lo is not None else None
        if row is None:
            return None
        return RunEventAdded(event=RunEvent(id=row[0], run_id=row[1], ts=row[2], kind=row[3], message=row[4]))
    if kind == "metrics":
        points = [MetricPoint.model_construct(name=r[0], step=r[1], value=_none_to_nan(r[2]), ts=r[3])
                  for r in ranges[fid]]
        return MetricsAdded.model_construct(run_id=run_id, points=points)
    if kind == "logs":
        lines = [LogLine.model_construct(seq=r[0], ts=r[1], stream=r[2], text=r[3]) for r in ranges[fid]]
        return LogsAdded.model_construct(run_id=run_id, lines=lines)
    return None
