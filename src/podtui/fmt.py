"""Formatting shared by the CLI, the runs table and the chart: elapsed time and sparklines.

No numpy here: the CLI and the dashboard's first frame use these before any metric arrives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_SPARKS = "▁▂▃▄▅▆▇█"


def format_duration(seconds: float) -> str:
    """Elapsed time: 42s, 3m05s, 1h02m."""
    whole = int(max(0.0, seconds))
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"


def sparkline(values: Sequence[float], width: int) -> str:
    """The last `width` finite values as ▁▂▃▄▅▆▇█."""
    vals = [v for v in values if math.isfinite(v)][-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return "".join(_SPARKS[min(7, int((v - lo) / span * 7.999))] for v in vals)


def format_bytes(n: float) -> str:
    """Bytes as B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
