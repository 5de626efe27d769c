"""Braille rasterizing: a canvas of 2x4-dot cells, series reduced to per-pixel-column min/max (from block summaries
for long series), lines between sparse points. No textual here: draw.py colours and places what it returns."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

_BRAILLE_BASE = 0x2800
# bit of the dot at (column 0..1, row 0..3) inside a braille cell
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_DOT_ARRAY = np.array(_DOT, dtype=np.uint8)
_CELLS = [chr(_BRAILLE_BASE + b) if b else " " for b in range(256)]


@dataclass
class Columns:
    """A series reduced to pixel columns: per column the lowest and highest value (NaN where empty)."""

    lo: np.ndarray
    hi: np.ndarray


def reduce_to_columns(xs: np.ndarray, ys: np.ndarray, x0: float, x1: float, ncols: int) -> Columns:
    """Min and max of ys per pixel column over [x0, x1] (xs sorted ascending). Spikes survive: a column keeps its
    extremes, never an average. Non-finite ys are ignored here (the caller marks them)."""
    return columns_from_blocks(xs, ys, ys, x0, x1, ncols)


BLOCK = 256
"""Points per block of a series' min/max summary: a frame reduces blocks, not points."""


def block_summary(xs: np.ndarray, ys: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block of `block` consecutive points: its first x and the min and max of its finite ys (NaN when none)."""
    n = len(xs)
    if n == 0:
        empty = np.empty(0)
        return empty, empty, empty
    pad = (-n) % block
    clean = np.where(np.isfinite(ys), ys, np.nan)
    if pad:
        clean = np.concatenate([clean, np.full(pad, np.nan)])
    grid = clean.reshape(-1, block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN block gives NaN, as wanted
        lo = np.nanmin(grid, axis=1)
        hi = np.nanmax(grid, axis=1)
    return xs[::block].astype(np.float64), lo, hi


def columns_from_blocks(bx: np.ndarray, blo: np.ndarray, bhi: np.ndarray, x0: float, x1: float,
                        ncols: int) -> Columns:
    """Min/max per pixel column from a block summary (a block goes to the column of its first point)."""
    lo = np.full(ncols, np.nan)
    hi = np.full(ncols, np.nan)
    keep = np.isfinite(blo) & np.isfinite(bhi)
    bx, blo, bhi = bx[keep], blo[keep], bhi[keep]
    if len(bx) == 0 or ncols <= 0:
        return Columns(lo, hi)
    span = (x1 - x0) or 1.0
    cols = np.clip(((bx - x0) / span * ncols).astype(np.int64), 0, ncols - 1)
    starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
    lo[cols[starts]] = np.minimum.reduceat(blo, starts)
    hi[cols[starts]] = np.maximum.reduceat(bhi, starts)
    return Columns(lo, hi)


class BrailleCanvas:
    """A width x height grid of braille cells (2 x 4 dots each), with a colour index per cell."""

    def __init__(self, width: int, height: int) -> None:
        self.width = max(1, width)
        self.height = max(1, height)
        self.bits = np.zeros((self.height, self.width), dtype=np.uint8)
        self.owner = np.full((self.height, self.width), -1, dtype=np.int16)

    @property
    def px_width(self) -> int:
        return self.width * 2

    @property
    def px_height(self) -> int:
        return self.height * 4

    def vline(self, px: int, py0: int, py1: int, owner: int) -> None:
        """Set the dots of pixel column px from row py0 to py1 (inclusive, any order)."""
        if not 0 <= px < self.px_width:
            return
        a, b = sorted((max(0, min(self.px_height - 1, py0)), max(0, min(self.px_height - 1, py1))))
        cell_x, dot_x = divmod(px, 2)
        for py in range(a, b + 1):
            cell_y, dot_y = divmod(py, 4)
            self.bits[cell_y, cell_x] |= _DOT[dot_x][dot_y]
            self.owner[cell_y, cell_x] = owner

    def line(self, x0: int, y0: int, x1: int, y1: int, owner: int) -> None:
        """A straight line between two pixels, drawn as vertical runs per pixel column."""
        if x0 > x1:
            x0, y0, x1, y1 = x1, y1, x0, y0
        if x0 == x1:
            self.vline(x0, y0, y1, owner)
            return
        prev = y0
        for x in range(x0, x1 + 1):
            y = round(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
            self.vline(x, prev, y, owner)
            prev = y

    def fill_columns(self, px: np.ndarray, top: np.ndarray, bottom: np.ndarray, owner: int) -> None:
        """Vertical runs of dots, one per pixel column in px, from row top to row bottom (vectorized)."""
        if len(px) == 0:
            return
        top = np.clip(np.minimum(top, bottom), 0, self.px_height - 1)
        bottom = np.clip(np.maximum(top, bottom), 0, self.px_height - 1)
        rows = np.arange(self.px_height)[:, None]
        r_idx, c_idx = np.nonzero((rows >= top[None, :]) & (rows <= bottom[None, :]))
        pxs = px[c_idx]
        cell_y, cell_x = r_idx // 4, pxs // 2
        np.bitwise_or.at(self.bits, (cell_y, cell_x), _DOT_ARRAY[pxs % 2, r_idx % 4])
        self.owner[cell_y, cell_x] = owner

    def rows(self) -> list[list[tuple[str, int]]]:
        """Per text row: runs of (characters, owner index or -1) of cells with the same owner."""
        out = []
        owners = np.where(self.bits > 0, self.owner, -1)
        for r in range(self.height):
            row_bits, row_owner = self.bits[r].tolist(), owners[r].tolist()
            runs: list[tuple[str, int]] = []
            start = 0
            for i in range(1, self.width + 1):
                if i == self.width or row_owner[i] != row_owner[start]:
                    runs.append(("".join(_CELLS[b] for b in row_bits[start:i]), row_owner[start]))
                    start = i
            out.append(runs)
        return out


def plot_series(canvas: BrailleCanvas, xs: np.ndarray, ys: np.ndarray, x_range: tuple[float, float],
                y_range: tuple[float, float], owner: int, log_y: bool = False,
                blocks: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
    """Draw one series: lines between points when sparse, min/max per pixel column when dense (from the block
    summary when one is given, which keeps a frame's cost independent of the series' length)."""
    if len(xs) == 0:
        return
    y0, y1 = y_range
    if log_y:
        y0, y1 = math.log10(y0), math.log10(y1)
    yspan = (y1 - y0) or 1.0
    top = canvas.px_height - 1

    def to_py(v: float) -> int:
        return round(top - (v - y0) / yspan * top)

    def scale(a: np.ndarray) -> np.ndarray:
        if not log_y:
            return a
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, np.log10(np.where(a > 0, a, 1.0)), np.nan)

    x_lo, x_hi = x_range
    if len(xs) <= canvas.px_width:
        ys = scale(ys)
        xspan = (x_hi - x_lo) or 1.0
        prev: tuple[int, int] | None = None
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
            if not math.isfinite(y):
                prev = None
                continue
            point = (int((x - x_lo) / xspan * (canvas.px_width - 1)), to_py(y))
            if prev is None:
                canvas.vline(point[0], point[1], point[1], owner)
            else:
                canvas.line(prev[0], prev[1], point[0], point[1], owner)
            prev = point
        return
    if blocks is not None and len(xs) > BLOCK * canvas.px_width // 8:
        bx, blo, bhi = blocks
        if log_y:  # log keeps order: a block's extremes stay its extremes (non-positive lows clamp to the floor)
            blo = np.where(blo > 0, blo, 10**y0)
        cols = columns_from_blocks(bx, scale(blo), scale(bhi), x_lo, x_hi, canvas.px_width)
    else:
        cols = reduce_to_columns(xs, scale(ys), x_lo, x_hi, canvas.px_width)
    valid = np.flatnonzero(~np.isnan(cols.lo))
    if len(valid) == 0:
        return
    tops = np.rint(top - (cols.hi[valid] - y0) / yspan * top).astype(np.int64)
    bottoms = np.rint(top - (cols.lo[valid] - y0) / yspan * top).astype(np.int64)
    mids = np.rint(top - ((cols.lo[valid] + cols.hi[valid]) / 2 - y0) / yspan * top).astype(np.int64)
    # join each column to the previous one so a steep fall stays one curve
    tops[1:] = np.minimum(tops[1:], mids[:-1])
    bottoms[1:] = np.maximum(bottoms[1:], mids[:-1])
    canvas.fill_columns(valid, tops, bottoms, owner)
