"""The dashboard: the runs table; the selected run's download progress, loss chart and log stream."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Input, ProgressBar, Static

from ..errors import ControlPlaneError
from ..live import SPARK_POINTS, LiveRuns
from ..messages import LogsArrived, MetricsArrived, RunEventArrived, RunUpdated
from ..metric_names import TRAIN_LOSS_NAMES
from ..models import NODE_SEQ_STRIDE
from ..widgets.key_hints import KeyHints
from ..widgets.log_view import Line, LogView
from ..widgets.loss_chart import WAITING, LossChart, SeriesData, no_runs
from ..widgets.runs_table import RunsTable

if TYPE_CHECKING:  # the client (httpx) and the models load once the control plane answers, after the first frame
    from ..app import PodtuiApp
    from ..client import Client
    from ..models import MetricsPage, Run

CHART_POINTS = 4000


def series_data(page: MetricsPage) -> SeriesData:
    """A metrics page as the chart takes it."""
    return {name: (s.steps, s.values, s.ts) for name, s in page.series.items()}


class Dashboard(Screen[None]):
    """The main screen."""

    BINDINGS = [
        Binding("n", "new_run", "New run", id="run.new", tooltip="Open the launch form"),
        Binding("enter", "open_run", "Open run", id="run.open",
                tooltip="The selected run's launch spec, pod, cost and events"),
        Binding("z", "zoom", "Zoom", id="run.zoom", show=False, tooltip="Chart and logs full width (esc: back)"),
        Binding("ctrl+d", "terminate", "Terminate", id="run.terminate", tooltip="Terminate the run's pod (asks)"),
        Binding("ctrl+k", "terminate(False)", "Kill", id="run.kill", show=False,
                tooltip="Terminate the run's pod without asking"),
        Binding("s", "stop", "Stop", id="run.stop", tooltip="Stop the run's pod (asks)"),
        Binding("l", "focus_logs", "Logs", id="logs.focus", tooltip="Focus the log stream"),
        Binding("slash", "filter", "Filter", key_display="/", id="logs.filter", tooltip="Filter log lines"),
        Binding("f", "follow", "Follow", id="logs.follow", tooltip="Follow new log lines on/off"),
        Binding("t", "timestamps", "Times", id="logs.timestamps", show=False, tooltip="Timestamps on/off"),
        Binding("g", "log_y", "Log-y", id="chart.log_y", tooltip="Logarithmic y axis on/off"),
        Binding("plus", "smoothing(0.1)", "Smooth+", key_display="+", id="chart.smooth_more", show=False,
                tooltip="More smoothing"),
        Binding("minus", "smoothing(-0.1)", "Smooth-", key_display="-", id="chart.smooth_less", show=False,
                tooltip="Less smoothing"),
        Binding("x", "x_axis", "Step/time", id="chart.x_axis", show=False, tooltip="x axis by step or wall time"),
        Binding("h", "older_logs", "Older", id="logs.older", show=False,
                tooltip="Page in older log lines from the store"),
        Binding("c", "compare", "Compare", id="chart.compare",
                tooltip="Overlay this run's loss on the next run you select (again: clear)"),
        Binding("escape", "unzoom", "Back", id="run.back", show=False, tooltip="Leave the full-width view"),
    ]
    DEFAULT_CSS = """
    Dashboard #main { height: 1fr; }
    Dashboard RunsTable { width: 56%; }
    Dashboard.zoomed RunsTable { display: none; }
    Dashboard #detail { width: 1fr; }
    Dashboard #progress-row { height: 1; }
    Dashboard #status { height: 1; background: $boost; color: $text-muted; padding: 0 1; }
    Dashboard #filter { display: none; height: 3; }
    Dashboard #filter.active { display: block; }
    """

    def __init__(self, status_line: str) -> None:
        super().__init__()
        self._client: Client | None = None
        self.status_line = status_line
        self.selected: str | None = None
        self.compare_with: str | None = None
        self._table_version = -1
        self._progress_bar: ProgressBar | None = None
        self._focus_before_filter: Widget | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield RunsTable(id="runs", classes="pane")
            with Vertical(id="detail"):
                # the download bar and the filter box are mounted when first needed: mounting them for the
                # first frame took half its time
                yield LossChart(id="chart", classes="pane")
                yield LogView(id="logs", classes="pane")
        yield Static(self.status_line, id="status")
        yield KeyHints()

    def on_mount(self) -> None:
        self.set_interval(0.5, self.show_runs)
        self.set_interval(1.0, self._tick)

    @property
    def podtui(self) -> PodtuiApp:
        return self.app  # type: ignore[return-value]

    @property
    def live(self) -> LiveRuns:
        """The app's runs, kept current from the live feed."""
        return self.podtui.live

    @property
    def client(self) -> Client:
        """The control plane's client (set once it answers)."""
        if self._client is None:
            raise ControlPlaneError("the control plane is still starting")
        return self._client

    def attach(self, client: Client, status_line: str) -> None:
        """The control plane is up: load the runs and check for orphan pods a little later."""
        self._client = client
        self.query_one("#status", Static).update(status_line)
        if self.selected is not None:  # selected while the control plane started (the runs came from its store)
            self.load_selected(self.selected)
        self.load_runs()
        # Later, so that asking RunPod (and importing its SDK) never slows the start.
        self.set_timer(15.0, self.check_orphans)

    # -- loading --------------------------------------------------------------------------------

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

    @work(exclusive=True, group="orphans", exit_on_error=False)
    async def check_orphans(self) -> None:
        """Warn about pods named like podtui's that no run knows (they bill unseen)."""
        try:
            orphans = await self.client.orphans()
        except ControlPlaneError as exc:
            self.notify(f"could not check for orphan pods: {exc.message}", severity="warning")
            return
        if orphans:
            self.notify(f"{len(orphans)} pod(s) named podtui-* belong to no run and may be billing: "
                        f"{', '.join(o.pod_id for o in orphans[:3])}. `podtui orphans --terminate` ends them.",
                        severity="error", timeout=30)

    def select(self, run_id: str) -> None:
        """Show a run in the chart and the log view."""
        if run_id == self.selected:
            return
        self.selected = run_id
        self.podtui.follow.set([run_id, self.compare_with])
        chart = self.query_one(LossChart)
        chart.clear()
        if self.compare_with not in (None, run_id) and self._client is not None:
            self.load_compare(self.compare_with)
        else:
            chart.set_compare("", {})  # not over itself
        self.query_one(LogView).reset()
        if self._client is not None:  # else attach() loads it
            self.load_selected(run_id)
        self._show_progress()

    @work(exclusive=True, group="selected", exit_on_error=False)
    async def load_selected(self, run_id: str) -> None:
        """The selected run's whole curves (reduced for long runs), last log lines and events."""
        try:
            page = await self.client.metrics(run_id, max_points=CHART_POINTS)
            nodes = run.spec.nodes if (run := self.live.get(run_id)) is not None else 1
            if nodes > 1:  # each node numbers its lines in its own range: the last lines of each, by time
                lines = sorted([x for k in range(nodes) for x in (await self.client.logs(
                    run_id, after_seq=k * NODE_SEQ_STRIDE - 1, before_seq=(k + 1) * NODE_SEQ_STRIDE,
                    limit=max(200, 2000 // nodes), tail=True)).lines], key=lambda x: x.ts)
            else:
                lines = (await self.client.logs(run_id, limit=2000, tail=True)).lines
            events = await self.client.run_events(run_id)
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error")
            return
        if run_id != self.selected:
            return
        chart = self.query_one(LossChart)
        chart.set_series(series_data(page))
        chart.border_title = f"loss · {self.live.name_of(run_id)}"
        # The run's events among its lines by time; the lines keep their own order (by seq: a resorted line would
        # look like a resend to the view).
        notes = sorted((Line(None, e.ts, f"» {e.kind}: {e.message.splitlines()[0] if e.message else ''}")
                        for e in events), key=lambda line: line.ts)
        view = self.query_one(LogView)
        view.tagged = nodes > 1
        view.reset(list(heapq.merge([Line(x.seq, x.ts, x.text) for x in lines], notes,
                                    key=lambda line: line.ts)))
        view.border_title = f"logs · {self.live.name_of(run_id)}"
        if (run := self.live.get(run_id)) is not None:
            view.set_live(run.live)

    # -- live events ----------------------------------------------------------------------------

    def on_run_updated(self, message: RunUpdated) -> None:
        run = message.run
        if self.selected is None:
            self.select(run.id)
        if run.id == self.selected:
            self._show_progress()
            self.query_one(LogView).set_live(run.live)

    def on_metrics_arrived(self, message: MetricsArrived) -> None:
        if message.run_id in (self.selected, self.compare_with):
            points = [(p.name, p.step, float(p.value), p.ts) for p in message.points]
            self.query_one(LossChart).add_points(points, compare=message.run_id != self.selected)

    def on_logs_arrived(self, message: LogsArrived) -> None:
        if message.run_id == self.selected:
            self.query_one(LogView).add([Line(x.seq, x.ts, x.text) for x in message.lines])

    def on_run_event_arrived(self, message: RunEventArrived) -> None:
        event = message.event
        first = event.message.splitlines()[0] if event.message else ""
        if event.run_id == self.selected:
            self.query_one(LogView).note(f"{event.kind}: {first}")
        name = self.live.name_of(event.run_id)
        if event.kind in ("attempt_failed", "terminate_failed"):
            self.notify(f"{name}: {first}", severity="warning", timeout=8)
        elif event.kind in ("failed", "lost"):
            self.notify(f"{name} {event.kind}: {first}", severity="error", timeout=15)
        elif event.kind in ("succeeded", "terminated"):
            self.notify(f"{name} {event.kind}: {first}", timeout=8)

    def show_runs(self, force: bool = False) -> None:
        """Show the runs when they changed since last shown (or always: uptime and cost grow without events)."""
        if self._table_version == self.live.version and not force:
            return
        self._table_version = self.live.version
        runs = self.live.newest_first()
        self.query_one(RunsTable).show(runs, self.live.sparks)
        self.query_one(LossChart).say_idle(WAITING if runs or self._client is None
                                           else no_runs(self.podtui.default_provider))

    def _show_progress(self) -> None:
        """The dataset download bar of the selected run, while its pod downloads."""
        run = self.live.get(self.selected)
        if run is None or run.status.value != "downloading" or not run.progress:
            if self._progress_bar is not None:
                self.query("#progress-row").remove()
                self._progress_bar = None
            return
        bar = self._progress_bar
        if bar is None:
            bar = self._progress_bar = ProgressBar(show_eta=False, id="progress")
            self.query_one("#detail").mount(Horizontal(Static("dataset ", id="progress-label"), bar,
                                                       id="progress-row"), before=0)
        bar.update(total=max(1, run.progress.bytes_total), progress=run.progress.bytes_done)

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

        self.app.push_screen(LaunchScreen(self._client, self.podtui.default_provider), launched)

    def _selected_run(self) -> Run | None:
        run = self.live.get(self.selected)
        if run is None:
            self.notify("no run selected", severity="warning")
        return run

    def action_terminate(self, ask: bool = True) -> None:
        """Terminate the selected run's pod (asks, unless ctrl+k)."""
        if (run := self._selected_run()) is not None:
            self.podtui.action_terminate_run(run.id, ask)

    def action_stop(self) -> None:
        """Stop the selected run's pod (asks)."""
        if (run := self._selected_run()) is not None:
            self.podtui.action_stop_run(run.id)

    def action_focus_logs(self) -> None:
        """Focus the log stream (arrows scroll it)."""
        self.query_one(LogView).focus()

    async def action_filter(self) -> None:
        """Show the filter box."""
        boxes = self.query("#filter").results(Input)
        box = next(boxes, None)
        if box is None:
            box = Input(placeholder="filter log lines (node:K first: one node's; enter applies, esc clears)",
                        id="filter")
            await self.query_one("#detail").mount(box)
        if not box.has_focus:
            self._focus_before_filter = self.app.focused
        box.add_class("active")
        box.focus()

    def _close_filter(self, box: Input) -> None:
        """Hide the filter box; the focus goes back where it was (the arrows moved the runs table, then did not)."""
        box.remove_class("active")
        before, self._focus_before_filter = self._focus_before_filter, None
        (before if before is not None and before.is_attached else self.query_one(RunsTable)).focus()

    @on(Input.Submitted, "#filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        self.query_one(LogView).filter_text = event.value.strip()
        self._close_filter(event.input)

    def on_key(self, event: Any) -> None:
        box = next(self.query("#filter").results(Input), None)
        if event.key == "escape" and box is not None and box.has_focus:
            box.value = ""
            self.query_one(LogView).filter_text = ""
            self._close_filter(box)
            event.stop()

    def action_follow(self) -> None:
        """Follow new lines on/off."""
        view = self.query_one(LogView)
        view.follow = not view.follow

    def action_timestamps(self) -> None:
        """Timestamps on/off."""
        view = self.query_one(LogView)
        view.show_timestamps = not view.show_timestamps

    def action_log_y(self) -> None:
        """Log-y on/off."""
        chart = self.query_one(LossChart)
        chart.log_y = not chart.log_y

    def action_smoothing(self, delta: float) -> None:
        """More or less smoothing."""
        chart = self.query_one(LossChart)
        chart.smoothing = round(min(0.99, max(0.0, chart.smoothing + delta)), 2)

    def action_x_axis(self) -> None:
        """x by step or by wall time."""
        chart = self.query_one(LossChart)
        chart.by_time = not chart.by_time

    def action_older_logs(self) -> None:
        """Page in the log lines before the oldest one shown."""
        if self.selected is not None:
            self.load_older(self.selected)

    @work(exclusive=True, group="older", exit_on_error=False)
    async def load_older(self, run_id: str) -> None:
        """Fetch a page of older lines from the store."""
        view = self.query_one(LogView)
        first = view.first_seq
        if first is None or first == 0:
            self.notify("no older log lines")
            return
        try:
            page = await self.client.logs(run_id, limit=2000, before_seq=first)
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error")
            return
        if run_id == self.selected:
            view.prepend([Line(line.seq, line.ts, line.text) for line in page.lines])

    def action_compare(self) -> None:
        """Overlay the selected run's loss on the next run selected; `c` again clears the comparison."""
        chart = self.query_one(LossChart)
        if self.compare_with is not None or self.selected is None:
            self.compare_with = None
            self.podtui.follow.set([self.selected])
            chart.set_compare("", {})
            self.notify("comparison cleared")
            return
        self.compare_with = self.selected
        self.notify(f"{self.live.name_of(self.selected)}'s loss goes over the next run you select (c again: clear)")

    @work(exclusive=True, group="compare", exit_on_error=False)
    async def load_compare(self, run_id: str) -> None:
        """Fetch the comparison run's curves."""
        try:
            page = await self.client.metrics(run_id, max_points=CHART_POINTS)
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error")
            return
        if run_id == self.compare_with and run_id != self.selected:
            self.query_one(LossChart).set_compare(self.live.name_of(run_id), series_data(page))

    def action_open_run(self) -> None:
        """The selected run's detail screen."""
        run = self._selected_run()
        if run is None or self._client is None:
            return
        from .run_detail import RunDetailScreen

        self.app.push_screen(RunDetailScreen(self._client, run.id))

    def action_zoom(self) -> None:
        """Show the selected run full width."""
        self.add_class("zoomed")

    def action_unzoom(self) -> None:
        """Back to the runs table."""
        self.remove_class("zoomed")
        self.query_one(RunsTable).focus()

    def _tick(self) -> None:
        """Uptime and cost of live runs grow without events: redraw them each second."""
        if self.live.live():
            self.show_runs(force=True)

