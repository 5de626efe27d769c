"""A fake of RunPod's HTTPS proxy for tests: `https://<pod id>-<port>.proxy.runpod.net` becomes
`http://127.0.0.1:<proxy port>/<pod id>-<port>/...` (a path, as tests have no wildcard DNS), routed to the pod's
port on this machine while the fake RunPod API says the pod is RUNNING and exposes `<port>/http`.

Like RunPod's (pods docs, "Expose ports"): a request that gets no answer within `timeout_s` (100 s by default)
ends with 524; a body past `body_limit` (100 MB) gets 413; a pod that is not running, a port not exposed or not
listening gets 502 (Cloudflare-style HTML pages, not JSON). `queue_502(n)` makes the next n requests 502.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from . import serve_on_loopback
from .runpod_v2 import FakeRunPodV2, cloudflare_html


class FakeRunPodProxy:
    """The proxy's state and faults."""

    def __init__(self, api: FakeRunPodV2, timeout_s: float = 100.0, body_limit: int = 100_000_000) -> None:
        self.api = api
        self.timeout_s = timeout_s
        self.body_limit = body_limit
        self.fail_next = 0
        self.requests: list[tuple[str, str, int]] = []
        """(method, path, status) of every request."""
        self.largest_body = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def template(self) -> str:
        """The value for PODTUI_RUNPOD_PROXY_URL."""
        return self.url + "/{pod_id}-{port}"

    async def start(self) -> str:
        app = web.Application(client_max_size=self.body_limit + 1)
        app.router.add_route("*", "/{target}/{tail:.*}", self.handle)
        self._runner, self.url = await serve_on_loopback(app, handle_signals=False, access_log=None)
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self.url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def queue_502(self, count: int = 1) -> None:
        self.fail_next += count

    @staticmethod
    def page(status: int, text: str) -> web.Response:
        return web.Response(status=status, text=cloudflare_html(status, text), content_type="text/html")

    def _upstream_port(self, target: str) -> int | None:
        pod_id, _, port = target.rpartition("-")
        pod = self.api.pods.get(pod_id)
        if pod is None or pod.get("status") != "RUNNING" or f"{port}/http" not in (pod.get("ports") or []):
            return None
        return int(port)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._forward(request)
        self.requests.append((request.method, request.path, response.status))
        return response

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        length = request.content_length or 0
        if length > self.body_limit:
            return self.page(413, "Payload Too Large")
        if self.fail_next:
            self.fail_next -= 1
            return self.page(502, "Bad gateway")
        port = self._upstream_port(request.match_info["target"])
        if port is None:
            return self.page(502, "Bad gateway: the pod is not running or the port is not exposed")
        body = await request.read()
        self.largest_body = max(self.largest_body, len(body))
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        url = f"http://127.0.0.1:{port}/{request.match_info['tail']}"
        assert self._session is not None
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._session.request(request.method, url, params=request.query, data=body,
                                                 headers=headers) as upstream:
                    data = await upstream.read()
                    out: dict[str, Any] = {"status": upstream.status, "body": data}
                    kind = upstream.headers.get("Content-Type")
        except TimeoutError:
            return self.page(524, "A timeout occurred")
        except aiohttp.ClientError:
            return self.page(502, "Bad gateway: the pod's port did not answer")
        return web.Response(status=out["status"], body=out["body"], headers={"Content-Type": kind} if kind else None)
