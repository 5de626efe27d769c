"""Snapshots of the dashboard with a finished run, the log view's gap marker, the run detail screen, the launch
screen, the confirm dialog and the help screen.

Sync test functions (pytest-textual-snapshot runs the app itself); the data is fixed (a finished run with set
times, shown in UTC), so nothing depends on the clock; input cursors do not blink. Update with
`pytest --snapshot-update`.
"""

import asyncio
import math
import os
import time

import pytest
from textual.widgets import Input, Select

from podtui.app import PodtuiApp
from podtui.models import LaunchSpec, LogLine, MetricPoint, Report, Run, RunStatus
from podtui.screens.launch import LaunchScreen
from podtui.server.app import ensure_demo_dataset
from podtui.store import Store
from podtui.widgets.loss_chart import LossChart
from podtui.widgets.offers_table import OffersTable
from tests.support import make_settings

SIZE = (140, 40)
T0 = 1_790_000_000.0
os.environ["TZ"] = "UTC"  # the run detail shows local times
time.tzset()


async def populate(settings) -> None:
    store = await Store.open(settings.store_path)
    await ensure_demo_dataset(settings, store)
    demo = (await store.find_dataset("demo")).dataset
    run = Run(id="snap000001", name="demo-snap", provider="local", status=RunStatus.pending,
              spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="python3 train.py"),
              dataset_id=demo.id, created_at=T0)
    await store.create_run(run, "0" * 64)
    await store.update_run(run.id, pod_id="local-snap", gpu_type="local", price_per_hour=0.0, started_at=T0 + 1)
    points = []
    for step in range(1, 401):
        loss = 2.5 * math.exp(-step / 60) + 0.1 + 0.05 * math.sin(step / 3)
        points.append(MetricPoint(name="loss", step=step, value=loss, ts=T0 + 2 + step))
        points.append(MetricPoint(name="lr", step=step, value=0.01 * (1 - step / 400) + 1e-4, ts=T0 + 2 + step))
        if step % 50 == 0:
            points.append(MetricPoint(name="eval_loss", step=step, value=loss + 0.05, ts=T0 + 2 + step))
    lines = [LogLine(seq=i, ts=T0 + 2 + i, text=f"step={i} loss={2.5 * math.exp(-i / 60) + 0.1:.4f}")
             for i in range(40)]
    await store.apply_report(run.id, Report(metrics=points, logs=lines, status="training"), T0 + 500)
    await store.finish_run(run.id, RunStatus.succeeded, "the training command succeeded", exit_code=0)
    async with store._r.execute("SELECT 1"):
        pass
    await store._write(lambda db: db.execute("UPDATE runs SET ended_at = ?, created_at = ? WHERE id = ?",
                                             (T0 + 403, T0, run.id)).close())
    await store._write(lambda db: db.execute("UPDATE run_events SET ts = ? + id", (T0,)).close())
    await store.close()


@pytest.fixture
def app(tmp_path):
    settings = make_settings(tmp_path, public_url="https://pods.example.com")
    asyncio.run(populate(settings))
    return PodtuiApp(settings)


async def until(pilot, condition) -> None:
    """Wait (at most 20 s: the whole suite shares two cores) until condition() holds."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not condition():
        await pilot.pause(0.1)


async def ready(pilot) -> None:
    def loaded() -> bool:
        dash = pilot.app.dashboard
        return dash is not None and bool(pilot.app.live.runs) and "loss" in dash.query_one(LossChart).series

    await until(pilot, loaded)
    await pilot.pause(0.6)  # the chart's 4 Hz redraw and the log view's flush


async def no_blink(pilot) -> None:
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause(0.5)


def test_dashboard_with_a_finished_run(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_log_view_marks_a_gap(snap_compare, app):
    """Lines the feed skipped (seq 40 to 59 never came) show as one marker line, not silently."""
    from podtui.feed import LogsAdded

    async def gap(pilot):
        await ready(pilot)
        lines = [LogLine(seq=i, ts=T0 + 500 + i, text=f"after the gap: line {i}") for i in range(60, 64)]
        pilot.app.take_entry(LogsAdded(run_id="snap000001", lines=lines))
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=SIZE, run_before=gap)


async def open_run(pilot) -> None:
    """The selected run's detail, its events loaded."""
    await ready(pilot)
    await pilot.press("enter")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "RunDetailScreen"
                and pilot.app.screen.query_one("#events").row_count > 0)
    await pilot.pause(0.5)


async def open_launch(pilot) -> None:
    """The launch form, its GPU offers and dataset loaded."""
    await ready(pilot)
    await pilot.press("n")
    await until(pilot, lambda: isinstance(pilot.app.screen, LaunchScreen)
                and pilot.app.screen.query_one(OffersTable).row_count > 0
                and pilot.app.screen.query_one("#dataset", Select).value != Select.BLANK)
    await no_blink(pilot)


def test_run_detail_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=open_run)


def test_launch_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=open_launch)


def pressing(key):
    """Once the dashboard is ready, press a key and let the screen it opens settle."""
    async def press(pilot):
        await ready(pilot)
        await pilot.press(key)
        await pilot.pause(0.5)

    return press


def test_confirm_dialog(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=pressing("ctrl+d"))


def test_help_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=pressing("question_mark"))
