"""The dashboard's tests run the app with its embedded control plane, and leave it without the quit dialog: a
local pod still bringing its outputs home (keep-alive) outlived the test by up to 30 min. Each test's local pods
are ended after it, by the local provider itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from podtui.providers.local import LocalProvider


async def _end_local_pods(pods_dirs: list[Path]) -> None:
    for pods_dir in pods_dirs:
        provider = LocalProvider(pods_dir, grace_s=1.0)
        for pod in await provider.list_pods():  # the ones still running
            await provider.terminate_pod(pod.pod_id)


@pytest.fixture(autouse=True)
def no_local_pod_outlives_the_test(tmp_path: Path) -> Iterator[None]:
    yield
    pods_dirs = [p for p in tmp_path.glob("**/pods") if p.is_dir() and any(p.glob("*/pod.json"))]
    if pods_dirs:
        asyncio.run(_end_local_pods(pods_dirs))


@pytest.fixture
def snap_compare(snap_compare):  # type: ignore[no-untyped-def]
    """Textual's snapshot compare, taken once every table has sized its columns to its cells: a DataTable does that
    when its message pump is idle, and a loaded machine took two snapshots before (columns at their headers'
    widths: "succee", "time  event")."""
    from textual.widgets import DataTable

    def compare(app, *args, run_before=None, **kwargs):  # type: ignore[no-untyped-def]
        async def settled(pilot):  # type: ignore[no-untyped-def]
            if run_before is not None:
                await run_before(pilot)
            deadline = asyncio.get_running_loop().time() + 10
            while asyncio.get_running_loop().time() < deadline and any(
                    table._require_update_dimensions or table._updated_cells
                    for table in pilot.app.screen.query(DataTable)):
                await pilot.pause(0.05)
            await pilot.pause(0.1)  # and drawn so

        return snap_compare(app, *args, run_before=settled, **kwargs)

    return compare
