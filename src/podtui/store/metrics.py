"""The store's queries of metrics: a later attempt's points replacing the earlier attempts' from its first step
on, and a run's series read back (NaN is stored as NULL)."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..metric_names import TRAIN_LOSS_NAMES
from .engine import Engine, _exec, _one
from .inserts import _insert_rows
from .rows import _none_to_nan


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


class MetricQueries(Engine):
    """Metrics (a part of `Store`)."""

    async def first_nonfinite_loss(self, run_id: str) -> tuple[int, float] | None:
        """(step, value) of a run's first NaN or infinite training loss (NaN is stored as NULL), or None."""
        names = ",".join("?" * len(TRAIN_LOSS_NAMES))
        rows = await self._read(
            f"SELECT step, value FROM metrics WHERE run_id = ? AND name IN ({names}) AND "
            "(value IS NULL OR value > 1.7e308 OR value < -1.7e308) ORDER BY step LIMIT 1",
            (run_id, *TRAIN_LOSS_NAMES))
        return (int(rows[0][0]), _none_to_nan(rows[0][1])) if rows else None

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
