"""Downsampling keeps spikes; smoothing matches TensorBoard's debiased EMA."""

import math

from hypothesis import given
from hypothesis import strategies as st

from podtui.series import debiased_ema, downsample_minmax


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
