"""Loss chart frame time: 1M points x 2 series (loss, eval_loss) with log-y and smoothing, vs the same chart at
1k points (the peer, measured in the same run). Also the cost of a frame right after a report's worth of new
points arrives (caches extended, not rebuilt from scratch).

    python bench/chart.py [--points 1000000] [--frames 50]

Goal (issue 5): <= 5 ms per frame at 1M points x 2 series with log-y.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from podtui.widgets.loss_chart import LossChart


def make_chart(points: int) -> LossChart:
    chart = LossChart()
    steps = np.arange(1, points + 1)
    rng = np.random.default_rng(0)
    loss = 3.0 * np.exp(-steps / (points / 5)) + 0.05 + np.abs(rng.normal(0, 0.02, points))
    loss[points // 2] = 40.0  # a spike that must stay visible
    evals = steps[::10]
    chart.set_series({"loss": (steps.tolist(), loss.tolist(), (steps * 0.1).tolist()),
                      "eval_loss": (evals.tolist(), (loss[::10] + 0.05).tolist(), (evals * 0.1).tolist())})
    chart.log_y = True
    chart.smoothing = 0.6
    return chart


def frame_ms(chart: LossChart, frames: int, width: int = 120, height: int = 30) -> list[float]:
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        chart.draw(width, height)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    big = make_chart(args.points)
    first = frame_ms(big, 1)[0]
    steady = frame_ms(big, args.frames)
    small = frame_ms(make_chart(1000), args.frames)
    appended = []
    step = args.points
    for _ in range(args.frames):
        new = list(range(step + 1, step + 101))
        big.add_points([("loss", s, 0.05, s * 0.1) for s in new])
        step += 100
        appended += frame_ms(big, 1)
    drawn = big.draw(120, 30).plain
    assert any(0x2800 < ord(c) <= 0x28FF for c in drawn)
    print(f"{args.points:,} points x 2 series, log-y, smoothing 0.6, 120x30 cells")
    print(f"first frame (builds caches, EMA) : {first:8.1f} ms")
    print(f"steady frame, median / p95       : {statistics.median(steady):8.2f} / "
          f"{sorted(steady)[int(len(steady) * 0.95) - 1]:.2f} ms (goal <= 5 ms)")
    print(f"frame after +100 points, median  : {statistics.median(appended):8.2f} ms")
    print(f"peer: 1,000 points, median       : {statistics.median(small):8.2f} ms "
          f"(ratio {statistics.median(steady) / statistics.median(small):.2f}x)")


if __name__ == "__main__":
    main()
