"""The agent's reading of the command: its output streams and its metrics file into numbered log lines and metric
points in the outbox (the `Agent`'s part that reads; supervisor.py has the rest)."""

from __future__ import annotations

import collections
import os
import threading
import time
import typing

from .links import LIVE_ROW_GAP_S, Reporter
from .metrics import MetricReader
from .outbox import Outbox, json_value
from .patterns import parse_metrics, shorten

MARKER = "##podtui "


class CommandOutput:
    """Log lines and metric points from what the command prints (a part of `Agent`)."""

    outbox: Outbox
    reporter: Reporter
    reader: MetricReader
    outputs: dict
    output_lock: threading.Lock
    seq_lock: threading.Lock
    seq: int
    node: int
    tail: collections.deque
    last_line_at: float
    live: list
    live_woke: float
    status: str | None
    progress: tuple | None
    metrics_file: str
    file_state: dict

    def line(self, stream: str, text: str, points: typing.Iterable | None = None) -> None:
        """One log line, and the metrics read from it (read here when not given)."""
        text = text.rstrip("\r\n")
        if text.startswith(MARKER):
            self.marker(text[len(MARKER):])
            return
        if points is None:
            points = () if stream == "system" else self.reader.line(text, None, stream, False, time.time())
        text = shorten(text)
        now = time.time()
        if stream != "system":  # the agent's own notes are no sign of life from the command
            self.last_line_at = now
        with self.seq_lock:
            seq = self.seq
            self.seq += 1
            self.tail.append(text)
            self.outbox.add("l", {"seq": seq, "ts": now, "stream": stream, "text": text})
            self.add_points(points, now)
        if not self.reporter.wake.is_set():  # a flood of lines sets it once, not under its lock each time
            self.reporter.wake.set()

    def add_points(self, points: typing.Iterable, now: float) -> None:
        if self.node:  # a run's metrics come from node 0 (its rank 0): the other nodes repeat or split them
            return
        for name, step, value in points:
            if 0 <= step < 2**63:
                self.outbox.add("m", {"name": name, "step": step, "value": json_value(value), "ts": now})

    def output(self, stream: str, data: bytes | None, now: float) -> None:
        """Bytes the command wrote (None: a pass of the clock, to settle finished bars and late dicts)."""
        reader = self.reader
        with self.output_lock:
            out = self.outputs[stream]
            if data is None:
                out.settle(now)
            elif data:
                out.feed(data, now)
            else:
                out.close(now)
            lines, states = out.take()
            for text, content, rank, progress in lines:
                self.line(stream, text, reader.line(content, rank, stream, progress, now))
            points: list = []
            for text, rank, key, after_clear in states:
                points += reader.state_of(text, key, rank, after_clear, now)
            points += reader.overdue(now)
            if points:
                self.last_line_at = now
                with self.seq_lock:
                    self.add_points(points, now)
                self.reporter.wake.set()
            live = [row[:1000] for o in self.outputs.values() for row in o.live()][-4:]
            if live != self.live:
                self.live = live
                self.last_line_at = now  # a bar that moves is a sign of life, lines or not
                if now - self.live_woke >= LIVE_ROW_GAP_S:  # a moving bar alone goes out a few times a second
                    self.live_woke = now
                    self.reporter.wake.set()

    def note(self, text: str) -> None:
        """A line of the agent's own, in the run's log."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.line("system", f"{stamp} [podtui-agent] {text}")

    def marker(self, text: str) -> None:
        parts = text.split()
        if len(parts) == 2 and parts[0] == "status" and parts[1] in ("downloading", "training"):
            self.status = parts[1]
            self.reporter.wake.set()
        elif len(parts) == 3 and parts[0] == "progress" and parts[1].isdigit() and parts[2].isdigit():
            self.progress = (int(parts[1]), int(parts[2]))

    def pump(self, pipe: typing.IO[bytes], stream: str) -> None:
        """Read a stream as it comes (a progress bar never ends its line). A bar redrawn thousands of times a
        second is read at most 50 times a second: only the last drawing of a read counts."""
        fd = pipe.fileno()
        failed = False
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                data = b""
            now = time.time()
            try:
                self.output(stream, data, now)
            except Exception as exc:  # never stop reading: a full pipe would hang the command
                if not failed:
                    failed = True
                    self.note(f"reading the {stream} stream failed ({exc!r}); its lines are kept as printed")
                for text in data.decode("utf-8", "replace").splitlines():
                    self.line(stream, text, ())
            if not data:
                break
            if len(data) > 512:
                time.sleep(0.02)
        pipe.close()

    def tail_metrics_file(self, done: threading.Event) -> None:
        offset, partial = 0, b""
        while True:
            finished = done.is_set()
            try:
                with open(self.metrics_file, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                    offset = f.tell()
            except OSError:
                data = b""
            partial += data
            *lines, partial = partial.split(b"\n")
            now = time.time()
            points: list = []
            for raw in lines:
                text = raw.decode("utf-8", "replace").strip()
                if text.startswith("{"):
                    points += parse_metrics(text, self.file_state)
            if points:
                self.reader.note("metrics file ($PODTUI_METRICS_FILE)")
                self.last_line_at = now
                with self.seq_lock:
                    self.add_points(points, now)
                self.reporter.wake.set()
            if finished:
                return
            done.wait(0.5)
