"""GET /api/v1/events: a Server-Sent Events stream of run changes, run events, metrics and log lines.

`?full=<run id>,<run id>` subscribes: those runs in full, every other run as summaries (its `run` changes, which
carry status, step, last loss, cost and GPU use, and its `run_event`s); `?full=` (empty) is summaries only.
Without it every entry of every run comes (`?run=` narrows that to one run). Every entry has the feed id as its SSE
id, so a client that reconnects with Last-Event-ID (or ?after=), with the same or another subscription, misses
nothing it subscribed to. The stream reads from the store, not from per-client queues: a slow consumer only falls
behind, it never makes the server hold more in memory or slows ingest.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

from ..feed import FeedEntry
from ..models import INT64_MAX
from ..store import FeedItem, Store
from . import keys
from .responses import ApiError

BATCH = 200


async def events(request: web.Request) -> web.StreamResponse:
    """Stream the feed after Last-Event-ID / ?after= (default: from now); ?run= filters to one run; ?full= follows
    some runs in full and the rest as summaries."""
    store: Store = request.app[keys.STORE]
    keepalive = float(request.app[keys.SETTINGS].sse_keepalive_s)
    raw_after = request.headers.get("Last-Event-ID") or request.query.get("after")
    run_id = request.query.get("run") or None
    full = _full_runs(request.query.get("full"))
    if raw_after is None or raw_after == "":
        after = await store.last_feed_id()
    else:
        try:
            after = int(raw_after)
        except ValueError:
            raise ApiError(400, "invalid_query", "Last-Event-ID / after must be an integer") from None
        if not 0 <= after <= INT64_MAX:
            raise ApiError(400, "invalid_query", "Last-Event-ID / after must be between 0 and 2^63-1")
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    await response.write(b": podtui event stream\n: from %d\nretry: 2000\n\n" % after)
    task = asyncio.current_task()
    streams = request.app[keys.STREAMS]
    if task is not None:
        streams.add(task)
    try:
        await _stream(response, store, request.app[keys.FEED_TAIL], after, run_id, full, keepalive)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        streams.discard(task)
    return response


MAX_FULL = 100
"""Runs one subscription may follow in full."""


def _full_runs(raw: str | None) -> frozenset[str] | None:
    """The ?full= list: None when absent (everything in full), else the run ids (empty: summaries only)."""
    if raw is None:
        return None
    ids = frozenset(part for part in (p.strip() for p in raw.split(",")) if part)
    if len(ids) > MAX_FULL:
        raise ApiError(400, "invalid_query", f"full= lists at most {MAX_FULL} runs")
    if any(len(i) > 64 or not i.isalnum() for i in ids):
        raise ApiError(400, "invalid_query", "full= takes run ids separated by commas")
    return ids


async def _stream(response: web.StreamResponse, store: Store, tail: FeedTail, after: int, run_id: str | None,
                  full: frozenset[str] | None, keepalive: float) -> None:
    """Write feed entries after `after` as they commit; a comment line when idle for `keepalive` seconds. Entries
    come from the shared tail; from the store when the stream is behind it or needs points it did not read."""
    wanted = full if full is not None else (frozenset((run_id,)) if run_id else None)
    tail.follow(wanted)
    try:
        while True:
            version = store.write_version
            shared = await tail.read(after, run_id, full)
            if shared is not None:
                data, after = shared
            else:
                items = await store.feed_after(after, BATCH, run_id, full)
                data = b"".join(_event(item.id, item.entry) for item in items)
                after = items[-1].id if items else after
            if data:
                await response.write(data)
            elif not await store.wait_for_write(version, keepalive):
                await response.write(b": keep-alive\n\n")
    finally:
        tail.unfollow(wanted)


def _event(fid: int, entry: FeedEntry) -> bytes:
    """One entry as an SSE event, its feed id as the event's id."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (fid, entry.kind.encode(), entry.wire())


@dataclass(slots=True)
class _Shared:
    id: int
    run_id: str
    kind: str
    event: bytes | None
    """The SSE event; None when the tail did not read its points or lines (no stream followed the run)."""


