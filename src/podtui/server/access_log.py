"""The control plane's access log: no query strings (they may carry download tokens)."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


class AccessLogger(AbstractAccessLogger):
    """Access log without secrets: method, path (never the query string), status, size, time."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %s %d %.1fms",
            request.remote, request.method, request.path, response.status, response.body_length, time * 1000,
        )
