"""Metrics and log lines into their tables: many rows per statement, INSERT OR IGNORE (a resent report changes
nothing), and a feed row naming the new ones."""

from __future__ import annotations

import sqlite3
from typing import Any

from .engine import _feed

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
