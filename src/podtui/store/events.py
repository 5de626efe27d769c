"""The store's queries of run events: what happened to a run (a launch attempt, a status change, a guardrail, an
error), each with a feed row."""

from __future__ import annotations

import sqlite3
import time

from ..models import RunEvent
from .engine import Engine, _exec, _feed


def _event(db: sqlite3.Connection, run_id: str, kind: str, message: str, now: float) -> int:
    eid = _exec(db, "INSERT INTO run_events (run_id, ts, kind, message) VALUES (?, ?, ?, ?)",
                (run_id, now, kind, message))
    _feed(db, run_id, "run_event", eid, eid, now)
    return eid


class EventQueries(Engine):
    """Run events (a part of `Store`)."""

    async def has_event(self, run_id: str, kind: str, since: float | None = None) -> bool:
        """Whether a run has an event of this kind (e.g. a budget warning already given), at `since` or later."""
        rows = await self._read("SELECT 1 FROM run_events WHERE run_id = ? AND kind = ? AND ts >= ? LIMIT 1",
                                (run_id, kind, since or 0.0))
        return bool(rows)

    async def count_events(self, run_id: str, kind: str) -> int:
        """How many events of this kind a run has (e.g. how many times its pods fetched their start script)."""
        rows = await self._read("SELECT count(*) FROM run_events WHERE run_id = ? AND kind = ?", (run_id, kind))
        return int(rows[0][0])

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
