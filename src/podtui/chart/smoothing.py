"""TensorBoard's debiased EMA: a pure-Python reference and the vectorized one the chart continues as points arrive."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def debiased_ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an EMA with weight in [0, 1), debiased for the start; non-finite values pass
    through unsmoothed and do not poison the average."""
    if not 0 <= weight < 1:
        raise ValueError("smoothing weight must be in [0, 1)")
    out: list[float] = []
    last = 0.0
    num_accum = 0
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        last = last * weight + (1 - weight) * value
        num_accum += 1
        debias = 1.0 - weight**num_accum if weight > 0 else 1.0
        out.append(last / debias)
    return out


def ema_continue(values: np.ndarray, weight: float, last: float = 0.0,
                 count: int = 0) -> tuple[np.ndarray, float, int]:
    """debiased_ema over `values`, continuing from an earlier state (last raw EMA, finite values seen), vectorized
    in chunks short enough that weight**-k stays finite. Returns (smoothed, last, count)."""
    if not 0 <= weight < 1:
        raise ValueError("smoothing weight must be in [0, 1)")
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    finite = np.isfinite(values)
    v = values[finite]
    if len(v) == 0:
        return out, last, count
    if weight == 0:
        return out, float(v[-1]), count + len(v)
    chunk = max(1, int(600 / -math.log(weight)))
    smoothed = np.empty_like(v)
    for start in range(0, len(v), chunk):
        part = v[start:start + chunk]
        pw = weight ** np.arange(len(part), dtype=np.float64)  # w^j
        state = weight * pw * last + np.cumsum(part / pw) * pw * (1 - weight)
        smoothed[start:start + len(part)] = state
        last = float(state[-1])
    n = np.arange(count + 1, count + len(v) + 1, dtype=np.float64)
    out[finite] = smoothed / (1.0 - weight**n)
    return out, last, count + len(v)


def debiased_ema_np(values: np.ndarray, weight: float) -> np.ndarray:
    """debiased_ema, vectorized (same results to ~1e-14)."""
    return ema_continue(values, weight)[0]
