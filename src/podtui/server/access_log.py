"""The control plane's access log: no query strings (they may carry download tokens)."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


class AccessLogger(AbstractAccessLogger):
    """Access log without secrets: method, path (never the query string), status, size, time. A pod's reports
    (up to 20 a second per pod) are logged only when refused or slow: the run's heartbeat shows the rest."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if response.status < 400 and time < 1.0 and request.path.endswith("/report"):
            return
        self.logger.info(
            "%s %s %s %s %d %.1fms",
            request.remote, request.method, request.path, response.status, response.body_length, time * 1000,
        )
