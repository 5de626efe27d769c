"""A long job's answer as JSON lines: progress, then always a last line with its result or its error."""

import asyncio
import json
from types import SimpleNamespace

import httpx
from aiohttp import web

from podtui.server.job_lines import answer_job_lines


async def _lines_of(job, refused):
    progress = SimpleNamespace(done=0, total=10)
    stopped = []

    async def handler(request: web.Request) -> web.StreamResponse:
        async def start():
            progress.done = 5
            await asyncio.sleep(0.6)  # at least one progress line
            return await job()

        async def finish(result):
            return {"got": result}

        return await answer_job_lines(request, start, progress, refused, finish, lambda: stopped.append(True))

    app = web.Application()
    app.router.add_post("/job", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            r = await client.post(f"http://127.0.0.1:{port}/job")
        return r.headers["content-type"], [json.loads(line) for line in r.text.splitlines()], stopped
    finally:
        await runner.cleanup()


async def test_progress_then_the_result():
    async def job():
        return 42

    kind, lines, stopped = await _lines_of(job, (OSError,))
    assert kind.startswith("application/x-ndjson")
    assert {"done": 5, "total": 10} in lines[:-1] and lines[-1] == {"result": {"got": 42}} and stopped


async def test_a_refused_error_is_the_last_line_not_a_cut_stream():
    async def job():
        raise FileNotFoundError("data/b.bin vanished while it went up")

    _, lines, _ = await _lines_of(job, (OSError,))
    assert lines[-1] == {"error": "data/b.bin vanished while it went up"}
