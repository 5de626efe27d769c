"""The run's metrics from what a terminal shows of its output: `MetricReader` places each value at the step its
format implies (a bar's counter made global with the epoch, a line's own step, the bar the training is counted on)
and notes how it was read."""

from __future__ import annotations

import re

from .patterns import (
    _CUT,
    _EPOCH,
    _KERAS,
    _KERAS_EPOCH,
    _KERAS_PAIR,
    _PAIR,
    _TQDM,
    KEEP,
    MAX_LINE,
    NOT_METRICS,
    STEP_KEYS,
    _count,
    _metrics_of,
    _pair_values,
    _plain_values,
    _to_float,
    parse_metrics,
    text_of,
)

LABELS = {"hf": "Python dicts", "json": "JSON lines", "pairs": "key=value lines"}
REDRAW_S = 2.0  # a bar drawn again after a clear gives its step to a dict read this long after it
LOSS_BAR_WAIT_S = 10.0  # a dict read mid-bar waits this long for the bar to move on or end
MAX_PENDING = 2000  # lines waiting for the bar to move, at most


def epoch_slack(epoch: float, per_epoch: float) -> float:
    """How far (in steps) a dict's step may lie from epoch x steps per epoch: half a step, and what the epoch's
    printing rounded off: the Trainer prints it to 2 decimals or 4 significant digits ('2.25', '0.3333'; a
    float read from short text keeps its digits in repr)."""
    digits = len(repr(epoch).partition(".")[2])
    rounded = max(0.005 if digits <= 2 else 0.5 * 10.0 ** -digits, 5e-4 * epoch)
    return 0.5 + per_epoch * rounded


class BarAt:
    """One drawing of the bar the run's training is counted on, and the global step it gives."""

    __slots__ = ("at", "cleared", "end", "ident", "metrics", "n", "rule", "step", "total")

    def __init__(self, ident: tuple, n: int, total: int, step: int, end: int, at: float, metrics: bool,
                 rule: str) -> None:
        self.ident = ident  # which bar (kind, rank, description, epoch, total): a new one is a new bar
        self.n, self.total = n, total
        self.step = step  # global: (epoch - first epoch) x total + n when the bar names its epoch
        self.end = end  # the global step of this bar's last position
        self.at = at
        self.metrics = metrics  # the bar carries the loss in its postfix (else: the trainer's bare bar)
        self.rule = rule
        self.cleared = False  # blanked since this drawing (tqdm closes a leave=False bar so)


