"""A long job's HTTP answer as JSON lines (application/x-ndjson): its progress every half second, then its result
or the error that stopped it, always as the last line. Pushing a dataset onto a volume and fetching a run's
outputs from one answer this way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiohttp import web

T = TypeVar("T")

PROGRESS_EVERY_S = 0.5


class Progress(Protocol):
    """Bytes done of a total, updated while the job runs."""

    done: int
    total: int


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


async def answer_job_lines(request: web.Request, start: Callable[[], Awaitable[T]], progress: Progress,
                           refused: tuple[type[Exception], ...], finish: Callable[[T], Awaitable[dict[str, Any]]],
                           stop: Callable[[], None] | None = None) -> web.StreamResponse:
    """Start the job once the answer's headers are out, write {"done", "total"} while it runs, then
    {"result": await finish(its result)}, or {"error": why} for an exception of `refused`. When the answer ends
    before the job (the client went away) the job is cancelled and `stop` runs (a thread's job stops itself)."""
    answer = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
    await answer.prepare(request)
    job = asyncio.ensure_future(start())
    try:
        while not job.done():
            await asyncio.wait([job], timeout=PROGRESS_EVERY_S)
            await answer.write(_line({"done": progress.done, "total": progress.total}))
        last: dict[str, Any]
        try:
            last = {"result": await finish(job.result())}
        except refused as exc:
            last = {"error": str(exc)}
        await answer.write(_line(last))
    finally:
        if not job.done():
            job.cancel()
        if stop is not None:
            stop()
    await answer.write_eof()
    return answer
