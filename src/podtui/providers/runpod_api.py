"""RunPod's REST API v2 as podtui speaks it: one pooled httpx client, Bearer key, timeouts, rate limits.

Errors come back as RFC 9457 problem objects (`{"title", "status", "detail", "errors"?}`); they are raised as
`ApiProblem` with the status kept, so the provider can follow RunPod's own table for a failed create. A 429 is
waited out here (`Retry-After`, bounded) and the request sent again; every answer's `RateLimit` header is read,
and a window with nothing left holds the next request until it resets. No answer at all (timeouts, resets,
refused connections) and answers that are not what the document promises (an HTML page from the proxy in front,
a body that is not JSON) are `Unanswered`: the request may or may not have been carried out.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .base import ProviderError

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.runpod.io"
MAX_RETRY_AFTER_S = 120.0
"""Longest wait podtui accepts from a 429's Retry-After before it gives up on that call."""
RATE_LIMIT_RETRIES = 4

_MEMBER = re.compile(r'"?([A-Za-z0-9_-]+)"?\s*((?:;\s*[A-Za-z]+=[^,;]+)*)')


class Unanswered(ProviderError):
    """RunPod gave no usable answer (timeout, reset, HTML error page, unreadable body): the call may have
    been carried out. Worth retrying, after checking."""


class ApiProblem(ProviderError):
    """RunPod answered with an error status and (usually) a problem object."""

    def __init__(self, status: int, title: str, detail: str, errors: list[str] | None = None) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        text = detail or title or f"HTTP {status}"
        if self.errors:
            text += ": " + "; ".join(self.errors)
        super().__init__(f"RunPod {status}: {text}")


class KeyRejected(ApiProblem):
    """401: the key is missing, malformed, expired or invalid."""

    def __str__(self) -> str:
        return ("RunPod rejected the API key (401): check RUNPOD_API_KEY (or runpod_api_key in config.toml); "
                "keys are under Settings > API Keys on runpod.io")


def parse_structured_list(header: str) -> dict[str, dict[str, int]]:
    """`"minute";r=0;t=12, "hour";r=2800;t=1812` -> {"minute": {"r": 0, "t": 12}, "hour": {...}}."""
    out: dict[str, dict[str, int]] = {}
    for member in header.split(","):
        match = _MEMBER.match(member.strip())
        if not match:
            continue
        params: dict[str, int] = {}
        for part in match.group(2).split(";"):
            key, _, value = part.strip().partition("=")
            if key and value.strip().isdigit():
                params[key] = int(value.strip())
        out[match.group(1)] = params
    return out


def retry_after_s(value: str | None, default: float = 1.0) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


@dataclass
class RateLimitState:
    """What RunPod last said of this key's quota (`RateLimit-Policy` and `RateLimit` headers)."""

    policy: dict[str, dict[str, int]] = field(default_factory=dict)
    remaining: dict[str, dict[str, int]] = field(default_factory=dict)
    hold_until: float = 0.0
    """Monotonic time before which no request is sent (a window was used up, or a 429 said to wait)."""

    def update(self, headers: httpx.Headers) -> None:
        """Read the headers of one answer."""
        if policy := headers.get("RateLimit-Policy"):
            self.policy = parse_structured_list(policy)
        if live := headers.get("RateLimit"):
            self.remaining = parse_structured_list(live)
            empty = [w.get("t", 0) for w in self.remaining.values() if w.get("r", 1) <= 0]
            if empty:
                self.hold_until = max(self.hold_until, time.monotonic() + min(max(empty), MAX_RETRY_AFTER_S))

    def describe(self) -> str:
        """`60/minute, 3000/hour, 50000/day` (what RunPod reports for this key)."""
        parts = []
        for window, params in self.policy.items():
            if "q" in params:
                left = self.remaining.get(window, {}).get("r")
                parts.append(f"{params['q']}/{window}" + (f" ({left} left)" if left is not None else ""))
        return ", ".join(parts) or "not reported"


