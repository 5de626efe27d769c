"""Loss chart frame time: 1M points x 2 series (loss, eval_loss) with log-y and smoothing, vs the same chart at
1k points (the peer, measured in the same run), two ways:

- drawing: `LossChart.draw()` alone (the braille raster, axes, legend as rich Text);
- through Textual: the LossChart mounted in an App (`App.run_test`, 120x30 cells), a frame being what Textual does
  for a widget that asked to be redrawn: the widget's redraw (`refresh`), the compositor's update of its region
  (`Compositor.update_widgets` + `render_update`, which renders the widget's lines through `Widget.render_lines`)
  and the terminal output of that update (`render_segments`, which the headless driver would skip).

Both also time a frame right after a report's worth of new points (100) arrives (caches extended, not rebuilt).

    python bench/chart.py [--points 1000000] [--frames 50]

Goal (issue 5): <= 5 ms per frame at 1M points x 2 series with log-y.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import NamedTuple

import numpy as np
from textual.app import App, ComposeResult

from podtui.widgets.loss_chart import LossChart

WIDTH, HEIGHT = 120, 30


class Columns(NamedTuple):
    """A metric's columns as the chart takes them (the metrics API's MetricSeries has the same fields)."""

    steps: list[int]
    values: list[float]
    ts: list[float]


class Point(NamedTuple):
    """A live point as the chart takes it (the feed's MetricPoint has the same fields)."""

    name: str
    step: int
    value: float
    ts: float


def make_chart(points: int, chart: LossChart | None = None) -> LossChart:
    chart = chart or LossChart()
    steps = np.arange(1, points + 1)
    rng = np.random.default_rng(0)
    loss = 3.0 * np.exp(-steps / (points / 5)) + 0.05 + np.abs(rng.normal(0, 0.02, points))
    loss[points // 2] = 40.0  # a spike that must stay visible
    evals = steps[::10]
    chart.set_series({"loss": Columns(steps.tolist(), loss.tolist(), (steps * 0.1).tolist()),
                      "eval_loss": Columns(evals.tolist(), (loss[::10] + 0.05).tolist(), (evals * 0.1).tolist())})
    chart.log_y = True
    chart.smoothing = 0.6
    return chart


def frame_ms(chart: LossChart, frames: int, width: int = 120, height: int = 30) -> list[float]:
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        chart.draw(width, height)
        times.append((time.perf_counter() - start) * 1000)
    return times


class ChartApp(App[None]):
    """Only the chart, filling a 120x30 screen."""

    def __init__(self, points: int) -> None:
        super().__init__()
        self.points = points
        self.chart = LossChart()

    def compose(self) -> ComposeResult:
        make_chart(self.points, self.chart)
        yield self.chart


def textual_frame(app: ChartApp) -> tuple[float, int]:
    """One frame of the chart through Textual (ms) and the size of its terminal output (characters)."""
    chart, screen = app.chart, app.screen
    start = time.perf_counter()
    chart.mark_dirty()  # the widget's own redraw: a new version, `refresh()` marks its region dirty
    # What Textual does next on its own (Widget._check_refresh posts an Update; Screen._on_timer_update): the
    # compositor updates the widget's dirty region and renders it.
    chart._repaint_required = False
    screen._compositor.update_widgets({chart})
    update = screen._compositor.render_update(screen_stack=app._background_screens)
    output = update.render_segments(app.console) if update is not None else ""
    return (time.perf_counter() - start) * 1000, len(output)


async def textual_frames(points: int, frames: int) -> tuple[list[float], list[float], int]:
    """Steady frames and frames after +100 points, through Textual; the draws counted to prove each frame drew."""
    draws = 0
    original = LossChart.draw

    def counted(self: LossChart, width: int, height: int) -> object:
        nonlocal draws
        draws += 1
        assert (width, height) == (WIDTH, HEIGHT), (width, height)
        return original(self, width, height)

    LossChart.draw = counted  # type: ignore[assignment,method-assign]
    app = ChartApp(points)
    try:
        async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
            await pilot.pause()
            textual_frame(app)  # the first frame builds the caches
            # Frames are timed synchronously (no await between the steps), so Textual cannot redraw
            # in between.
            before = draws
            steady, appended = [], []
            sizes = []
            for _ in range(frames):
                ms, size = textual_frame(app)
                steady.append(ms)
                sizes.append(size)
            step = points
            for _ in range(frames):
                new = list(range(step + 1, step + 101))
                start = time.perf_counter()
                app.chart.add_points([Point("loss", s, 0.05, s * 0.1) for s in new])
                _, size = textual_frame(app)
                appended.append((time.perf_counter() - start) * 1000)
                sizes.append(size)
                step += 100
            assert draws - before >= 2 * frames, f"{draws - before} draws for {2 * frames} frames"
            assert min(sizes) > WIDTH * HEIGHT, f"a frame wrote only {min(sizes)} characters"
    finally:
        LossChart.draw = original  # type: ignore[method-assign]
    return steady, appended, min(sizes)


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    big = make_chart(args.points)
    first = frame_ms(big, 1)[0]
    steady = frame_ms(big, args.frames)
    small = frame_ms(make_chart(1000), args.frames)
    appended = []
    step = args.points
    for _ in range(args.frames):
        new = list(range(step + 1, step + 101))
        big.add_points([Point("loss", s, 0.05, s * 0.1) for s in new])
        step += 100
        appended += frame_ms(big, 1)
    drawn = big.draw(WIDTH, HEIGHT).plain
    assert any(0x2800 < ord(c) <= 0x28FF for c in drawn)
    t_steady, t_appended, t_size = asyncio.run(textual_frames(args.points, args.frames))
    t_small, _, _ = asyncio.run(textual_frames(1000, args.frames))
    med = statistics.median
    print(f"{args.points:,} points x 2 series, log-y, smoothing 0.6, {WIDTH}x{HEIGHT} cells")
    print("drawing (LossChart.draw)")
    print(f"  first frame (builds caches, EMA)   : {first:8.1f} ms")
    print(f"  steady frame, median / p95         : {med(steady):8.2f} / {p95(steady):.2f} ms (goal <= 5 ms)")
    print(f"  frame after +100 points, median    : {med(appended):8.2f} ms")
    print(f"  peer: 1,000 points, median         : {med(small):8.2f} ms (ratio {med(steady) / med(small):.2f}x)")
    print(f"through Textual (redraw + compositor update + terminal output, >= {t_size:,} characters a frame)")
    print(f"  steady frame, median / p95         : {med(t_steady):8.2f} / {p95(t_steady):.2f} ms")
    print(f"  frame after +100 points, median    : {med(t_appended):8.2f} ms (p95 {p95(t_appended):.2f} ms)")
    print(f"  peer: 1,000 points, median         : {med(t_small):8.2f} ms "
          f"(ratio {med(t_steady) / med(t_small):.2f}x)")


if __name__ == "__main__":
    main()
