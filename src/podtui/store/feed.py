"""The store's live feed: what changed, in order, for the TUI's subscription (resumable by id)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from ..feed import FeedEntry, LogsAdded, MetricsAdded, RunChanged, RunEventAdded
from ..models import LogLine, MetricPoint, Run, RunEvent
from .engine import Engine, NotFound, _all
from .rows import _RUN_COLUMNS, _none_to_nan, _row_to_run


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


class FeedQueries(Engine):
    """The live feed (a part of `Store`)."""

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
        # One hop to the reader's thread for the batch and every row it names: a hop per entry (a run change
        # each report) cost more than the reads, times every watcher.
        rows, runs, events, ranges = await self._read_with(_read_feed, sql, params)
        return [item for item in _items(rows, runs, events, ranges) if isinstance(item, FeedItem)]

    async def feed_tail(self, after_id: int, limit: int,
                        full: frozenset[str] | None) -> tuple[list[FeedItem | FeedRow], int, bool]:
        """Every feed entry after an id, for a cache many streams share: run changes and events built, and metrics
        and log lines built for the runs in `full` (every run when None), the others as bare `FeedRow`s; the id of
        the last row read (`after_id` when none); and whether there may be more (`limit` rows came)."""
        sql = "SELECT id, run_id, kind, lo, hi FROM feed WHERE id > ? ORDER BY id LIMIT ?"
        rows, runs, events, ranges = await self._read_with(_read_feed, sql, [after_id, limit], full)
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
