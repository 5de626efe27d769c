"""The store's queries of log lines: numbered across a run's attempts, read by range or as a tail."""

from __future__ import annotations

from typing import Any

from ..models import LogLine
from .engine import Engine

SEQ_SPAN = 10**12
"""Log line numbers of attempt N start at (N - 1) x SEQ_SPAN: each new pod's agent counts from 0 again, and a
run's lines stay in order and unique across its attempts."""


class LogQueries(Engine):
    """Log lines (a part of `Store`)."""

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
