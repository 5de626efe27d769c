"""The chart as rich Text: y labels, braille curves (raw faint, smoothed bright), x axis, legend, learning-rate strip.

Loaded with a run's first metrics, not at start: numpy is most of its import time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.text import Text

from ..fmt import format_duration, sparkline
from .axes import format_tick, log_ticks, nice_ticks, y_bounds
from .raster import BrailleCanvas, plot_series
from .series import Series


@dataclass(frozen=True)
class Colours:
    """The chart's colours (the widget passes its theme's; these defaults serve benches and tests)."""

    series: tuple[str, ...] = ("#5fafff", "#ffaf5f", "#87d787", "#d787d7", "#d7d75f")
    compare: str = "#8a8a8a"
    lr: str = "#d7d75f"


def resume_columns(steps: list[int], x_range: tuple[float, float], width: int) -> set[int]:
    """The plot columns of the resume steps inside the x range."""
    lo, hi = x_range
    return {round((step - lo) / ((hi - lo) or 1) * (width - 1)) for step in steps if lo <= step <= hi}


@dataclass
class ChartView:
    """What to draw: the run's series (names in order), an overlay, and the toggles."""

    series: dict[str, Series]
    names: list[str]
    compare: dict[str, Series] = field(default_factory=dict)
    compare_name: str = ""
    log_y: bool = False
    smoothing: float = 0.6
    by_time: bool = False
    colours: Colours = field(default_factory=Colours)
    resumes: list[int] = field(default_factory=list)
    """Steps where a later attempt (a new pod, --retries) took over: marked under the x axis."""


def draw_chart(view: ChartView, width: int, height: int) -> Text:
    """The whole chart as text (y labels, braille plot, legend)."""
    names = view.names
    Plot = tuple[np.ndarray, np.ndarray, str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    plots: list[Plot] = []
    compare_metric = names[0]
    origin = min((float(s.ts[0]) for s in view.series.values() if len(s.ts)), default=0.0)
    shift = origin if view.by_time else 0.0
    for i, name in enumerate(names):
        s = view.series[name]
        xs = s.xs(view.by_time) - shift
        colour = view.colours.series[i % len(view.colours.series)]
        raw = s.blocks("raw", view.by_time, 0.0)
        raw = (raw[0] - shift, raw[1], raw[2])
        if view.smoothing > 0 and len(s.values) > 2:
            plots.append((xs, s.values, f"{colour} dim", raw))
            smooth = s.blocks("smooth", view.by_time, view.smoothing)
            plots.append((xs, s.smoothed(view.smoothing), colour, (smooth[0] - shift, smooth[1], smooth[2])))
        else:
            plots.append((xs, s.values, colour, raw))
    if compare_metric in view.compare and not view.by_time:
        c = view.compare[compare_metric]
        plots.insert(0, (c.steps, c.values, view.colours.compare, c.blocks("raw", False, 0.0)))
    bounds = y_bounds([b for p in plots for b in (p[3][1], p[3][2])], view.log_y)
    if bounds is None:
        return Text("no finite values to plot" + (" (log-y needs values > 0)" if view.log_y else ""), "dim")
    all_steps = [p[0] for p in plots if len(p[0])]
    x_range = (float(min(s[0] for s in all_steps)), float(max(s[-1] for s in all_steps)))
    ticks = log_ticks(*bounds) if view.log_y else nice_ticks(*bounds, count=max(2, height // 3))
    labels = [format_tick(t) for t in ticks]
    label_w = max((len(label) for label in labels), default=1) + 1
    lr = next((view.series[n] for n in ("lr", "learning_rate") if n in view.series), None)
    plot_h = height - (3 if lr is not None and height >= 8 else 2)
    plot_w = max(4, width - label_w - 1)
    canvas = BrailleCanvas(plot_w, plot_h)
    for index, (steps, values, _, blocks) in enumerate(plots):
        plot_series(canvas, steps, values, x_range, bounds, index, view.log_y, blocks)
    styles = [p[2] for p in plots]
    label_rows: dict[int, str] = {}
    lo, hi = (math.log10(bounds[0]), math.log10(bounds[1])) if view.log_y else bounds
    for tick, label in zip(ticks, labels, strict=True):
        v = math.log10(tick) if view.log_y else tick
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
    if view.by_time:
        left, right = "0s", f"{format_duration(x_range[1])} wall time"
    else:
        left, right = f"{int(x_range[0])}", f"step {int(x_range[1])}"
    axis = left + " " * max(1, plot_w - len(left) - len(right)) + right
    marks = [] if view.by_time else resume_columns(view.resumes, x_range, plot_w)
    if not marks:
        out.append(" " * label_w + "└" + axis + "\n", "dim")
    else:
        out.append(" " * label_w + "└", "dim")
        for col, ch in enumerate(axis):
            out.append("↻", "bold") if col in marks else out.append(ch, "dim")
        out.append("\n")
    legend = Text(" " * label_w)
    for i, name in enumerate(names):
        s = view.series[name]
        last = s.values[-1] if len(s.values) else float("nan")
        legend.append(f"■ {name} {last:.4g}  ", view.colours.series[i % len(view.colours.series)])
    if view.compare_name and compare_metric in view.compare:
        legend.append(f"■ {view.compare_name}  ", view.colours.compare)
    legend.append(f"smooth {view.smoothing:.2f}{'  log-y' if view.log_y else ''}", "dim")
    if marks:
        legend.append("  ↻ resumed on a new pod", "dim")
    out.append_text(legend)
    if lr is not None and height >= 8 and len(lr.values):
        out.append("\n" + " " * label_w + "lr ", "dim")
        out.append(sparkline(lr.values.tolist(), plot_w - 16), view.colours.lr)
        out.append(f" {lr.values[-1]:.3g}", "dim")
    return out
