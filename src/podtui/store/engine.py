"""The store's engine: two aiosqlite connections on one WAL file, one writer task that group-commits, passive
checkpoints on a timer, and the migrations. The queries (a module per domain, composed into `Store` in
store/__init__.py) run through `_write`, `_read` and `_read_with`; nothing else touches aiosqlite's internals.

Writes go through the writer task: every queued write runs inside one transaction, each in its own SAVEPOINT, so
a bad write rolls back alone and a batch costs one fsync. Reads use the second connection (WAL lets them run
beside the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite

from .schema import MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreUnavailable(RuntimeError):
    """The store cannot take writes now (disk full, read-only, locked): callers answer 503."""



def _one(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first row of a query (None when there is none), its cursor closed at once."""
    cur = db.execute(sql, params)
    try:
        return cur.fetchone()
    finally:
        cur.close()


def _all(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Every row of a query, its cursor closed at once."""
    cur = db.execute(sql, params)
    try:
        return cur.fetchall()
    finally:
        cur.close()



def _exec(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    """Execute one statement and close its cursor at once; return the last row id."""
    cur = db.execute(sql, params)
    try:
        return cur.lastrowid or 0
    finally:
        cur.close()



def _feed(db: sqlite3.Connection, run_id: str, kind: str, lo: int | None, hi: int | None, now: float) -> None:
    _exec(db, "INSERT INTO feed (run_id, kind, lo, hi, ts) VALUES (?, ?, ?, ?, ?)", (run_id, kind, lo, hi, now))


class NotFound(LookupError):
    """No such row."""


class Engine:
    """The connections, the writer task and the checkpoints; create with `await Store.open(path)`."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.path = path
        self._w = writer
        self._r = reader
        self._queue: asyncio.Queue[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = (
            asyncio.Queue()
        )
        self._writer_task: asyncio.Task[None] | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._feed_changed = asyncio.Event()
        self.write_version = 0
        """Counts group commits that wrote something; lets a waiter tell whether it missed one."""
        self.closed = False

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (creating when needed) and migrate the store."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(path, isolation_level=None)
        try:
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute("PRAGMA synchronous=NORMAL")
            await writer.execute("PRAGMA busy_timeout=5000")
            # Checkpoints run from the reader's thread on a timer (checkpoint()), not inside a writer's commit,
            # where their fsync stalled every report queued behind it.
            await writer.execute("PRAGMA wal_autocheckpoint=0")
            await cls._migrate(writer)
        except BaseException:
            await writer.close()
            raise
        reader = await aiosqlite.connect(path, isolation_level=None)
        await reader.execute("PRAGMA busy_timeout=5000")
        store = cls(path, writer, reader)
        store._writer_task = asyncio.create_task(store._write_loop(), name="store-writer")
        store._checkpoint_task = asyncio.create_task(store._checkpoint_loop(), name="store-checkpoint")
        return store

    async def _checkpoint_loop(self, every_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Copy the WAL into the database without blocking writers (PASSIVE), from the reader's connection."""
        try:
            await self._r._execute(_all, self._r._conn, "PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)

    @staticmethod
    async def _migrate(db: aiosqlite.Connection) -> None:
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            statements = [s for s in script.split(";") if s.strip()]
            await db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version={number}")
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            log.debug("store migrated to schema %d", number)
        if version < len(MIGRATIONS):
            log.info("store at schema %d (from %d)", len(MIGRATIONS), version)

    async def schema_version(self) -> int:
        """The migration the file is at."""
        rows = await self._read("PRAGMA user_version")
        return int(rows[0][0])

    @staticmethod
    def latest_schema() -> int:
        """The migration this podtui expects."""
        return len(MIGRATIONS)

    async def close(self) -> None:
        """Finish queued writes and close both connections; writes asked for from now on are refused."""
        if self.closed:
            return
        self.closed = True
        if self._writer_task is not None and not self._writer_task.done():
            # The writer takes jobs in order: once this no-op is done, every write queued before it is too.
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queue.put_nowait((lambda db: None, done))
            with contextlib.suppress(Exception):
                await done
        for task in (self._checkpoint_task, self._writer_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._w.close()
        await self._r.close()

    # -- the writer ---------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Writes queued behind the one in progress."""
        return self._queue.qsize()

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.closed:
            raise StoreUnavailable("the store is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((fn, fut))
        return await fut

    async def _write_loop(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            while not self._queue.empty() and len(jobs) < 512:
                jobs.append(self._queue.get_nowait())
            try:
                # One hop to aiosqlite's thread per group: aiosqlite has no public call for running a function
                # on its connection, and one await per statement costs more than the statements.
                outcomes = await self._w._execute(self._run_group, self._w._conn, [fn for fn, _ in jobs])
            except asyncio.CancelledError:
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(StoreUnavailable("the store is closing"))
                raise
            except Exception as exc:  # the whole group failed to commit
                outcomes = [(False, _store_error(exc))] * len(jobs)
            wrote = False
            for (_, fut), (ok, value) in zip(jobs, outcomes, strict=True):
                wrote = wrote or ok
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            if wrote:
                self.write_version += 1
                changed, self._feed_changed = self._feed_changed, asyncio.Event()
                changed.set()

    @staticmethod
    def _run_group(
        db: sqlite3.Connection, fns: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        db.execute("BEGIN IMMEDIATE").close()
        try:
            for fn in fns:
                db.execute("SAVEPOINT job").close()
                try:
                    outcomes.append((True, fn(db)))
                except Exception as exc:
                    if not db.in_transaction:
                        # SQLite rolled the whole transaction back itself (disk full, I/O error): the group failed
                        raise
                    db.execute("ROLLBACK TO job").close()
                    outcomes.append((False, _store_error(exc)))
                db.execute("RELEASE job").close()
            db.execute("COMMIT").close()
        except Exception:
            if db.in_transaction:
                db.execute("ROLLBACK").close()
            raise
        return outcomes

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        # One hop to the reader's thread, its cursor closed there: a statement left open between hops met
        # the WAL checkpoint (same connection) and failed it with "database table is locked" under load.
        return await self._read_with(_all, sql, params)

    async def _read_with(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` on the reader's thread, in one hop (reads that belong together, e.g. a feed
        batch and the rows it names). The engine is the only code that reaches into aiosqlite's connection."""
        try:
            return await self._r._execute(fn, self._r._conn, *args)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"the store cannot be read: {exc}") from exc

    async def wait_for_write(self, since_version: int, timeout: float) -> bool:
        """Wait until a write commits after `since_version`; False when the timeout passed first."""
        if self.write_version != since_version:
            return True
        try:
            await asyncio.wait_for(self._feed_changed.wait(), timeout)
        except TimeoutError:
            return False
        return True


def _store_error(exc: BaseException) -> BaseException:
    """Disk full, read-only or locked: the store is unavailable (503), not the request bad."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if any(s in text for s in ("full", "readonly", "read-only", "locked", "disk i/o", "unable to open")):
            err = StoreUnavailable(f"the store cannot take writes now: {exc}")
            err.__cause__ = exc
            return err
    return exc