class MetricReader:
    """Metrics from what a run prints, with the step each format implies, and a note on how it was read.

    Progress bars (tqdm and Lightning's, which is tqdm; Keras) give their postfix or ` - name: value`
    metrics at the bar's counter, made global with the epoch (`Epoch N` in a tqdm bar's description, a Keras
    `Epoch N/M` line): step = (epoch - first epoch seen) x steps per epoch + position. That bar is the run's
    axis. A dict, JSON line or `key=value` line without a step of its own takes the step the axis is on when
    the line is read: a bar drawn again right after a clear (tqdm clears its bars to print beside them, as
    the Trainer does) holds it exactly; a line read between two bars belongs to the end of the first; a line
    read mid-bar, to the step then drawn. Lines with their own step (`step`, `global_step`, `iteration`) keep
    it; with no bar, JSON and Trainer dicts are counted by line. `mode` is PODTUI_METRICS (auto, json, off);
    `ranks` is "all" to count every rank's metrics (named `rank<N>/<name>`), else rank 0's alone."""

    def __init__(self, mode: str = "auto", ranks: str = "0") -> None:
        self.mode = mode if mode in ("auto", "json", "off") else "auto"
        self.all_ranks = ranks == "all"
        self.state: dict = {}  # parse_metrics's line counter
        self.sources: list = []  # how the metrics were read, first seen first
        self.first_epoch: dict = {}  # per bar kind and rank
        self.keras_epoch: dict = {}  # the last `Epoch N/M` line per rank
        self.axis: BarAt | None = None  # the last drawing of the bar the training is counted on
        self.axis_key: tuple | None = None  # the screen row it is drawn on
        self.bar_total = 0  # the longest bar seen (the trainer's, when no bar carries metrics)
        self.metric_total = 0  # the longest bar seen that carries metrics
        self.redrawn: tuple | None = None  # (step, time) of the axis drawn right after a clear, not yet taken
        self.pending: list = []  # lines without a step waiting for the axis: (values, time, rank, kind, BarAt)
        self.ready: list = []  # their points once placed, to be taken by `overdue`
        self.epoch_seen: list = []  # (step, epoch) of the latest Trainer dicts placed by their bar
        self.per_epoch: float | None = None  # the Trainer's steps per epoch, once those dicts agree on it
        self.last_state: dict = {}
        self.half_drawn: set = set()  # rows whose drawing after a clear was read in part (no bar yet)
        self.bar_points: dict = {}  # (step, value) of each bar metric's last point

    def note(self, source: str) -> None:
        if source not in self.sources:
            self.sources.append(source)

    def explain(self) -> str:
        """The note the run shows: which parser produced its metrics and where their steps came from."""
        sources = (["output not parsed (PODTUI_METRICS=off)"] if self.mode == "off" else []) + self.sources
        return "; ".join(sources)[:300]

    def counts(self, rank: int | None) -> bool:
        return self.all_ranks or rank in (None, -1, 0)

    def named(self, points: list, rank: int | None) -> list:
        if rank is None or rank <= 0:
            return points
        return [(f"rank{rank}/{name}", step, value) for name, step, value in points]

    def line(self, text: str, rank: int | None = None, stream: str = "stdout", progress: bool = False,
             now: float = 0.0) -> list:
        """The metrics of a line that has left the screen (a finished bar too)."""
        if self.mode == "off" or not self.counts(rank):
            return []
        if progress or self.mode == "auto":
            got = self.bar_state(text, rank, False, now, final=True)
            if got is not None:
                return self.named(got, rank)
        if stream != "stdout":
            return []
        text = text.strip()
        if not text or len(text) > MAX_LINE or (len(text) > 2 * KEEP and _CUT in text):
            return []
        m = _KERAS_EPOCH.match(text)
        if m and self.mode == "auto":
            self.keras_epoch[rank] = int(m.group(1))
            return []
        kind, values = _plain_values(text)  # decoded once: _metrics_of takes it
        if self.mode == "json" and kind != "json":
            return []
        axis = self.axis
        if axis is not None and (axis.metrics or kind == "hf"):  # beside a bare bar, JSON is counted by line
            unstepped = _pair_values(text) if kind == "pairs" else values
            if unstepped and not any(key in unstepped for key in STEP_KEYS):
                return self.named(self.on_axis(unstepped, rank, kind, now), rank)
        points = _metrics_of(text, kind, values, self.state)
        if points:
            has_step = kind == "pairs" or (values is not None and any(k in values for k in STEP_KEYS))
            if kind == "hf":
                self.note("Hugging Face Trainer dicts, " + ("step from their step field" if has_step else
                          "step counted by line (no trainer progress bar seen)"))
            elif kind == "json":
                self.note("JSON lines, " + ("step from their step field" if has_step else "step counted by line"))
            else:
                self.note("key=value lines, step from their step key")
        return self.named(points, rank)

    def state_of(self, text: str, key: tuple, rank: int | None, after_clear: bool, now: float) -> list:
        """The metrics of a progress row as it stands now (sampled while it is redrawn); a blank one is a bar
        cleared from its row."""
        if self.mode != "auto" or not self.counts(rank):
            return []
        if self.last_state.get(key) == text:
            return []
        self.last_state[key] = text
        if not text.strip():
            if self.axis is not None and key == self.axis_key:
                self.axis.cleared = True
            return []
        after_clear = after_clear or key in self.half_drawn
        got = self.bar_state(text, rank, after_clear, now, key=key)
        if got is None and after_clear:
            self.half_drawn.add(key)  # a drawing cut by the end of a read: its end is still drawn after a clear
        else:
            self.half_drawn.discard(key)
        return self.named(got or [], rank)

    def bar_state(self, text: str, rank: int | None, after_clear: bool, now: float,
                  final: bool = False, key: tuple | None = None) -> list | None:
        """Metrics of a tqdm/Lightning or Keras bar line; None when the text is no bar.

        A bar is drawn many times at one counter: plain tqdm draws the counter it last synced with a newer
        postfix (the first drawing at a step holds that step's values), Lightning draws the new counter with
        the last batch's values and then its own (the first new value at a step is the step's). So a point
        is taken when both its step and its value are new: right for both, and a validation loss carried
        along the bar is stored once, where it appeared, not at every later step. A finished drawing (a line
        that left the screen: Keras's end of epoch) counts at a new step whatever its values."""
        if self.mode != "auto" or len(text) > MAX_LINE or "/" not in text:
            return None
        m = _TQDM.match(text.strip())
        if m is not None:
            points = self.tqdm(m, rank, after_clear, now, final, key)
        else:
            m = _KERAS.match(text)
            if m is None:
                return None
            points = self.keras(m, rank, now, final, key)
        fresh = []
        for point in points:
            name_key = (point[0], rank)
            last = self.bar_points.get(name_key)
            if last is None or (last[0] != point[1] and (final or last[1] != point[2])):
                self.bar_points[name_key] = point[1:]
                fresh.append(point)
        return fresh

    def tqdm(self, m: re.Match, rank: int | None, after_clear: bool, now: float, final: bool = False,
             key: tuple | None = None) -> list:
        n = _count(m.group("n"))
        total = _count(m.group("total")) if m.group("total") else None
        info = m.group("info")
        cut = info.find(",")
        pairs = [(k, v) for k, v in _PAIR.findall(info[cut + 1:] if cut >= 0 else "") if k not in NOT_METRICS]
        lightning = "v_num=" in info
        desc = m.group("desc")
        epoch_match = _EPOCH.search(desc)
        step, end, epoch, rule = n, total or n, None, "the bar's counter"
        if epoch_match and total:
            epoch = int(epoch_match.group(1))
            first = self.first_epoch.setdefault(("tqdm", rank), epoch)
            base = max(0, epoch - first) * total
            step, end = base + n, base + total
            rule = f"epoch x steps per epoch + position (epochs from {first})"
        if (total or pairs) and rank in (None, -1, 0):  # a bar with no total counts only if it carries metrics
            ident = ("tqdm", rank, _EPOCH.sub("", desc).strip(), epoch, total or 0)
            self.drawn(BarAt(ident, n, total or 0, step, end, now, bool(pairs), rule), key, after_clear, final)
        if not pairs:
            return []
        kind = "Lightning progress bar" if lightning else "tqdm postfix"
        self.note(f"{kind}, step = {rule}" if epoch is not None else f"{kind}, step from the bar's counter")
        values: dict = {}
        for name, raw in pairs:
            values.setdefault(name, _to_float(raw))
        return [(name, step, value) for name, value in values.items()]

    def keras(self, m: re.Match, rank: int | None, now: float = 0.0, final: bool = False,
              key: tuple | None = None) -> list:
        n, total = int(m.group("n")), int(m.group("total"))
        values: dict = {}
        for name, raw in _KERAS_PAIR.findall(m.group("pairs")):
            values.setdefault(name, _to_float(raw))
        if not values:
            return []
        epoch = self.keras_epoch.get(rank)
        if epoch is None:
            self.note("Keras progress bar, step from the bar's counter")
            step, end, rule = n, total, "the bar's counter"
        else:
            first = self.first_epoch.setdefault(("keras", rank), epoch)
            rule = f"(epoch - {first}) x steps per epoch + position"
            self.note(f"Keras progress bar, step = {rule}")
            step, end = (epoch - first) * total + n, (epoch - first + 1) * total
        if rank in (None, -1, 0):
            self.drawn(BarAt(("keras", rank, "", epoch, total), n, total, step, end, now, True, rule), key,
                       False, final)
        return [(name, step, value) for name, value in values.items()]

    def drawn(self, bar: BarAt, key: tuple | None, after_clear: bool, final: bool) -> None:
        """A drawing of a bar of rank 0: the axis when it is the bar the training is counted on (the longest
        that carries metrics, else the longest of all); lines waiting for it are placed."""
        if bar.metrics:
            if bar.total < self.metric_total:
                return
            self.metric_total = bar.total
        elif self.metric_total or bar.total < self.bar_total:
            return
        self.bar_total = max(self.bar_total, bar.total)
        axis = self.axis
        if final and axis is not None and axis.ident != bar.ident:
            return  # a finished bar scrolling into the log after the next one started: not where training is
        self.axis = bar
        if key is not None:
            self.axis_key = key
        if after_clear:
            self.redrawn = (bar.step, bar.at)
        keep = []
        for entry in self.pending:
            placed = self.place(entry[4], bar, after_clear)
            if placed is None:
                keep.append(entry)
            else:
                self.ready += self.named(self.at_step(entry, *placed), entry[2])
                if after_clear:
                    self.redrawn = None  # taken: the next line printed beside the bar clears it again
        self.pending = keep

    @staticmethod
    def place(read: BarAt, bar: BarAt, after_clear: bool) -> tuple | None:
        """(step, how) for a line read when the axis was `read`, now that `bar` is drawn; None: not yet known."""
        if after_clear:  # tqdm cleared its bars to print the line and drew them again: this is its step
            return bar.step, "redrawn"
        if bar.ident == read.ident and bar.n >= read.n:
            if bar.n == read.n:
                return None  # the same position drawn again (a new postfix): wait for the bar to move
            if bar.total and bar.n >= bar.total:
                return bar.step, "drawn"  # the bar's last drawing, read after the line (two pipes race)
            return read.step, "read"  # the bar went on: the line was printed mid-bar
        return read.end, "end"  # the next bar started: the line came between the two, at the end of the first

    def on_axis(self, values: dict, rank: int | None, kind: str, now: float) -> list:
        """A line without a step, read while a bar is the axis: placed now when its step is known, else kept
        until the bar moves on (`pending`)."""
        axis = self.axis
        assert axis is not None
        entry = (values, now, rank, kind, axis)
        redrawn = self.redrawn
        if redrawn is not None and now - redrawn[1] < REDRAW_S and redrawn[0] == axis.step:
            self.redrawn = None
            return self.at_step(entry, axis.step, "redrawn")
        if not axis.cleared and axis.total and axis.n >= axis.total and (axis.metrics or now - axis.at < 5.0):
            return self.at_step(entry, axis.step, "drawn")
        self.pending.append(entry)
        if len(self.pending) <= MAX_PENDING:
            return []
        oldest = self.pending.pop(0)  # a flood of lines at one drawing: the oldest keep the step they were read at
        return self.named(self.at_step(oldest, oldest[4].step, "read"), oldest[2])

    def agreed_per_epoch(self) -> float | None:
        """The Trainer's steps per epoch, once the dicts placed by their bar agree on it: the step / epoch that
        the most of them fit (each within its epoch's printed precision), when at least 3 and a third do.
        Dicts read a drawing apart from their bar fit no common value, nor do a loop's whole epochs printed at
        many steps (its dicts keep the bar's steps)."""
        seen = self.epoch_seen
        fits: list = []
        for step, epoch in seen:
            ratio = step / epoch
            fit = [(s, e) for s, e in seen if abs(s - e * ratio) <= epoch_slack(e, ratio)]
            if len(fit) > len(fits):
                fits = fit
        if len(fits) < 3 or 3 * len(fits) < len(seen):
            return None
        step, epoch = max(fits, key=lambda f: f[1])  # the latest epoch is the most precise
        return step / epoch

    def by_epoch(self, values: dict, step: int) -> int:
        """A Trainer dict's step: where its bar placed it, unless its own epoch says otherwise. The dict goes to
        stdout and the bar to stderr, two pipes read apart: a busy pod can read a dict a drawing or two early or
        late, beside another step. Its epoch x steps per epoch holds it to its own step."""
        epoch = values.get("epoch")
        if not isinstance(epoch, float) or epoch <= 0:
            return step
        per_epoch = self.per_epoch  # as the dicts before this one say
        if step > 0:
            self.epoch_seen = [*self.epoch_seen, (step, epoch)][-50:]
            self.per_epoch = self.agreed_per_epoch()  # once per dict (O(n²) in the latest 50), not per read
        if per_epoch is None:
            return step
        expected = epoch * per_epoch
        if abs(step - expected) <= epoch_slack(epoch, per_epoch):
            return step
        self.note("Hugging Face Trainer dicts read apart from their bar, step from epoch x steps per epoch")
        return round(expected)

    def at_step(self, entry: tuple, step: int, how: str) -> list:
        """A waiting line's points at `step`, and the note saying which rule placed it."""
        values, _, _, kind, read = entry
        if kind == "hf":
            step = self.by_epoch(values, step)
        if read.metrics:
            late = how == "end" and step != read.step  # placed past the last drawing it was read beside
            self.note(f"{LABELS[kind]} without a step: " + ("the end of the loss bar's epoch (its last step not "
                      "drawn)" if late else "the step of the bar carrying the loss"))
        else:
            source = "the last counter of its progress bar" if how == "late" else "the trainer's progress bar"
            self.note(f"Hugging Face Trainer dicts, step from {source}")  # beside a bare bar, dicts alone wait
        return [(name, step, value) for name, value in values.items()]

    def overdue(self, now: float, wait: float = 2.0) -> list:
        """Points placed since the last call, and lines whose bar did not move on in time (all of them at the
        end, `wait` 0): beside a bar that carries the loss, the step it was read at (the end of the bar's epoch
        when the bar was cleared: closed before its last step was drawn); beside the trainer's bare bar,
        epoch x steps per epoch when known, else its counter when it was drawn lately, else counted by line."""
        out, self.ready = self.ready, []
        keep = []
        for entry in self.pending:
            values, at, rank, _, read = entry
            if wait > 0 and now - at < (LOSS_BAR_WAIT_S if read.metrics else wait):
                keep.append(entry)
                continue
            epoch = values.get("epoch")
            if read.metrics:
                points = self.at_step(entry, read.end if read.cleared else read.step, "end" if read.cleared else
                                      "read")
            elif self.per_epoch and isinstance(epoch, float):
                points = [(name, round(epoch * self.per_epoch), value) for name, value in values.items()]
                self.note("Hugging Face Trainer dicts, step from epoch x steps per epoch")
            elif at - read.at < 5.0:
                points = self.at_step(entry, read.step, "late")
            else:  # the bar seen was no trainer's (a dataset's, say): count lines as before
                points = parse_metrics(text_of(values), self.state)
                self.note("Hugging Face Trainer dicts, step counted by line (no trainer progress bar seen)")
            out += self.named(points, rank)
        self.pending = keep
        return out
