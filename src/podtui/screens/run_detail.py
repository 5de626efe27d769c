"""One run in full: what it was launched with, where its pod runs and what it costs, and every event of its life
(launch attempts, boot, download, guardrails, the end and why)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ..errors import ControlPlaneError
from ..fmt import format_bytes, format_duration
from ..handler_errors import ReportsHandlerErrors
from ..live import LiveRuns
from ..messages import EndPodAsked, RunEventArrived, RunUpdated
from ..widgets.key_hints import KeyHints
from ..widgets.keys import bindings
from ..widgets.palette import event_style, status_style, theme_colour
from ..wording import data_wait_text, outputs_line, status_label, volume_outputs_line

if TYPE_CHECKING:
    from textual.app import App

    from ..client import Client
    from ..models import OutputsPage, Run, RunEvent, RunNode


SHORT = 36
"""Below this many rows the run's facts scroll in a box of their own, so the events below them stay in view (at 80x24
the facts filled the screen)."""


TIME_WIDTH = 19
"""The events table's time column ("2026-09-21 14:13:21")."""


def clock(ts: float | None) -> str:
    """Local date and time of a timestamp ("-" when unset)."""
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def node_line(node: RunNode) -> str:
    """One node of a run as the run detail shows it."""
    parts = [f"node {node.rank}", node.pod_id or "(no pod yet)", node.status]
    if node.gpu_util is not None:
        parts.append(f"GPU {node.gpu_util:.0f}%" + (f" (memory {node.gpu_mem:.0f}%)" if node.gpu_mem is not None
                                                     else ""))
    if node.price_per_hour is not None:
        parts.append(f"${node.price_per_hour:.2f}/h")
    if node.spent_usd:
        parts.append(f"${node.spent_usd:.2f} spent")
    return "  ".join(parts)


def metrics_note(run: Run) -> str:
    """How the pod read the run's metrics from its output (why a curve looks as it does)."""
    asked = ", ".join(f"{flag} {value}" for flag, value in (("--metrics", run.spec.metrics),
                                                              ("--metrics-ranks", run.spec.metrics_ranks)) if value)
    note = run.metrics_source or "none read yet"
    return f"{note}  ({asked})" if asked else note


def attempts_text(run: Run, now: float) -> str:
    """One line per pod the run has had (--retries): which, how long, what it cost, why it ended."""
    lines = []
    for n, attempt in enumerate(run.attempts, 1):
        lasted = format_duration((attempt.ended_at or now) - (attempt.started_at or now))
        why = attempt.reason or ("now" if run.status.is_live else run.status.value)
        lines.append(f"{n}. pod {attempt.pod_id or '-'} on {attempt.gpu or '-'}, {lasted}, "
                     f"${attempt.cost_usd:.2f}: {why}")
    if run.status.is_live and not run.pod_id and run.attempt > len(run.attempts):
        lines.append(f"{run.attempt}. (a new pod is being made)")
    return "\n".join(lines) + f"\nup to {(run.spec.retries or 0) + 1} attempts (--retries {run.spec.retries or 0})"


