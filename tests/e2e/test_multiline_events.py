"""Multi-line events are shown whole: a failure's tail (the command's last lines) showed only "exit code 2; last
lines:" in `launch --wait` and in the run detail."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from podtui.app import PodtuiApp
from podtui.models import LaunchSpec
from podtui.screens.run_detail import RunDetailScreen
from tests.support import make_settings

FAILING = "echo first-said; echo 'Traceback: no such file nonexistent.py' >&2; exit 2"


async def test_launch_wait_prints_the_whole_failure_tail(local_plane):
    plane = local_plane
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "podtui.cli", "--server", plane.url, "--token",
                         plane.control.admin_token, "launch", "--dataset", "demo", "--gpu", "local",
                         "--command", FAILING, "--keep-alive", "0", "--wait"],
        capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    tail_at = out.index("failure_tail: ")
    tail = out[tail_at:].split("\n")
    assert any(line.startswith("    ") and "Traceback: no such file nonexistent.py" in line for line in tail), out
    assert any(line.startswith("    ") and "first-said" in line for line in tail), out


@pytest.mark.parametrize("size", [(160, 45), (80, 24)])
async def test_the_run_detail_shows_the_whole_failure_tail(tmp_path, size):
    app = PodtuiApp(make_settings(tmp_path))
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + 30
        while app.client is None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        run = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], command=FAILING,
                                                 keep_alive_s=0))
        while time.monotonic() < deadline + 60:
            fresh = await app.client.run(run.id)
            if fresh.status.is_final and any(e.kind == "failure_tail" for e in await app.client.run_events(run.id)):
                break
            await pilot.pause(0.2)
        dash = app.dashboard
        while dash.query_one("#runs").row_count < 1 and time.monotonic() < deadline + 90:
            await pilot.pause(0.1)
        dash.query_one("#runs").focus()
        await pilot.press("enter")
        while not isinstance(app.screen, RunDetailScreen) and time.monotonic() < deadline + 90:
            await pilot.pause(0.1)
        screen = app.screen

        def tail_row() -> tuple[str, int] | None:
            table = screen.query_one("#events")
            for key, row in table.rows.items():
                cells = table.get_row(key)
                if "failure_tail" in str(cells[1]):
                    return str(cells[2]), row.height
            return None

        while tail_row() is None and time.monotonic() < deadline + 90:
            await pilot.pause(0.1)
        text, height = tail_row()
        assert "Traceback: no such file nonexistent.py" in text and "first-said" in text
        assert height >= 3 and height >= len(text.split("\n"))
        table = screen.query_one("#events")
        await pilot.pause(0.3)
        # wrapped within the table (long lines were cut at the right edge of 80 columns)
        assert table.virtual_size.width <= table.scrollable_content_region.width
