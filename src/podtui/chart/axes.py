"""Axis ticks and bounds: round values for linear axes, powers of ten for log-y, short labels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten within [lo, hi] (both > 0), or the ends when the range spans less than a decade."""
    if lo <= 0 or hi <= 0 or not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    first, last = math.ceil(math.log10(lo)), math.floor(math.log10(hi))
    ticks = [10.0**e for e in range(first, last + 1)]
    return ticks if len(ticks) >= 2 else [lo, hi]


def format_tick(value: float) -> str:
    """Short axis label: 0.5, 12, 1.2k, 3e-05."""
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1e5 or a < 1e-3:
        return f"{value:.0e}"
    if a >= 1000:
        return f"{value / 1000:.3g}k"
    return f"{value:.3g}"


def y_bounds(series: Sequence[np.ndarray], log_y: bool) -> tuple[float, float] | None:
    """The y range covering every finite value (positive ones for log-y), padded a little. Pass block lows and
    highs instead of whole series to keep this independent of their length."""
    lows, highs = [], []
    for s in series:
        if not len(s):
            continue
        keep = np.isfinite(s) & (s > 0) if log_y else np.isfinite(s)
        if keep.any():
            lows.append(float(s[keep].min()))
            highs.append(float(s[keep].max()))
    if not lows:
        return None
    lo, hi = min(lows), max(highs)
    if log_y:
        if lo == hi:
            return lo / 2, hi * 2
        return lo, hi
    if lo == hi:
        return lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad
