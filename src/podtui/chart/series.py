"""A growing metric series as numpy columns, with its smoothed curve and per-block min/max summaries cached, so a
redraw costs the same at 1k or 1M points."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from .raster import BLOCK, block_summary
from .smoothing import ema_continue


class Column:
    """A float64 array that grows by doubling its buffer: appending costs the new values, not the whole series."""

    def __init__(self, values: object = ()) -> None:
        self._buf = np.asarray(values, dtype=np.float64).copy()
        self._n = len(self._buf)

    @property
    def array(self) -> np.ndarray:
        """The values (a view: appending later never changes what it shows)."""
        return self._buf[:self._n]

    def append(self, values: np.ndarray) -> None:
        need = self._n + len(values)
        if need > len(self._buf):
            grown = np.empty(max(need, 2 * len(self._buf), 1024), dtype=np.float64)
            grown[:self._n] = self._buf[:self._n]
            self._buf = grown
        self._buf[self._n:need] = values
        self._n = need


class Series:
    """A growing metric series held as numpy arrays, with its smoothed curve (continued incrementally as points
    arrive) and per-block min/max summaries cached, so a redraw costs the same at 1k or 1M points."""

    def __init__(self) -> None:
        self._steps, self._values, self._ts = Column(), Column(), Column()
        self._smooth: tuple[float, Column, float, int] | None = None  # weight, curve, last, count
        self._blocks: dict[tuple[str, bool, float], tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    @property
    def steps(self) -> np.ndarray:
        return self._steps.array

    @property
    def values(self) -> np.ndarray:
        return self._values.array

    @property
    def ts(self) -> np.ndarray:
        return self._ts.array

    def replace(self, steps: Sequence[int], values: Sequence[float], ts: Sequence[float] | None = None) -> None:
        self._steps, self._values = Column(steps), Column(values)
        self._ts = Column(ts if ts is not None else [0.0] * len(steps))
        self._smooth = None
        self._blocks.clear()

    def add(self, points: Sequence[Point]) -> None:
        """Append one metric's points (the live feed's), read straight into the columns."""
        n = len(points)
        self.extend(np.fromiter((p.step for p in points), np.float64, n),
                    np.fromiter((float(p.value) for p in points), np.float64, n),
                    np.fromiter((p.ts for p in points), np.float64, n))

    def extend(self, steps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray,
               ts: Sequence[float] | np.ndarray) -> None:
        if not len(steps):
            return
        new = [np.asarray(a, dtype=np.float64) for a in (steps, values, ts)]
        if len(self.steps) and new[0].min() <= self.steps[-1]:
            # out of order (a resend after a restart, or a new attempt redoing steps from its checkpoint): merge,
            # one point per step, the newer value winning (np.unique takes each step's first occurrence, so the
            # new points go first), and recompute the caches
            uniq, index = np.unique(np.concatenate([new[0], self.steps]), return_index=True)
            self.replace(uniq.tolist(), np.concatenate([new[1], self.values])[index].tolist(),
                         np.concatenate([new[2], self.ts])[index].tolist())
            return
        self._steps.append(new[0])
        self._values.append(new[1])
        self._ts.append(new[2])

    def xs(self, by_time: bool) -> np.ndarray:
        """Steps, or seconds (wall time)."""
        return self.ts if by_time else self.steps

    def smoothed(self, weight: float) -> np.ndarray:
        """The debiased EMA of the values, extended from the cached state when only new points arrived."""
        cached = self._smooth
        done = 0 if cached is None else len(cached[1].array)
        if cached is None or cached[0] != weight or done > len(self.values):
            values, last, count = ema_continue(self.values, weight)
            curve = Column(values)
        elif done == len(self.values):
            return cached[1].array
        else:
            tail, last, count = ema_continue(self.values[done:], weight, cached[2], cached[3])
            curve = cached[1]
            curve.append(tail)
        self._smooth = (weight, curve, last, count)
        return curve.array

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


class Columns(Protocol):
    """One metric as parallel columns (a `models.MetricSeries` from the metrics API is one)."""

    @property
    def steps(self) -> Sequence[int]: ...
    @property
    def values(self) -> Sequence[float]: ...
    @property
    def ts(self) -> Sequence[float]: ...


class Point(Protocol):
    """One value of one metric at one step (a `models.MetricPoint` from the live feed is one)."""

    @property
    def name(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def value(self) -> float | str: ...
    @property
    def ts(self) -> float: ...


def build_series(data: Mapping[str, Columns]) -> dict[str, Series]:
    """Series from each metric's columns, by name."""
    built = {}
    for name, columns in data.items():
        s = Series()
        s.replace(columns.steps, columns.values, columns.ts)
        built[name] = s
    return built


def by_name(points: Iterable[Point]) -> dict[str, list[Point]]:
    """Points by metric name, in their order (each list goes to its metric's `Series.add`)."""
    named: dict[str, list[Point]] = {}
    for p in points:
        named.setdefault(p.name, []).append(p)
    return named
