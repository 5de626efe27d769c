"""The loss chart: braille curves of a run's metrics (raw faint, EMA-smoothed bright), y-axis ticks, log-y,
an optional overlay of another run. Redrawn from a dirty flag on a 4 Hz timer, never per point."""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ..chart import (
    BLOCK,
    BrailleCanvas,
    block_summary,
    format_duration,
    format_tick,
    log_ticks,
    nice_ticks,
    plot_series,
    sparkline,
    y_bounds,
)
from ..series import ema_continue

LOSS_NAMES = ("loss", "train_loss", "eval_loss", "val_loss", "validation_loss")
COLOURS = ["#5fafff", "#ffaf5f", "#87d787", "#d787d7", "#d7d75f"]
COMPARE_COLOUR = "#8a8a8a"


class Series:
    """A growing metric series held as numpy arrays, with its smoothed curve (continued incrementally as points
    arrive) and per-block min/max summaries cached, so a redraw costs the same at 1k or 1M points."""

    def __init__(self) -> None:
        self.steps = np.empty(0, dtype=np.float64)
        self.values = np.empty(0, dtype=np.float64)
        self.ts = np.empty(0, dtype=np.float64)
        self._smooth: tuple[float, np.ndarray, float, int] | None = None  # weight, curve, last, count
        self._blocks: dict[tuple[str, bool, float], tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    def replace(self, steps: list[int], values: list[float], ts: list[float] | None = None) -> None:
        self.steps = np.asarray(steps, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        self.ts = np.asarray(ts if ts is not None else [0.0] * len(steps), dtype=np.float64)
        self._smooth = None
        self._blocks.clear()

    def extend(self, steps: list[int], values: list[float], ts: list[float]) -> None:
        if not steps:
            return
        new = [np.asarray(a, dtype=np.float64) for a in (steps, values, ts)]
        if len(self.steps) and new[0].min() <= self.steps[-1]:
            # out of order (a resend after a restart): merge, keep one point per step, recompute caches
            uniq, index = np.unique(np.concatenate([self.steps, new[0]]), return_index=True)
            self.replace(uniq.tolist(), np.concatenate([self.values, new[1]])[index].tolist(),
                         np.concatenate([self.ts, new[2]])[index].tolist())
            return
        self.steps = np.concatenate([self.steps, new[0]])
        self.values = np.concatenate([self.values, new[1]])
        self.ts = np.concatenate([self.ts, new[2]])

    def xs(self, by_time: bool) -> np.ndarray:
        """Steps, or seconds (wall time)."""
        return self.ts if by_time else self.steps

    def smoothed(self, weight: float) -> np.ndarray:
        """The debiased EMA of the values, extended from the cached state when only new points arrived."""
        cached = self._smooth
        if cached is None or cached[0] != weight or len(cached[1]) > len(self.values):
            curve, last, count = ema_continue(self.values, weight)
        elif len(cached[1]) == len(self.values):
            return cached[1]
        else:
            tail, last, count = ema_continue(self.values[len(cached[1]):], weight, cached[2], cached[3])
            curve = np.concatenate([cached[1], tail])
        self._smooth = (weight, curve, last, count)
        return curve

    def blocks(self, kind: str, by_time: bool, weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Min/max per block of the raw (kind "raw") or smoothed curve, rebuilt only when the series grew."""
        key = (kind, by_time, weight if kind == "smooth" else 0.0)
        cached = self._blocks.get(key)
        n = len(self.values)
        if cached is not None and cached[0] == n:
            return cached[1]
        ys = self.smoothed(weight) if kind == "smooth" else self.values
        xs = self.xs(by_time)
        if cached is not None and cached[0] < n:  # appended: redo only the last, partial block onwards
            keep = cached[0] // BLOCK
            tail = block_summary(xs[keep * BLOCK:], ys[keep * BLOCK:])
            old = cached[1]
            summary = (np.concatenate([old[0][:keep], tail[0]]), np.concatenate([old[1][:keep], tail[1]]),
                       np.concatenate([old[2][:keep], tail[2]]))
        else:
            summary = block_summary(xs, ys)
        self._blocks[key] = (n, summary)
        return summary


def as_float(value: object) -> float:
    """A metric value from JSON (NaN and infinities arrive as strings)."""
    if isinstance(value, str):
        return float(value.replace("Infinity", "inf"))
    return float(value)  # type: ignore[arg-type]


class LossChart(Widget):
    """Curves of the selected run's loss-like metrics."""

    DEFAULT_CSS = """
    LossChart {
        height: 1fr;
        border: round $primary-background-lighten-2;
        border-title-color: $text-muted;
        background: $surface;
    }
    """

    log_y: reactive[bool] = reactive(False)
    """Plot the y axis on a log scale."""
    smoothing: reactive[float] = reactive(0.6)
    """TensorBoard-style EMA weight in [0, 0.99]; 0 draws the raw curve only."""
    by_time: reactive[bool] = reactive(False)
    """x axis by wall time instead of step."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series: dict[str, Series] = {}
        self.compare: dict[str, Series] = {}
        self.compare_name = ""
        self._dirty = True
        self._cache_key: tuple[object, ...] | None = None
        self._cache: Text | None = None
        self._version = 0

    def on_mount(self) -> None:
        self.border_title = "loss"
        self.set_interval(0.25, self._redraw_if_dirty)

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._dirty = False
            self._version += 1
            self.refresh()

    def mark_dirty(self) -> None:
        """Ask for a redraw on the next tick."""
        self._dirty = True

    def watch_log_y(self) -> None:
        self.mark_dirty()

    def watch_smoothing(self) -> None:
        self.mark_dirty()

    def watch_by_time(self) -> None:
        self.mark_dirty()

    def clear(self) -> None:
        """Forget the shown run."""
        self.series.clear()
        self.mark_dirty()

    @staticmethod
    def _build(series: dict[str, tuple[list[int], list[float], list[float]]]) -> dict[str, Series]:
        built = {}
        for name, (steps, values, ts) in series.items():
            s = Series()
            s.replace(steps, values, ts)
            built[name] = s
        return built

    def set_series(self, series: dict[str, tuple[list[int], list[float], list[float]]]) -> None:
        """Replace all series (a newly selected run): name -> (steps, values, wall times)."""
        self.series = self._build(series)
        self.mark_dirty()

    def add_points(self, points: list[tuple[str, int, float, float]]) -> None:
        """Append live points (name, step, value, wall time)."""
        grouped: dict[str, tuple[list[int], list[float], list[float]]] = {}
        for name, step, value, ts in points:
            steps, values, times = grouped.setdefault(name, ([], [], []))
            steps.append(step)
            values.append(value)
            times.append(ts)
        for name, (steps, values, times) in grouped.items():
            self.series.setdefault(name, Series()).extend(steps, values, times)
        self.mark_dirty()

    def set_compare(self, name: str, series: dict[str, tuple[list[int], list[float], list[float]]]) -> None:
        """Overlay another run's loss (empty name clears it)."""
        self.compare_name = name
        self.compare = self._build(series)
        self.mark_dirty()

    def shown_names(self) -> list[str]:
        """Loss-like metrics first; any other metric when the run has no loss."""
        names = [n for n in LOSS_NAMES if n in self.series]
        if not names:
            names = sorted(n for n in self.series if n not in ("lr", "learning_rate", "epoch"))[:2]
        return names

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        key = (width, height, self._version, self.log_y, self.smoothing, self.by_time)
        if key != self._cache_key or self._cache is None:
            self._cache = self.draw(width, height)
            self._cache_key = key
        return self._cache

    def draw(self, width: int, height: int) -> Text:
        """The whole chart as text (y labels, braille plot, legend)."""
        names = self.shown_names()
        if not names or width < 12 or height < 3:
            return Text("waiting for metrics…", style="dim")
        Plot = tuple[np.ndarray, np.ndarray, str, tuple[np.ndarray, np.ndarray, np.ndarray]]
        plots: list[Plot] = []
        compare_metric = names[0]
        origin = min((float(s.ts[0]) for s in self.series.values() if len(s.ts)), default=0.0)
        shift = origin if self.by_time else 0.0
        for i, name in enumerate(names):
            s = self.series[name]
            xs = s.xs(self.by_time) - shift
            colour = COLOURS[i % len(COLOURS)]
            raw = s.blocks("raw", self.by_time, 0.0)
            raw = (raw[0] - shift, raw[1], raw[2])
            if self.smoothing > 0 and len(s.values) > 2:
                plots.append((xs, s.values, f"{colour} dim", raw))
                smooth = s.blocks("smooth", self.by_time, self.smoothing)
                plots.append((xs, s.smoothed(self.smoothing), colour, (smooth[0] - shift, smooth[1], smooth[2])))
            else:
                plots.append((xs, s.values, colour, raw))
        if compare_metric in self.compare and not self.by_time:
            c = self.compare[compare_metric]
            plots.insert(0, (c.steps, c.values, COMPARE_COLOUR, c.blocks("raw", False, 0.0)))
        bounds = y_bounds([b for p in plots for b in (p[3][1], p[3][2])], self.log_y)
        if bounds is None:
            return Text("no finite values to plot" + (" (log-y needs values > 0)" if self.log_y else ""), "dim")
        all_steps = [p[0] for p in plots if len(p[0])]
        x_range = (float(min(s[0] for s in all_steps)), float(max(s[-1] for s in all_steps)))
        ticks = log_ticks(*bounds) if self.log_y else nice_ticks(*bounds, count=max(2, height // 3))
        labels = [format_tick(t) for t in ticks]
        label_w = max((len(label) for label in labels), default=1) + 1
        lr = next((self.series[n] for n in ("lr", "learning_rate") if n in self.series), None)
        plot_h = height - (3 if lr is not None and height >= 8 else 2)
        plot_w = max(4, width - label_w - 1)
        canvas = BrailleCanvas(plot_w, plot_h)
        for index, (steps, values, _, blocks) in enumerate(plots):
            plot_series(canvas, steps, values, x_range, bounds, index, self.log_y, blocks)
        styles = [p[2] for p in plots]
        label_rows: dict[int, str] = {}
        lo, hi = (math.log10(bounds[0]), math.log10(bounds[1])) if self.log_y else bounds
        for tick, label in zip(ticks, labels, strict=True):
            v = math.log10(tick) if self.log_y else tick
            row = round((1 - (v - lo) / ((hi - lo) or 1)) * (plot_h - 1))
            if 0 <= row < plot_h:
                label_rows[row] = label
        out = Text(no_wrap=True, overflow="crop")
        for r, cells in enumerate(canvas.rows()):
            out.append(label_rows.get(r, "").rjust(label_w - 1) + " ", "dim")
            out.append("┤" if r in label_rows else "│", "dim")
            for chars, owner in cells:
                out.append(chars, styles[owner] if owner >= 0 else "")
            out.append("\n")
        if self.by_time:
            left, right = "0s", f"{format_duration(x_range[1])} wall time"
        else:
            left, right = f"{int(x_range[0])}", f"step {int(x_range[1])}"
        out.append(" " * label_w + "└" + left + " " * max(1, plot_w - len(left) - len(right)) + right + "\n", "dim")
        legend = Text(" " * label_w)
        for i, name in enumerate(names):
            s = self.series[name]
            last = s.values[-1] if len(s.values) else float("nan")
            legend.append(f"■ {name} {last:.4g}  ", COLOURS[i % len(COLOURS)])
        if self.compare_name and compare_metric in self.compare:
            legend.append(f"■ {self.compare_name}  ", COMPARE_COLOUR)
        legend.append(f"smooth {self.smoothing:.2f}{'  log-y' if self.log_y else ''}", "dim")
        out.append_text(legend)
        if lr is not None and height >= 8 and len(lr.values):
            out.append("\n" + " " * label_w + "lr ", "dim")
            out.append(sparkline(lr.values.tolist(), plot_w - 16), "#d7d75f")
            out.append(f" {lr.values[-1]:.3g}", "dim")
        return out

