"""Shared bits of the benchmarks: free ports, the helper control plane, percentiles, a dataset file of a size."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from podtui.server.runs import free_port

HERE = Path(__file__).resolve().parent


def start_plane(data_dir: Path, runs: int, dataset: Path | None = None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start bench/plane_server.py and return (process, its JSON line)."""
    args = [sys.executable, str(HERE / "plane_server.py"), str(data_dir), str(free_port()), str(runs)]
    if dataset is not None:
        args.append(str(dataset))
    env = {**os.environ, "PODTUI_CONFIG_FILE": str(data_dir / "none.toml")}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the benchmark control plane did not start")
    return proc, json.loads(line)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def write_dataset(path: Path, size: int) -> str:
    """A file of `size` pseudo-random bytes (fast: one random MiB repeated with a counter); its sha256."""
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for i in range(0, size, 1 << 20):
            piece = (i.to_bytes(8, "big") + block)[: min(1 << 20, size - i)]
            f.write(piece)
            digest.update(piece)
    return digest.hexdigest()
