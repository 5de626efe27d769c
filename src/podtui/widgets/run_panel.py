"""The selected run in full: its dataset download bar, its loss chart (another run's overlaid on demand), its log
stream and the log filter. `run_id` and `compare_id` say which runs; the panel fetches their history and takes the
live feed's messages for them (its screen forwards them)."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, ProgressBar, Static

from ..bootstrap.agent.nodes import NODE_SEQ_STRIDE
from ..errors import ControlPlaneError
from ..live import Follow, LiveRuns
from ..messages import LogsArrived, MetricsArrived, RunEventArrived, RunUpdated
from ..metric_names import LOSS_NAMES
from .log_view import Line, LogView
from .loss_chart import LossChart, resume_steps

if TYPE_CHECKING:  # the client (httpx) and the models load once the control plane answers, after the first frame
    from ..client import Client
    from ..models import RunEvent

CHART_POINTS = 4000


class DownloadRow(Horizontal):
    """The shown run's dataset download bar: one row, mounted with the first download and then only updated
    (removing and mounting it again as the selection moved raced with itself: `DuplicateIds 'progress-row'`)."""

    DEFAULT_CSS = """
    DownloadRow { height: 1; display: none; }
    DownloadRow.shown { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.bar = ProgressBar(show_eta=False, id="progress")  # made here: it updates before it is mounted

    def compose(self) -> ComposeResult:
        yield Static("dataset ", id="progress-label")
        yield self.bar

    def show(self, done: int, total: int) -> None:
        self.bar.update(total=max(1, total), progress=done)
        self.add_class("shown")


class RunPanel(Vertical):
    """A run's download bar, chart and logs, kept live."""

    DEFAULT_CSS = """
    RunPanel #filter { display: none; height: 3; }
    RunPanel #filter.active { display: block; }
    """

    run_id: reactive[str | None] = reactive(None, init=False)
    """The run shown (the runs table's selection)."""
    compare_id: reactive[str | None] = reactive(None, init=False)
    """The run whose loss is overlaid on the chart; never drawn over itself."""

    def __init__(self, live: LiveRuns, follow: Follow, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.live = live
        self.follow = follow
        self.client: Client | None = None
        """The control plane's client, once it answers (history is fetched from then on)."""
        self._events_shown: dict[int, RunEvent] = {}
        """The shown run's events among its log lines, by id: one that comes both in the first page and on the
        feed (replayed when the subscription changes) shows once."""
        self._download: DownloadRow | None = None
        self._focus_before_filter: Widget | None = None

    def compose(self) -> ComposeResult:
        # the download bar and the filter box are mounted when first needed: mounting them for the first frame
        # took half its time
        yield LossChart(id="chart", classes="pane")
        yield LogView(id="logs", classes="pane")

    @property
    def chart(self) -> LossChart:
        return self.query_one(LossChart)

    @property
    def logs(self) -> LogView:
        return self.query_one(LogView)

    def attach(self, client: Client) -> None:
        """The control plane answers: fetch what is shown."""
        self.client = client
        if self.run_id is not None:
            self.load_selected(self.run_id)
        self._show_compare()

    def watch_run_id(self, run_id: str | None) -> None:
        self.follow.set([run_id, self.compare_id])  # before fetching: what the fetch misses comes on the feed
        self.chart.clear()
        self._show_compare()
        self.logs.reset()
        self._events_shown = {}
        if run_id is not None:  # named at once: the titles told the last run's name until its data came
            self._titled(run_id)
        if self.client is not None and run_id is not None:  # else attach() loads it
            self.load_selected(run_id)
        self.show_progress()

    def watch_compare_id(self, compare_id: str | None) -> None:
        self.follow.set([self.run_id, compare_id])
        self._show_compare()

    def _show_compare(self) -> None:
        if self.compare_id not in (None, self.run_id) and self.client is not None:
            self.load_compare(self.compare_id)
        else:
            self.chart.set_compare("", {})  # none, or not over itself

    def _titled(self, run_id: str) -> None:
        name = self.live.name_of(run_id)
        self.chart.border_title, self.logs.border_title = f"loss · {name}", f"logs · {name}"

    @work(exclusive=True, group="selected", exit_on_error=False)
    async def load_selected(self, run_id: str) -> None:
        """The run's whole curves (reduced for long runs), last log lines and events."""
        assert self.client is not None
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
        if run_id != self.run_id:
            return
        loss = next((page.series[n] for n in LOSS_NAMES if n in page.series), None)
        self.chart.set_series(page.series, resume_steps(loss.steps, loss.attempts) if loss and loss.attempts else [])
        if getattr(run, "attempt", 1) > len(self.chart.resumes) + 1:
            # a later attempt whose first points have not come yet (the lost pod's last ones may come after its
            # attempt_lost event): the next ones mark it, and bring the series again
            self.chart.resume_pending = True
        self._titled(run_id)  # again: a run selected before the live runs came is named by now
        # The run's events among its lines by time; the lines keep their own order (by seq: a resorted line would
        # look like a resend to the view).
        self._events_shown.update({e.id: e for e in events})  # and those the feed brought meanwhile
        notes = sorted((Line(None, e.ts, f"» {e.kind}: {e.message.splitlines()[0] if e.message else ''}")
                        for e in self._events_shown.values()), key=lambda line: line.ts)
        view = self.logs
        view.tagged = nodes > 1
        view.reset(list(heapq.merge([Line(x.seq, x.ts, x.text) for x in lines], notes,
                                    key=lambda line: line.ts)))
        if (run := self.live.get(run_id)) is not None:
            view.set_live(run.live)

    @work(exclusive=True, group="compare", exit_on_error=False)
    async def load_compare(self, run_id: str) -> None:
        """The overlaid run's curves."""
        assert self.client is not None
        try:
            page = await self.client.metrics(run_id, max_points=CHART_POINTS)
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error")
            return
        if run_id == self.compare_id and run_id != self.run_id:
            self.chart.set_compare(self.live.name_of(run_id), page.series)

    @work(exclusive=True, group="older", exit_on_error=False)
    async def load_older(self) -> None:
        """A page of the log lines before the oldest one shown, from the store."""
        run_id, first = self.run_id, self.logs.first_seq
        if run_id is None or self.client is None:
            return
        if first is None or first == 0:
            self.notify("no older log lines")
            return
        try:
            page = await self.client.logs(run_id, limit=2000, before_seq=first)
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error")
            return
        if run_id == self.run_id:
            self.logs.prepend([Line(line.seq, line.ts, line.text) for line in page.lines])

    def show_progress(self) -> None:
        """The download bar while the shown run's pod downloads its dataset."""
        run = self.live.get(self.run_id)
        if run is None or run.status.value != "downloading" or not run.progress:
            if self._download is not None:
                self._download.remove_class("shown")
            return
        if self._download is None:
            self._download = DownloadRow(id="progress-row")
            self.mount(self._download, before=0)
        self._download.show(run.progress.bytes_done, run.progress.bytes_total)

    # -- the live feed (the screen forwards its messages) --------------------------------------

    def on_run_updated(self, message: RunUpdated) -> None:
        if message.run.id == self.run_id:
            self.show_progress()
            self.logs.set_live(message.run.live)

    def on_metrics_arrived(self, message: MetricsArrived) -> None:
        if message.run_id in (self.run_id, self.compare_id):
            pending = self.chart.resume_pending
            self.chart.add_points(message.points, compare=message.run_id != self.run_id)
            if pending and not self.chart.resume_pending and self.client is not None:
                # The new pod's first points: the series again from the control plane, where a later attempt's
                # values replace the steps it redid and each resume is marked at its own first step (the feed's
                # order around the attempt's events marks it only roughly).
                self.load_selected(message.run_id)

    def on_logs_arrived(self, message: LogsArrived) -> None:
        if message.run_id == self.run_id:
            self.logs.add([Line(x.seq, x.ts, x.text) for x in message.lines])

    def on_run_event_arrived(self, message: RunEventArrived) -> None:
        event = message.event
        if event.run_id == self.run_id and event.id not in self._events_shown:
            self._events_shown[event.id] = event
            self.logs.note(f"{event.kind}: {event.message.splitlines()[0] if event.message else ''}")
            if event.kind == "attempt_lost":  # the next points come from the new pod: mark where it resumed
                self.chart.resume_pending = True

    # -- keys (the action table's `panel` actions, bound on the dashboard) ------------------------

    def action_focus_logs(self) -> None:
        """Focus the log stream (arrows scroll it)."""
        self.logs.focus()

    async def action_filter(self) -> None:
        """Show the log filter box."""
        await self.open_filter()

    def action_follow(self) -> None:
        """Follow new lines on/off."""
        self.logs.follow = not self.logs.follow

    def action_timestamps(self) -> None:
        """Timestamps on/off."""
        self.logs.show_timestamps = not self.logs.show_timestamps

    def action_log_y(self) -> None:
        """Log-y on/off."""
        self.chart.log_y = not self.chart.log_y

    def action_smoothing(self, delta: float) -> None:
        """More or less smoothing."""
        self.chart.smoothing = round(min(0.99, max(0.0, self.chart.smoothing + delta)), 2)

    def action_x_axis(self) -> None:
        """x by step or by wall time."""
        self.chart.by_time = not self.chart.by_time

    def action_older_logs(self) -> None:
        """Page in the log lines before the oldest one shown."""
        self.load_older()

    def action_compare(self) -> None:
        """Overlay the shown run's loss on the next run shown; `c` again clears the comparison."""
        if self.compare_id is not None or self.run_id is None:
            self.compare_id = None
            self.notify("comparison cleared")
            return
        self.compare_id = self.run_id
        self.notify(f"{self.live.name_of(self.run_id)}'s loss goes over the next run you select (c again: clear)")

    # -- the log filter ------------------------------------------------------------------------

    async def open_filter(self) -> None:
        """Show the filter box and focus it."""
        box = next(self.query("#filter").results(Input), None)
        if box is None:
            box = Input(placeholder="filter log lines (node:K first: one node's; enter applies, esc clears)",
                        id="filter")
            await self.mount(box)
        if not box.has_focus:
            self._focus_before_filter = self.app.focused
        box.add_class("active")
        box.focus()

    def _close_filter(self, box: Input) -> None:
        """Hide the filter box; the focus goes back where it was (the arrows moved the runs table, then did not)."""
        box.remove_class("active")
        before, self._focus_before_filter = self._focus_before_filter, None
        if before is not None and before.is_attached:
            before.focus()
        else:
            self.screen.set_focus(None)
            self.screen.focus_next()  # the first in the screen's focus chain

    @on(Input.Submitted, "#filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        self.logs.filter_text = event.value.strip()
        self._close_filter(event.input)

    def on_key(self, event: Any) -> None:
        box = next(self.query("#filter").results(Input), None)
        if event.key == "escape" and box is not None and box.has_focus:
            box.value = ""
            self.logs.filter_text = ""
            self._close_filter(box)
            event.stop()
