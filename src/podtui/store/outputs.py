"""The store's queries of outputs brought home from pods: per file the version home and one moving; per run its
syncs."""

from __future__ import annotations

import sqlite3
import time

from ..models import OutputFile
from .engine import Engine, _exec, _feed, _one


class OutputQueries(Engine):
    """Outputs (a part of `Store`)."""

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
