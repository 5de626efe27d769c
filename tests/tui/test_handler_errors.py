"""An exception in a handler is a notification and a log entry, never a dead TUI (a DuplicateIds raised while the
selection moved ended a user's dashboard with a traceback)."""

import logging

from podtui.app import PodtuiApp
from podtui.messages import PlaneLinkChanged
from podtui.screens.dashboard import Dashboard
from podtui.widgets.log_view import LogView
from podtui.widgets.loss_chart import LossChart
from podtui.widgets.run_panel import RunPanel
from tests.support import make_settings
from tests.tui.test_app import wait_for


def said(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_a_failing_action_and_handler_are_reported_and_the_app_goes_on(tmp_path, monkeypatch, caplog):
    def broken_action(self):
        raise RuntimeError("boom in an action")

    def broken_handler(self, message):
        raise KeyError("boom in a handler")

    monkeypatch.setattr(RunPanel, "action_log_y", broken_action)
    monkeypatch.setattr(Dashboard, "on_plane_link_changed", broken_handler, raising=False)
    app = PodtuiApp(make_settings(tmp_path))
    app.raise_handler_errors_headless = False  # as a user's terminal runs it
    caplog.set_level(logging.ERROR, logger="podtui.tui")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        await pilot.press("g")
        await wait_for(pilot, lambda: any("boom in an action" in s for s in said(app)))
        assert app.is_running
        app.dashboard.post_message(PlaneLinkChanged(True))
        await wait_for(pilot, lambda: any("boom in a handler" in s for s in said(app)))
        # the dashboard's own message loop still reads: its next key and message still work
        view = app.dashboard.query_one(LogView)
        before = view.show_timestamps
        await pilot.press("t")
        await wait_for(pilot, lambda: view.show_timestamps != before)
        chart = app.dashboard.query_one(LossChart)
        smoothing = chart.smoothing
        await pilot.press("minus")
        await wait_for(pilot, lambda: chart.smoothing != smoothing)
        assert app.is_running
        assert any("details are in" in s and "podtui.log" in s for s in said(app))
    assert any("boom in an action" in r.getMessage() or (r.exc_info and "boom in an action" in str(r.exc_info[1]))
               for r in caplog.records)


async def test_a_failing_timer_tells_once_not_every_tick(tmp_path, monkeypatch):
    calls = []

    def broken_tick(self):
        calls.append(1)
        raise ValueError("tick failed")

    monkeypatch.setattr(Dashboard, "_tick", broken_tick)
    app = PodtuiApp(make_settings(tmp_path))
    app.raise_handler_errors_headless = False
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(calls) >= 3, timeout=30)
        assert app.is_running
        assert sum("tick failed" in s for s in said(app)) == 1


async def test_a_worker_that_fails_unexpectedly_is_reported(tmp_path):
    """Workers run with exit_on_error=False: an unexpected exception in one vanished without a word."""
    app = PodtuiApp(make_settings(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)

        async def broken_orphans():
            raise RuntimeError("orphans exploded")

        app.client.orphans = broken_orphans
        app.check_orphans()
        await wait_for(pilot, lambda: any("orphans exploded" in s for s in said(app)))
        assert app.is_running
