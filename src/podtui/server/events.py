"""GET /api/v1/events: a Server-Sent Events stream of run changes, run events, metrics and log lines.

Every entry has the feed id as its SSE id, so a client that reconnects with Last-Event-ID (or ?after=) misses
nothing. The stream reads from the store, not from per-client queues: a slow consumer only falls behind, it
never makes the server hold more in memory or slows ingest.
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
    """Stream the feed after Last-Event-ID / ?after= (default: from now); ?run= filters to one run."""
    store: Store = request.app[keys.STORE]
    keepalive = float(request.app[keys.SETTINGS].sse_keepalive_s)
    raw_after = request.headers.get("Last-Event-ID") or request.query.get("after")
    run_id = request.query.get("run") or None
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
    await response.write(b": podtui event stream\nretry: 2000\n\n")
    task = asyncio.current_task()
    streams = request.app[keys.STREAMS]
    if task is not None:
        streams.add(task)
    try:
        await _stream(response, store, after, run_id, keepalive)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        streams.discard(task)
    return response


async def _stream(response: web.StreamResponse, store: Store, after: int, run_id: str | None,
                  keepalive: float) -> None:
    """Write feed entries after `after` as they commit; a comment line when idle for `keepalive` seconds."""
    while True:
        version = store.write_version
        items = await store.feed_after(after, BATCH, run_id)
        if items:
            chunks = []
            for item in items:
                data = orjson.dumps(item.entry.wire())
                chunks.append(b"id: %d\nevent: %s\ndata: %s\n\n" % (item.id, item.entry.kind.encode(), data))
                after = item.id
            await response.write(b"".join(chunks))
        elif not await store.wait_for_write(version, keepalive):
            await response.write(b": keep-alive\n\n")
