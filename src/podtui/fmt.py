"""Formatting shared by the CLI, the runs table and the chart: elapsed time and sparklines.

No numpy here: the CLI and the dashboard's first frame use these before any metric arrives.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Sequence
from typing import Any

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


def outputs_line(page: Any, more_may_come: bool = True, now: float | None = None) -> str:
    """One line for a run's outputs: "outputs: 3 files, 1.2 GiB, home", or what still moves and until when;
    "none yet" while `more_may_come` (`Run.pod_in_use`), else "none"."""
    s = page.summary
    now = _time.time() if now is None else now
    text = f"outputs: {s.files_home} file{'s' if s.files_home != 1 else ''}, {format_bytes(s.bytes_home)}"
    if s.state == "home":
        return text + ", home"
    if s.state == "moving":
        text += f"; {s.files_moving} moving ({format_bytes(s.bytes_received)} of {format_bytes(s.bytes_moving)})"
    elif s.state == "none":
        text = "outputs: none yet" if more_may_come else "outputs: none"
    if s.pod_until:
        text += f"; the pod ends in {format_duration(max(0.0, s.pod_until - now))} at the latest (keep-alive)"
    return text


def volume_outputs_line(volume: Any) -> str:
    """Where a run's outputs are on its volume (`--outputs-on-volume`): "outputs on volume data: 2 files,
    1.2 GiB in s3://vol/podtui/outputs/RUN/ (/workspace/podtui/outputs/RUN/ in a pod)"."""
    n = len(volume.files)
    size = format_bytes(sum(f.size or 0 for f in volume.files))
    text = f"outputs on volume {volume.volume}: {n} file{'s' if n != 1 else ''}, {size} in {volume.location}"
    if volume.location != volume.path:
        text += f" ({volume.path} in a pod)"
    return text + (f"; {volume.note}" if volume.note else "")


def data_wait_text(wait_s: float | None, wait_usd: float | None, still: bool = False) -> str:
    """A run's wait for its data: `1m05s ($0.12)`, `3s so far`, or `-`."""
    if wait_s is None:
        return "-"
    cost = f" (${wait_usd:.2f})" if wait_usd else ""
    return f"{format_duration(wait_s)}{cost}" + (" so far" if still else "")