class RunPodApi:
    """An async client of RunPod's REST API v2."""

    def __init__(self, api_key: str, base_url: str = DEFAULT_API_URL, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.rate = RateLimitState()
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        """The pooled client, made at the first request: making it loads the CA store, which the dashboard's start
        does not need to wait for."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"},
                timeout=httpx.Timeout(self._timeout_s, connect=10.0),
                limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
                trust_env=True,
            )
        return self._http

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._http is not None:
            await self._http.aclose()

    async def send(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                   stream: bool = False, deadline: float | None = None,
                   accept: str = "application/json") -> httpx.Response:
        """One request; 429s waited out (never past `deadline`, a monotonic time). Raises ApiProblem for error
        statuses, Unanswered for no usable answer."""
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            wait = self.rate.hold_until - time.monotonic()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if wait > 0:
                log.info("RunPod rate limit: waiting %.1f s", wait)
                await asyncio.sleep(wait)
            request = self._client.build_request(method, path, json=json, params=params, headers={"Accept": accept})
            try:
                response = await self._client.send(request, stream=stream)
            except httpx.TimeoutException as exc:
                raise Unanswered(f"RunPod did not answer {method} {path} in time ({type(exc).__name__})") from exc
            except httpx.HTTPError as exc:  # resets, refused connections, a body that cannot be decoded
                raise Unanswered(f"no usable answer from RunPod for {method} {path} ({type(exc).__name__})") from exc
            self.rate.update(response.headers)
            if response.status_code == 429 and attempt < RATE_LIMIT_RETRIES:
                delay = retry_after_s(response.headers.get("Retry-After"))
                await response.aclose()
                late = deadline is not None and time.monotonic() + delay > deadline
                if delay > MAX_RETRY_AFTER_S or late:
                    raise ApiProblem(429, "Too Many Requests", f"rate limited for {delay:.0f} s")
                log.warning("RunPod answered 429 to %s %s; waiting %.1f s as Retry-After says", method, path, delay)
                self.rate.hold_until = max(self.rate.hold_until, time.monotonic() + delay)
                continue
            if response.status_code >= 400:
                try:
                    if stream:
                        await response.aread()
                except httpx.HTTPError as exc:
                    raise Unanswered(f"RunPod's error answer to {method} {path} broke off") from exc
                raise self._problem(response)
            return response
        raise AssertionError("unreachable")

    async def json(self, method: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None, deadline: float | None = None) -> Any:
        """A request whose answer is JSON (an empty 204 gives None)."""
        response = await self.send(method, path, json=json, params=params, deadline=deadline)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise Unanswered(f"RunPod answered {method} {path} with something that is not JSON "
                             f"({response.headers.get('content-type', 'no content type')})") from None

    @staticmethod
    def _problem(response: httpx.Response) -> ProviderError:
        kind = response.headers.get("content-type", "")
        body: Any = None
        if "json" in kind:
            try:
                body = response.json()
            except ValueError:
                body = None
        if not isinstance(body, dict):
            if response.status_code >= 500 or response.status_code in (404, 408, 429):
                # An HTML page from Cloudflare, a load balancer or a wrong base URL: not RunPod's answer. A 404 of
                # that kind must never read as "the pod is gone" (it would stop being billed only on paper).
                return Unanswered(f"RunPod's edge answered {response.status_code} without an API answer "
                                  f"(is PODTUI_RUNPOD_API_URL right?)")
            return ApiProblem(response.status_code, "", response.text[:200].strip())
        errors = [str(e) for e in body.get("errors") or [] if e is not None][:20]
        status = response.status_code
        cls = KeyRejected if status == 401 else ApiProblem
        problem = cls(status, str(body.get("title") or ""), str(body.get("detail") or ""), errors)
        if status >= 500:
            return Unanswered(str(problem))
        return problem


async def end_until_gone(what: str, ask: Callable[[float], Awaitable[None]], gone: Callable[[float], Awaitable[bool]],
                         confirm_s: float, backoff_s: float) -> None:
    """Ask RunPod to end something (`ask`, retried) until `gone` confirms it within confirm_s; both get the
    deadline (a monotonic time). A rejected key stops at once; past the deadline, ProviderError naming `what`."""
    deadline = time.monotonic() + confirm_s
    delay = backoff_s
    while True:
        problem: ProviderError | None = None
        try:
            await ask(deadline)
        except ProviderError as exc:
            problem = exc
        try:
            if await gone(deadline):
                return
        except ProviderError as exc:
            problem = exc
        if isinstance(problem, KeyRejected):
            raise problem
        if time.monotonic() >= deadline:
            raise ProviderError(f"RunPod has not confirmed that {what} is gone{f' ({problem})' if problem else ''}; "
                                "check the RunPod console (podtui keeps trying)")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
