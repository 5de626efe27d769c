"""Typed keys of the control plane's aiohttp application."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Store
    from .events import FeedTail
    from .runs import RunService
    from .supervisor import Supervisor

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
RUNS: web.AppKey[RunService] = web.AppKey("runs")
SUPERVISOR: web.AppKey[Supervisor] = web.AppKey("supervisor")
ADMIN_TOKEN: web.AppKey[str] = web.AppKey("admin_token")
STREAMS: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("event_streams")
"""Open event streams, ended at shutdown (they would otherwise hold it up for a keep-alive interval)."""
FEED_TAIL: web.AppKey[FeedTail] = web.AppKey("feed_tail")
"""The newest feed entries, read and encoded once for every open event stream."""
