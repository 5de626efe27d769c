"""The demo: a small regression dataset registered as `demo` on first start, trained by demo/train.py."""

from __future__ import annotations

import random
from pathlib import Path

DEMO_NAME = "demo"
DEMO_COMMAND = "python3 train.py"
DEMO_WORKDIR = Path(__file__).resolve().parent.parent / "demo"
_FEATURES = 6
_ROWS = 3000


def write_demo_dataset(path: Path) -> Path:
    """Write the demo CSV (deterministic: the same bytes every time, so the same dataset id)."""
    rng = random.Random(1234)
    weights = [rng.uniform(-2, 2) for _ in range(_FEATURES)]
    lines = [",".join([f"x{i}" for i in range(_FEATURES)] + ["y"])]
    for _ in range(_ROWS):
        x = [rng.gauss(0, 1) for _ in range(_FEATURES)]
        y = sum(w * v for w, v in zip(weights, x, strict=True)) + 0.5 + rng.gauss(0, 0.3)
        lines.append(",".join(f"{v:.5f}" for v in [*x, y]))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