class FeedTail:
    """The newest feed entries, read from the store and encoded once for every open stream.

    Ten watchers used to read and encode every run change ten times (the team bench: 500 pods, 10 watchers). The
    tail reads each feed row once; a run's points and lines only while some stream follows that run in full
    (else a bare row that makes such a stream, should it come, read them from the store itself). It keeps the
    newest `max_bytes` of events, and starts afresh from the newest entry when more than that waits (no stream
    was open, or none read for a while); a stream further behind reads from the store until it catches up."""

    def __init__(self, store: Store, max_bytes: int = 16 << 20, batch: int = BATCH) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.batch = batch
        self._ids: list[int] = []
        self._items: list[_Shared] = []
        self._bytes = 0
        self._start: int | None = None
        """The tail holds every entry after this feed id (None: it has not read since the last stream closed)."""
        self._last = 0
        self._version = -1
        self._lock = asyncio.Lock()
        self._streams = 0
        self._followed: Counter[str] = Counter()
        """Runs that open streams follow in full; ALL when one follows every run."""

    def __len__(self) -> int:
        """The entries the tail holds."""
        return len(self._items)

    def follow(self, runs: frozenset[str] | None) -> None:
        """A stream opens, following these runs in full (None: every run)."""
        self._streams += 1
        self._followed.update(runs if runs is not None else (ALL,))

    def unfollow(self, runs: frozenset[str] | None) -> None:
        """A stream closes; with the last one the tail forgets everything (nobody reads it meanwhile)."""
        self._streams -= 1
        self._followed.subtract(runs if runs is not None else (ALL,))
        self._followed += Counter()  # drop the runs no stream follows now
        if self._streams == 0:
            self._forget(None)

    async def read(self, after: int, run_id: str | None, full: frozenset[str] | None) -> tuple[bytes, int] | None:
        """A stream's events after `after` (at most BATCH) and the id to go on from; None when the tail cannot
        answer (the stream is behind it, or needs points the tail did not read)."""
        await self._catch_up()
        if self._start is None or after < self._start:
            return None
        if after >= self._last:
            return b"", after  # nothing newer (an id from the future stays where it is: ids only go forward)
        chunks: list[bytes] = []
        items = self._items
        for i in range(bisect_right(self._ids, after), len(items)):
            item = items[i]
            if (run_id is None or item.run_id == run_id) and (
                    item.kind in SUMMARY_KINDS or full is None or item.run_id in full):
                if item.event is None:
                    return (b"".join(chunks), after) if chunks else None
                chunks.append(item.event)
                if len(chunks) == BATCH:
                    return b"".join(chunks), item.id
            after = item.id
        return b"".join(chunks), self._last

    async def _catch_up(self) -> None:
        """Read what committed since the last read, up to the store's write version of now (commits landing
        meanwhile are the next reader's: no stream waits on the lock behind an endless read)."""
        async with self._lock:
            target = self.store.write_version
            if self._start is None:
                self._forget(await self.store.last_feed_id())
                self._version = target
                return
            if self._version == target:
                return
            followed = None if ALL in self._followed else frozenset(self._followed)
            read = 0
            while True:
                items, last, more = await self.store.feed_tail(self._last, self.batch, followed)
                for item in items:
                    if isinstance(item, FeedItem):
                        kind, event = item.entry.kind, _event(item.id, item.entry)
                    else:
                        kind, event = item.kind, None
                    self._ids.append(item.id)
                    self._items.append(_Shared(item.id, item.run_id, kind, event))
                    self._bytes += _size(event)
                    read += _size(event)
                self._last = last
                self._trim()
                if not more:
                    break
                if read > self.max_bytes:
                    # More waits than the tail would keep: start afresh from the newest entry (the streams behind
                    # read from the store) instead of reading and encoding what would be forgotten at once.
                    self._forget(await self.store.last_feed_id())
                    break
            self._version = target

    def _forget(self, newest: int | None) -> None:
        """Hold nothing: from `newest` on (None: from whatever is newest at the next read)."""
        self._ids, self._items, self._bytes = [], [], 0
        self._start = newest
        self._last = newest or 0

    def _trim(self) -> None:
        """Forget the oldest events beyond max_bytes (a quarter at a time: each cut copies the lists)."""
        if self._bytes <= self.max_bytes:
            return
        cut, dropped = 0, 0
        while cut < len(self._items) and self._bytes - dropped > self.max_bytes * 3 // 4:
            dropped += _size(self._items[cut].event)
            cut += 1
        self._start = self._ids[cut - 1]
        del self._ids[:cut], self._items[:cut]
        self._bytes -= dropped


def _size(event: bytes | None) -> int:
    """What an entry costs the tail's memory: its event, and its own objects (a bare row has only those)."""
    return ENTRY_BYTES + (0 if event is None else len(event))


ENTRY_BYTES = 240
"""A held entry's own objects (measured: a bare row's ~225 bytes)."""
ALL = "*"
"""In FeedTail's followed runs: some stream follows every run in full."""
SUMMARY_KINDS = frozenset(("run", "run_event"))
"""What a stream gets of every run, whatever it follows in full."""
