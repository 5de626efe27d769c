"""Fake services the tests run on 127.0.0.1: RunPod (REST v2, clusters, its proxy), a file server, the Hub."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def serve_on_loopback(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, str]:
    """Serve `app` on 127.0.0.1 at a free port: its runner (to clean up) and its base url."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