def run_facts(app: App[object], run: Run, now: float) -> Table:
    """The run's facts as two columns of label/value pairs."""
    spec = run.spec
    status = Text(run.status.value, status_style(app, run.status.value))
    if run.pod_end_failed:  # it outranks how the run ended: the pod still bills
        status.append(f"  {run.pod_end_failed}", status_style(app, status_label(run)))
    elif run.status_reason:
        status.append(f"  {run.status_reason}", "dim")
    started = run.started_at or run.created_at
    price = "-" if run.price_per_hour is None else f"${run.price_per_hour:.2f}/h"
    limits = ", ".join(part for part in (
        f"max runtime {format_duration(spec.max_runtime_s)}" if spec.max_runtime_s else "",
        f"budget ${spec.budget_usd:.2f}" if spec.budget_usd is not None else "",
        f"keep alive {format_duration(spec.keep_alive_s)}" if spec.keep_alive_s else "",
    ) if part) or "none"
    cloud = f"  {spec.cloud_type.lower()} cloud{', spot' if spec.spot else ''}" if run.provider == "runpod" else ""
    rows: list[tuple[str, str | Text]] = [
        ("status", status),
        ("run", f"{run.name} ({run.id})"),
        ("pod", f"{run.provider} {run.pod_id or '(none yet)'}"),
        ("connect", "pull: the control plane reaches the pod's port " + (f"{run.pod_port} " if run.pod_port else "")
         + "(no public URL needed)" if run.connect == "pull" else "push: the pod reports to the control plane's URL"),
        ("GPU", f"{run.gpu_type or '-'} x{spec.gpu_count}{cloud}  (tried in order: {', '.join(spec.gpu_types)})"
         if spec.nodes <= 1 else f"{spec.nodes} nodes x {spec.gpu_count} {run.gpu_type or '-'} "
         f"({spec.nodes * spec.gpu_count} GPUs){cloud}  (tried in order: {', '.join(spec.gpu_types)})"),
        ("cost", f"{price}, ${run.cost_at(now):.2f} spent" + (f" over {run.attempt} attempts" if run.attempt > 1
                                                                  else "")),
        *([("attempts", attempts_text(run, now))] if run.spec.retries or run.attempt > 1 else []),
        ("GPU use", "-" if run.gpu_util is None else
         f"{run.gpu_util:.0f}% compute, {run.gpu_mem or 0:.0f}% memory (as {run.provider} reports it)"
         + (f"; warns below {spec.min_gpu_util_pct:.0f}% for {format_duration(spec.min_gpu_util_s)}"
            if spec.min_gpu_util_pct is not None else "")),
        *([("nodes", "\n".join(node_line(n) for n in run.nodes) or "(starting)")] if spec.nodes > 1 else []),
        ("time", f"created {clock(run.created_at)}, started {clock(run.started_at)}, "
                 f"ended {clock(run.ended_at)}; {format_duration((run.ended_at or now) - started)}"),
        ("progress", "-" if run.last_step is None else
         f"step {run.last_step}, loss {'-' if run.last_loss is None else f'{run.last_loss:.4g}'}"),
        ("metrics", metrics_note(run)),
        ("exit code", "-" if run.exit_code is None else str(run.exit_code)),
        ("dataset", f"{run.dataset_id[:16]}…" if spec.dataset == run.dataset_id
                    else f"{spec.dataset} ({run.dataset_id[:12]}…)"),
        ("data wait", data_wait_text(run.data_wait_s, run.data_wait_usd, run.status.value == "downloading")
         + (f"; volume {spec.volume} (datasets cached there)" if spec.volume else "")),
        ("command", spec.command or "(the demo trainer)"),
        ("workdir", spec.workdir or "-"),
        ("image", spec.image if run.provider != "local" else "- (a local pod runs on this machine, in no image)"),
        ("limits", limits),
        ("outputs", f"on volume {spec.volume}, podtui/outputs/{run.id}/: they stay there (`podtui outputs "
                    f"{run.id} --to DIR` fetches them)" if spec.outputs_on_volume else
                    f"{spec.outputs}/ in the workdir: home when the command ends"
                    + (f", and every {format_duration(spec.sync_outputs_s)} while it runs" if spec.sync_outputs_s
                       else "")),
        ("env", ", ".join(sorted(spec.env)) or "-"),  # names only: values may be secrets
    ]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in rows:
        table.add_row(label, value)
    return table


