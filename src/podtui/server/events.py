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

import orjson
from aiohttp import web

from ..models import INT64_MAX
from ..store import Store
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
        await _stream(response, store, after, run_id, full, keepalive)
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


async def _stream(response: web.StreamResponse, store: Store, after: int, run_id: str | None,
                  full: frozenset[str] | None, keepalive: float) -> None:
    """Write feed entries after `after` as they commit; a comment line when idle for `keepalive` seconds."""
    while True:
        version = store.write_version
        items = await store.feed_after(after, BATCH, run_id, full)
        if items:
            chunks = []
            for item in items:
                data = orjson.dumps(item.entry.wire())
                chunks.append(b"id: %d\nevent: %s\ndata: %s\n\n" % (item.id, item.entry.kind.encode(), data))
                after = item.id
            await response.write(b"".join(chunks))
        elif not await store.wait_for_write(version, keepalive):
            await response.write(b": keep-alive\n\n")
