"""Min/max downsampling of a metric series for the API (keeps spikes; numpy-free: the server never loads numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def downsample_minmax(values: Sequence[float], max_points: int) -> list[int]:
    """Indices of the points to keep so that at most `max_points` remain: the first and last point, and per
    bucket of consecutive points its minimum and maximum (a NaN or infinity is always kept: it is a signal)."""
    n = len(values)
    if max_points <= 0:
        return []
    if n <= max_points:
        return list(range(n))
    if max_points < 4:
        return sorted({0, n - 1})[:max_points]
    buckets = (max_points - 2) // 2
    keep = {0, n - 1}
    size = (n - 2) / buckets
    for b in range(buckets):
        lo = 1 + int(b * size)
        hi = min(n - 1, 1 + int((b + 1) * size))
        if lo >= hi:
            continue
        odd = next((i for i in range(lo, hi) if not math.isfinite(values[i])), None)
        finite = [i for i in range(lo, hi) if math.isfinite(values[i])]
        if odd is not None:
            keep.add(odd)
            if finite:
                keep.add(max(finite, key=lambda i: abs(values[i])))
            continue
        if finite:
            keep.add(min(finite, key=values.__getitem__))
            keep.add(max(finite, key=values.__getitem__))
    return sorted(keep)[:max_points] if len(keep) > max_points else sorted(keep)
