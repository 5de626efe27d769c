"""Downsampling keeps spikes; smoothing matches TensorBoard's debiased EMA."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from podtui.chart.smoothing import debiased_ema
from podtui.downsample import downsample_minmax


def test_small_series_is_kept_whole():
    assert downsample_minmax([1.0, 2.0, 3.0], 10) == [0, 1, 2]


def test_spike_survives_downsampling():
    values = [1.0] * 100_000
    values[54_321] = 50.0
    values[77_777] = -3.0
    keep = downsample_minmax(values, 200)
    assert len(keep) <= 200
    assert 54_321 in keep and 77_777 in keep
    assert keep[0] == 0 and keep[-1] == len(values) - 1


def test_nan_survives_downsampling():
    values = [float(i) for i in range(10_000)]
    values[5000] = math.nan
    keep = downsample_minmax(values, 100)
    assert 5000 in keep


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=0, max_size=500),
       st.integers(min_value=1, max_value=300))
def test_downsample_is_sorted_bounded_and_keeps_extremes(values, max_points):
    keep = downsample_minmax(values, max_points)
    assert keep == sorted(set(keep))
    assert len(keep) <= max(max_points, 0)
    if values and max_points >= 4:
        kept = [values[i] for i in keep]
        assert max(kept) == max(values) and min(kept) == min(values)


def test_ema_matches_tensorboard_formula():
    # TensorBoard: last = last * w + (1 - w) * v; smoothed = last / (1 - w ** n)
    values = [1.0, 0.5, 0.25, 4.0]
    w = 0.6
    expected, last = [], 0.0
    for n, v in enumerate(values, start=1):
        last = last * w + (1 - w) * v
        expected.append(last / (1 - w**n))
    assert debiased_ema(values, w) == expected
    assert debiased_ema(values, 0.0) == values
    assert debiased_ema([2.0], 0.9) == [2.0]


def test_ema_passes_non_finite_through():
    out = debiased_ema([1.0, math.nan, 1.0], 0.5)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == 1.0


def test_a_series_grown_point_by_point_matches_one_built_at_once():
    from podtui.chart.series import Series
    from podtui.chart.smoothing import debiased_ema

    rng = np.random.default_rng(1)
    values = rng.normal(1.0, 0.3, 5000)
    values[1234] = np.nan
    grown = Series()
    for lo in range(0, 5000, 37):  # the buffer reallocates several times on the way
        hi = min(5000, lo + 37)
        grown.extend(list(range(lo, hi)), values[lo:hi].tolist(), [float(s) for s in range(lo, hi)])
        grown.smoothed(0.6)  # extended incrementally
        grown.blocks("smooth", False, 0.6)
    whole = Series()
    whole.replace(list(range(5000)), values.tolist(), [float(s) for s in range(5000)])
    assert np.array_equal(grown.steps, whole.steps) and np.array_equal(grown.ts, whole.ts)
    assert np.array_equal(grown.values, whole.values, equal_nan=True)
    reference = np.array(debiased_ema(values.tolist(), 0.6))
    assert np.allclose(grown.smoothed(0.6), reference, equal_nan=True, rtol=1e-9)
    for a, b in zip(grown.blocks("smooth", False, 0.6), whole.blocks("smooth", False, 0.6), strict=True):
        assert np.allclose(a, b, equal_nan=True, rtol=1e-9)


def test_points_arriving_out_of_order_are_merged_once_per_step():
    from podtui.chart.series import Series

    s = Series()
    s.extend([0, 1, 2], [3.0, 2.0, 1.0], [0.0, 1.0, 2.0])
    s.extend([2, 3], [9.0, 0.5], [2.0, 3.0])  # a resend overlapping the last point
    assert s.steps.tolist() == [0, 1, 2, 3] and s.values.tolist()[-1] == 0.5


def test_a_later_attempt_redoing_steps_replaces_their_values():
    """A new pod resumed from an older checkpoint (--retries) sends steps again: its values are the curve."""
    from podtui.chart.series import Series

    s = Series()
    s.extend([1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    s.smoothed(0.6)
    s.extend([3, 4, 5], [2.5, 1.5, 0.5], [10.0, 11.0, 12.0])
    assert s.steps.tolist() == [1, 2, 3, 4, 5]
    assert s.values.tolist() == [4.0, 3.0, 2.5, 1.5, 0.5] and s.ts.tolist()[2:] == [10.0, 11.0, 12.0]
