"""Shared fixtures: a real control plane on 127.0.0.1:0 with real SQLite (helpers live in tests/support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import Plane, RecordingProvider, make_settings, start_plane, stop_local_plane


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    """A control plane with a recording provider (no processes)."""
    p = await start_plane(make_settings(tmp_path), {"local": RecordingProvider()})
    yield p
    await p.http.aclose()
    await p.control.stop()


@pytest.fixture
async def local_plane(tmp_path: Path) -> AsyncIterator[Plane]:
    """A control plane with the real local provider."""
    p = await start_plane(make_settings(tmp_path))
    yield p
    await stop_local_plane(p)
