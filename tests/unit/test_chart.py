"""Chart logic: per-column min/max, ticks, braille rasterizing, sparkline."""

import math

import numpy as np

from podtui.chart.axes import format_tick, log_ticks, nice_ticks, y_bounds
from podtui.chart.raster import BrailleCanvas, plot_series, reduce_to_columns
from podtui.fmt import sparkline


def test_columns_keep_each_columns_extremes():
    xs = np.arange(1_000_000, dtype=float)
    ys = np.ones_like(xs)
    ys[123_456] = 9.0
    ys[654_321] = -4.0
    cols = reduce_to_columns(xs, ys, 0, xs[-1], 100)
    assert np.nanmax(cols.hi) == 9.0 and np.nanmin(cols.lo) == -4.0
    assert cols.hi[12] == 9.0 and cols.lo[65] == -4.0
    assert np.all(cols.lo[[0, 50, 99]] == 1.0)


def test_columns_ignore_non_finite_and_leave_empty_columns_nan():
    xs = np.array([0.0, 1.0, 9.0])
    ys = np.array([1.0, math.nan, 2.0])
    cols = reduce_to_columns(xs, ys, 0, 9, 10)
    assert cols.lo[0] == 1.0 and cols.hi[9] == 2.0
    assert math.isnan(cols.lo[5]) and math.isnan(cols.lo[1])


def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0.0, 1.0, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    ticks = nice_ticks(0.13, 9.7, 5)
    assert ticks[0] >= 0.13 and ticks[-1] <= 9.7 and len(ticks) >= 3
    assert all(round(t / (ticks[1] - ticks[0]), 6).is_integer() for t in ticks)
    assert log_ticks(0.001, 10) == [0.001, 0.01, 0.1, 1.0, 10.0]
    assert format_tick(1500) == "1.5k" and format_tick(0.00002) == "2e-05" and format_tick(0) == "0"


def test_braille_line_sets_dots_and_owner():
    canvas = BrailleCanvas(4, 2)
    canvas.line(0, 0, 7, 7, owner=1)
    rows = canvas.rows()
    first, last = rows[0][0], rows[1][-1]
    assert first[1] == 1 and first[0][0] != " "
    assert last[1] == 1 and last[0][-1] != " "
    assert "".join(chars for chars, _ in rows[1]).startswith(" ")


def test_plot_dense_series_keeps_a_spike_visible():
    xs = np.arange(100_000, dtype=float)
    ys = np.ones_like(xs)
    ys[50_000] = 100.0
    canvas = BrailleCanvas(40, 10)
    plot_series(canvas, xs, ys, (0, xs[-1]), (0, 100), owner=0)
    top_row = "".join(chars for chars, _ in canvas.rows()[0])
    assert top_row.strip(), "the spike reaches the top row"


def test_y_bounds_and_log_y():
    assert y_bounds([np.array([1.0, 3.0])], False) == (0.9, 3.1)
    assert y_bounds([np.array([-1.0, 0.0, 10.0, math.nan])], True) == (10.0 / 2, 10.0 * 2)
    assert y_bounds([np.array([math.nan])], False) is None


def test_sparkline():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], 8) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5], 10) == "▁▁▁"
    assert sparkline([1.0, math.nan, 2.0], 10) == "▁█"
    assert len(sparkline(list(range(100)), 12)) == 12