class RunDetailScreen(ReportsHandlerErrors, Screen[None]):
    """A run's facts and its event history, kept live from the app's runs and the live feed."""

    BINDINGS = bindings("detail")
    DEFAULT_CSS = """
    RunDetailScreen #facts-box { height: auto; }
    RunDetailScreen.short #facts-box { max-height: 11; }
    RunDetailScreen #facts { height: auto; padding: 0 1; }
    RunDetailScreen #events { height: 1fr; }
    RunDetailScreen #pod-log { height: 12; display: none; border: round $warning; padding: 0 1; }
    RunDetailScreen #pod-log.shown { display: block; }
    RunDetailScreen #outputs { height: auto; max-height: 12; padding: 0 1; }
    """

    def __init__(self, client: Client, live: LiveRuns, run_id: str) -> None:
        super().__init__()
        self.client = client
        self.live = live
        """The app's runs, kept current from the live feed."""
        self.run_id = run_id
        self._events: list[RunEvent] = []
        self._early: list[RunEvent] | None = []
        """Events the feed brought before the first page came (None once it has)."""

    def compose(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll(id="facts-box", classes="pane"):  # scrolls in a short terminal: events stay seen
                yield Static(id="facts")
            yield Static(id="outputs", classes="pane")
            yield Static(id="pod-log")
            yield DataTable(id="events", cursor_type="row", zebra_stripes=True, classes="pane")
        yield KeyHints()

    def on_mount(self) -> None:
        self.query_one("#facts-box").border_title = "run"
        self.set_class(self.app.size.height < SHORT, "short")
        events = self.query_one("#events", DataTable)
        events.border_title = "events"
        self._message_width = 0
        self._kind_width = len("event")
        self._set_event_columns(0)
        self.call_after_refresh(self._fit_messages)
        self.show_facts()
        self.load_events()
        self.set_interval(1.0, self.show_facts)  # time and cost grow between changes
        self.query_one("#pod-log").border_title = "pod log (the agent has not reported yet)"
        self.load_pod_log()
        self.set_interval(4.0, self.load_pod_log)
        self.app.theme_changed_signal.subscribe(self, lambda _: self._restyle())
        self.query_one("#outputs").border_title = "outputs"
        self._outputs: OutputsPage | None = None
        self._outputs_after_end = False
        self.load_outputs()
        self.set_interval(2.0, self.load_outputs)
        self.set_interval(1.0, lambda: None if self._outputs_settled() else self.show_outputs())  # the countdown

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height < SHORT, "short")
        self.call_after_refresh(self._fit_messages)

    def _set_event_columns(self, message_width: int) -> None:
        table = self.query_one("#events", DataTable)
        table.clear(columns=True)
        table.add_column("time")
        table.add_column("event", width=self._kind_width)
        table.add_column("message", width=message_width or None)

    def _fit_messages(self, force: bool = False) -> None:
        """The message column as wide as the table leaves it, its lines wrapped in it: a failure's tail (long
        paths) was cut at the right edge of an 80-column terminal."""
        table = self.query_one("#events", DataTable)
        room = table.scrollable_content_region.width
        if room <= 0 and not force:
            return  # not laid out yet: fitted after the next refresh
        # Room for a vertical scrollbar too: rows added later (more events, taller ones) may bring one.
        reserve = 0 if table.show_vertical_scrollbar else table.styles.scrollbar_size_vertical
        width = max(24, room - reserve - TIME_WIDTH - self._kind_width - 3 * 2 * table.cell_padding) if room > 0 else 0
        if width != self._message_width or force:
            self._message_width = width
            self._set_event_columns(width)
            events, self._events = self._events, []
            self._add_events(events)

    @work(exclusive=True, group="detail-outputs", exit_on_error=False)
    async def load_outputs(self) -> None:
        """The run's outputs: what is home (name, size, sha256, time) and what still moves; no more asking once
        they can no longer change."""
        if self._outputs_settled():
            return
        run = self.live.get(self.run_id)
        ended = run is not None and not run.status.is_live  # before asking: the page is from after the end
        try:
            page = await self.client.outputs(self.run_id)
        except ControlPlaneError:
            return  # an older control plane without outputs, or a blip: the next poll tries again
        self._outputs, self._outputs_after_end = page, ended
        self.show_outputs()

    def _outputs_settled(self) -> bool:
        """The outputs were last read after the run ended, and they are home, or nothing moves and the pod is gone
        (a minute's margin past the keep-alive bound for the last word)."""
        page = self._outputs
        if page is None or not self._outputs_after_end:
            return False
        s = page.summary
        return s.state == "home" or (s.state != "moving" and (s.pod_until or 0) + 60 < time.time())

    def show_outputs(self) -> None:
        page = self._outputs
        if page is None:
            return
        table = Table.grid(padding=(0, 2))
        table.add_column(overflow="fold")
        table.add_column(justify="right", no_wrap=True)
        table.add_column(style="dim", no_wrap=True)
        table.add_column(style="dim", no_wrap=True)
        run = self.live.get(self.run_id)
        more_may_come = run is None or run.pod_in_use(time.time())
        style = theme_colour(self.app, "text-success") if page.summary.state == "home" else ""
        head = Text(outputs_line(page, more_may_come), style)
        files = page.files
        if page.volume is not None and not page.files:  # --outputs-on-volume: what is there (none fetched yet)
            head, files = Text(volume_outputs_line(page.volume)), page.volume.files
        for f in files[:8]:
            size = "-" if f.size is None else format_bytes(f.size)
            moving = "" if f.moving_size is None else \
                f"  moving {format_bytes(f.received)}/{format_bytes(f.moving_size)}"
            table.add_row(f.path, size, (f.sha256 or "")[:16], clock(f.home_at) + moving)
        if len(files) > 8:
            table.add_row(f"… {len(files) - 8} more (`podtui outputs {self.run_id}`)", "", "", "")
        grid = Table.grid()
        grid.add_row(head)
        if files:
            grid.add_row(table)
        self.query_one("#outputs", Static).update(grid)

    @work(group="detail-sync", exit_on_error=False)
    async def action_sync_outputs(self) -> None:
        """Ask the pod for its outputs now."""
        try:
            await self.client.sync_outputs(self.run_id)
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="warning")
            return
        self.notify("asked the pod for its outputs; they show here as they arrive")

    def show_facts(self) -> None:
        run = self.live.get(self.run_id)
        if run is not None:
            self.query_one("#facts", Static).update(run_facts(self.app, run, time.time()))

    def on_run_updated(self, message: RunUpdated) -> None:
        if message.run.id == self.run_id:
            self.show_facts()

    def on_run_event_arrived(self, message: RunEventArrived) -> None:
        if message.event.run_id != self.run_id:
            return
        if self._early is not None:
            self._early.append(message.event)
        else:
            self._add_events([message.event])

    @work(exclusive=True, group="detail-events", exit_on_error=False)
    async def load_events(self) -> None:
        """The run's events so far; the live feed brings the ones after."""
        try:
            events = await self.client.run_events(self.run_id)
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error")
            return
        early, self._early = self._early or [], None
        self._add_events(events + early)

    def _add_events(self, events: list[RunEvent]) -> None:
        """Append events not shown yet, in order (one can come both in the first page and on the feed)."""
        table = self.query_one("#events", DataTable)
        last = self._events[-1].id if self._events else 0
        new = sorted({e.id: e for e in events if e.id > last}.values(), key=lambda e: e.id)
        wider = max((len(e.kind) for e in new), default=0)
        if wider > self._kind_width:  # the kind column grows, the message column gives way
            self._kind_width = wider
            self._events.extend(new)
            self._fit_messages(force=True)
            return
        for event in new:
            self._events.append(event)
            # whole, however many lines (a failure's tail is its last log lines): the row grows to fit them
            table.add_row(clock(event.ts), Text(event.kind, event_style(self.app, event.kind)),
                          Text(event.message.rstrip("\n"), overflow="fold"), height=None)
        if new:
            table.move_cursor(row=table.row_count - 1)

    def _restyle(self) -> None:
        """The theme changed: colours are baked into the rows, so draw them again."""
        events, self._events = self._events, []
        self._set_event_columns(self._message_width)
        self._add_events(events)
        self.show_facts()

    @work(exclusive=True, group="detail-pod-log", exit_on_error=False)
    async def load_pod_log(self) -> None:
        """While a pod boots without a word from its agent, the tail of its provider-side logs: an image that
        cannot be pulled or a crash before the agent shows here."""
        run = self.live.get(self.run_id)
        pane = self.query_one("#pod-log", Static)
        if run is None or not run.pod_id or run.last_heartbeat is not None or not run.status.is_live:
            pane.set_class(False, "shown")
            return
        try:
            logs = await self.client.pod_logs(self.run_id, tail=10)
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error")
            return
        text = Text()
        for line in logs.lines[-10:]:
            text.append(f"{line.source[:3]} ", "dim")
            text.append(line.line + "\n")
        if not logs.lines:
            text.append(logs.note or "nothing logged yet", "dim")
        pane.update(text)
        pane.set_class(True, "shown")

    def action_terminate(self) -> None:
        """Terminate this run's pod (asks)."""
        self.post_message(EndPodAsked(self.run_id))

    def action_stop(self) -> None:
        """Stop this run's pod (asks)."""
        self.post_message(EndPodAsked(self.run_id, stopping=True))
