"""The dashboard: the runs table beside the selected run's panel (download bar, loss chart, logs)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ..errors import ControlPlaneError
from ..handler_errors import ReportsHandlerErrors
from ..live import SPARK_POINTS, Follow, LiveRuns
from ..messages import EndPodAsked, FeedMessage, RunUpdated
from ..metric_names import TRAIN_LOSS_NAMES
from ..widgets.key_hints import KeyHints
from ..widgets.keys import bindings
from ..widgets.loss_chart import WAITING, idle_for, no_runs
from ..widgets.run_panel import RunPanel
from ..widgets.runs_table import RunsTable

if TYPE_CHECKING:  # the client (httpx) and the models load once the control plane answers, after the first frame
    from ..client import Client
    from ..models import Run

UNREACHABLE = "The control plane does not answer yet: its runs show once it does (the status line says since when)."


class Dashboard(ReportsHandlerErrors, Screen[None]):
    """The main screen."""

    BINDINGS = bindings("dashboard", "panel")
    DEFAULT_CSS = """
    Dashboard #main { height: 1fr; }
    Dashboard RunsTable { width: 56%; }
    Dashboard.zoomed RunsTable { display: none; }
    Dashboard #detail { width: 1fr; }
    Dashboard #status { height: 1; background: $boost; color: $text-muted; padding: 0 1; }
    Dashboard.stale RunsTable, Dashboard.stale LossChart, Dashboard.stale LogView { text-opacity: 45%; }
    Dashboard.stale #status { background: $warning-muted; color: $text; }
    """

    def __init__(self, live: LiveRuns, follow: Follow, default_provider: str, status_line: str) -> None:
        super().__init__()
        self.live = live
        """The app's runs, kept current from the live feed."""
        self.follow = follow
        self.default_provider = default_provider
        self.status_line = status_line
        self._client: Client | None = None
        self._table_version = -1

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield RunsTable(id="runs", classes="pane")
            yield RunPanel(self.live, self.follow, id="detail")
        yield Static(self.status_line, id="status")
        yield KeyHints()

    def on_mount(self) -> None:
        self.show_runs()  # the store's runs, on the first frame
        self.set_interval(0.5, self.show_runs)
        self.set_interval(1.0, self._tick)

    @property
    def panel(self) -> RunPanel:
        return self.query_one(RunPanel)

    @property
    def selected(self) -> str | None:
        """The run the panel shows."""
        return self.panel.run_id

    @property
    def client(self) -> Client:
        """The control plane's client (set once it answers)."""
        if self._client is None:
            raise ControlPlaneError("the control plane is still starting")
        return self._client

    def attach(self, client: Client, status_line: str) -> None:
        """The control plane answers: load the runs, and the panel's."""
        self._client = client
        self.query_one("#status", Static).update(status_line)
        self.panel.attach(client)  # a run selected while the control plane started (its store's runs) loads now
        self.load_runs()

    def show_link(self, status_line: str, reachable: bool) -> None:
        """The status line; while the control plane does not answer, its figures are greyed (they are stale)."""
        self.query_one("#status", Static).update(status_line)
        self.set_class(not reachable, "stale")
        self.show_runs(force=True)

    @work(exclusive=True, group="runs", exit_on_error=False)
    async def load_runs(self) -> None:
        """All runs, with the recent loss of each for its sparkline."""
        try:
            runs = await self.client.runs()
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error", timeout=10)
            return
        self.live.load(runs)
        self.show_runs()  # now: the sparklines' fetches below take a request per run
        for run in runs[:30]:
            try:
                page = await self.client.metrics(run.id, max_points=SPARK_POINTS)
            except ControlPlaneError:
                continue
            name = next((n for n in TRAIN_LOSS_NAMES if n in page.series), None)
            if name is not None:
                self.live.set_spark(run.id, page.series[name].values)
        self.show_runs()
        if runs and self.selected is None:
            self.select(runs[0].id)

    def select(self, run_id: str) -> None:
        """Show a run in the panel."""
        self.panel.run_id = run_id

    @on(FeedMessage)
    def _to_panel(self, message: FeedMessage) -> None:
        """The panel takes the feed's messages for its runs."""
        self.panel.post_message(dataclasses.replace(cast(Any, message)))  # a fresh copy: each pump its own

    def on_run_updated(self, message: RunUpdated) -> None:
        if self.selected is None:
            self.select(message.run.id)

    def show_runs(self, force: bool = False) -> None:
        """Show the runs when they changed since last shown (or always: uptime and cost grow without events)."""
        if self._table_version == self.live.version and not force:
            return
        self._table_version = self.live.version
        runs = self.live.newest_first()
        self.query_one(RunsTable).show(runs, self.live.sparks)
        selected = self.live.get(self.selected) if self.selected else None
        waiting = idle_for(selected.status.value, not selected.status.is_live) if selected else WAITING
        self.panel.chart.say_idle(
            waiting if runs or self._client is None else UNREACHABLE if self.has_class("stale")
            else no_runs(self.default_provider))

    @on(DataTable.RowSelected, "#runs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        """enter on the runs table (the table's own enter binding comes first)."""
        if event.row_key.value:
            self.select(event.row_key.value)
            self.action_open_run()

    @on(DataTable.RowHighlighted, "#runs")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value:
            self.select(event.row_key.value)

    # -- actions --------------------------------------------------------------------------------

    def action_new_run(self) -> None:
        """Open the launch form."""
        if self._client is None:
            self.notify("the control plane is still starting", severity="warning")
            return
        def launched(run: Run | None) -> None:
            if run is not None:
                self.live.put(run)
                self.show_runs()
                self.select(run.id)
                self.query_one(RunsTable).move_to(run.id)  # or the cursor's row selects the old run again
                self.notify(f"launched {run.name} on {run.provider}")

        from .launch import LaunchScreen

        self.app.push_screen(LaunchScreen(self._client, self.default_provider), launched)

    def _selected_run(self) -> Run | None:
        run = self.live.get(self.selected)
        if run is None:  # none, or one read from the store at start: the control plane has not answered yet
            self.notify("the control plane is still starting" if self.selected else "no run selected",
                        severity="warning")
        return run

    def action_terminate(self, ask: bool = True) -> None:
        """Terminate the selected run's pod (asks, unless ctrl+k)."""
        if (run := self._selected_run()) is not None:
            self.post_message(EndPodAsked(run.id, ask=ask))

    def action_stop(self) -> None:
        """Stop the selected run's pod (asks)."""
        if (run := self._selected_run()) is not None:
            self.post_message(EndPodAsked(run.id, stopping=True))

    async def action_panel(self, action: str) -> None:
        """The panel's keys (the action table's `panel` ones): bound here, they hold wherever this screen's focus is."""
        await self.panel.run_action(action)

    def action_open_run(self) -> None:
        """The selected run's detail screen."""
        run = self._selected_run()
        if run is None or self._client is None:
            return
        from .run_detail import RunDetailScreen

        self.app.push_screen(RunDetailScreen(self._client, self.live, run.id))

    def action_volumes(self) -> None:
        """The volumes view."""
        if self._client is None:
            self.notify("the control plane is still starting", severity="warning")
            return
        from .volumes import VolumesScreen

        self.app.push_screen(VolumesScreen(self._client, self.live, self.default_provider))

    def action_zoom(self) -> None:
        """Show the selected run full width; again: back to the runs table."""
        if self.has_class("zoomed"):
            self.action_unzoom()
        else:
            self.add_class("zoomed")

    def action_unzoom(self) -> None:
        """Back to the runs table."""
        self.remove_class("zoomed")
        self.query_one(RunsTable).focus()

    def _tick(self) -> None:
        """Uptime and cost of live runs grow without events: redraw them each second."""
        if self.live.live():
            self.show_runs(force=True)

