"""The log stream of the selected run: buffered and flushed 10 times a second with one write_lines call,
a follow toggle, a filter, timestamps on demand, a marker where sequence numbers skip, and the progress rows
the run is drawing now (a tqdm bar) as the last rows, replaced in place rather than added."""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass

from textual.geometry import Size
from textual.reactive import reactive
from textual.widgets import Log

from ..bootstrap.agent.nodes import node_of_seq  # stdlib only: nothing heavy before the first frame

MAX_LINES = 10_000
STAMPED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
"""A line that says its own time (the start script's and the agent's): `t` adds no second one."""
NODE_FILTER = re.compile(r"^\s*node:(\d{1,3})\b\s*(.*)$", re.IGNORECASE)


def parse_filter(text: str) -> tuple[int | None, str]:
    """(node, lower-case text) of a log filter: `node:1 loss` keeps node 1's lines with `loss`."""
    m = NODE_FILTER.match(text)
    if m is None:
        return None, text.lower()
    return int(m.group(1)), m.group(2).lower()


@dataclass
class Line:
    """One line as shown."""

    seq: int | None
    ts: float
    text: str


class LogView(Log):
    """A Log fed in batches."""

    DEFAULT_CSS = """
    LogView { height: 1fr; }
    """

    follow: reactive[bool] = reactive(True)
    """Scroll to each new line."""
    filter_text: reactive[str] = reactive("")
    """Only lines containing this text (case-insensitive) are shown; `node:K` first keeps node K's lines only
    (a run of several nodes)."""
    show_timestamps: reactive[bool] = reactive(False)
    """Prefix lines with their time."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=True, id=id, classes=classes)
        self.history: deque[Line] = deque(maxlen=MAX_LINES)
        self.pending: list[Line] = []
        self.last_seq: int | None = None
        self.last_seqs: dict[int, int] = {}
        """Per node, the last line number shown (each node numbers its lines in its own range)."""
        self.tagged = False
        """The run has several nodes: each line shows its node."""
        self.missing = 0
        self.live: list[str] = []
        self._live_shown = 0
        self._live_dirty = False
        self._filter: tuple[int | None, str] = (None, "")
        """`filter_text` parsed, once per change (not once per line shown)."""

    def on_mount(self) -> None:
        self.border_title = "logs"
        self.set_interval(0.1, self.flush)

    def reset(self, lines: list[Line] | None = None) -> None:
        """Show another run: clear, then these lines."""
        self.history.clear()
        self.pending.clear()
        self.last_seq = None
        self.last_seqs = {}
        self.missing = 0
        self.live, self._live_shown, self._live_dirty = [], 0, False
        self.clear()
        self.add(lines or [])
        self.flush()
        if self.follow:  # the new run's last lines (flush goes by where the old run's view was)
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def add(self, lines: list[Line]) -> None:
        """Queue lines (written on the next flush); a skipped seq adds a `… N lines missing …` line."""
        for line in lines:
            if line.seq is not None:
                node = node_of_seq(line.seq)
                last = self.last_seqs.get(node)
                if last is not None and line.seq <= last:
                    continue  # already shown (a resend)
                if last is not None and line.seq > last + 1:
                    gap = line.seq - last - 1
                    self.missing += gap
                    self.pending.append(Line(None, line.ts, f"… {gap} line{'s' if gap != 1 else ''} missing …"))
                self.last_seqs[node] = line.seq
                self.last_seq = line.seq
            self.pending.append(line)

    @property
    def first_seq(self) -> int | None:
        """The oldest line shown that came from the pod."""
        return next((line.seq for line in self.history if line.seq is not None), None)

    def prepend(self, lines: list[Line]) -> None:
        """Older lines (paged in from the store) before what is shown."""
        if not lines:
            return
        self.flush()
        room = MAX_LINES - len(self.history)
        older = lines[-room:] if room > 0 else []
        self.history.extendleft(reversed(older))
        self._rewrite()
        self.scroll_home(animate=False)

    def note(self, text: str) -> None:
        """A line of podtui's own (launch attempts, status changes)."""
        self.add([Line(None, time.time(), f"» {text}")])

    def _format(self, line: Line) -> str:
        text = line.text
        if self.tagged and line.seq is not None:
            text = f"[node {node_of_seq(line.seq)}] {text}"
        if self.show_timestamps and not STAMPED.match(line.text):
            return time.strftime("%H:%M:%S ", time.localtime(line.ts)) + text
        return text

    def _visible(self, line: Line) -> bool:
        node, text = self._filter
        if node is not None and line.seq is not None and node_of_seq(line.seq) != node:
            return False
        return not text or text in line.text.lower()

    def set_live(self, rows: list[str]) -> None:
        """The rows the run is drawing now (shown on the next flush, in place of the last ones)."""
        if rows != self.live:
            self.live = list(rows)
            self._live_dirty = True

    def flush(self) -> None:
        """Write what is queued in one call."""
        if not self.pending and not self._live_dirty:
            return
        at_end = self.is_vertical_scroll_end  # before the live rows come off, which moves the end
        self._drop_live()
        batch, self.pending = self.pending, []
        self.history.extend(batch)
        shown = [self._format(line) for line in batch if self._visible(line)]
        if shown:
            self.write_lines(shown, scroll_end=False)
        self._show_live()
        if self.follow and at_end and not self.is_vertical_scrollbar_grabbed:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _drop_live(self) -> None:
        """Take the live rows off the end (Log has no call for it: its line list is trimmed directly)."""
        if not self._live_shown:
            return
        end = len(self._lines)
        del self._lines[end - self._live_shown:]
        for y in range(end - self._live_shown, end):
            self._render_line_cache.discard(y)
        self._live_shown = 0
        self.virtual_size = Size(self._width, len(self._lines))
        self.refresh()

    def _show_live(self) -> None:
        self._live_dirty = False
        node, text = self._filter  # the rows being drawn are node 0's
        rows = [row for row in self.live if node in (None, 0) and (not text or text in row.lower())]
        if rows:
            self.write_lines(rows, scroll_end=False)
            self._live_shown = len(rows)

    def _rewrite(self) -> None:
        self.clear()
        self._live_shown = 0
        self.write_lines([self._format(line) for line in self.history if self._visible(line)], scroll_end=False)
        self._show_live()
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.border_subtitle = f"filter: {self.filter_text}" if self.filter_text else ""

    def on_resize(self) -> None:
        """Following, the view stays at the end when it gets shorter (a download bar mounted above it)."""
        if self.follow:
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)

    def watch_filter_text(self, text: str) -> None:
        self._filter = parse_filter(text)
        self._rewrite()

    def watch_show_timestamps(self) -> None:
        self._rewrite()

    def watch_follow(self, follow: bool) -> None:
        self.auto_scroll = follow
        title = str(self.border_title or "logs").removesuffix(" (paused)")
        self.border_title = title if follow else f"{title} (paused)"
        if follow:
            self.scroll_end(animate=False)
