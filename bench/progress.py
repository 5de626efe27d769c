"""A progress bar redrawn 10,000 times a second (issue 15): the pod agent's CPU while it reads it, against a
plain Python reader draining the same stream (no parsing) and `cat`, measured in the same run; and what is
stored: one log line per finished bar, not one per drawing.

    python bench/progress.py [--bars 3] [--seconds 3] [--rate 10000]

The command draws tqdm-like bars (`\\r` + the bar with a loss postfix, one write per drawing, as tqdm does)
on stderr; the agent reports to a small recording control plane in this process. CPU is the agent process's
own (utime + stime from /proc, without its command's), per second of drawing.

Goal: the agent under 5% of a core; one stored line per bar.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests/fakes
from tests.agent_pyz import agent_pyz
from tests.fakes.report_sink import ReportSink

AGENT = agent_pyz()  # the zipapp pods run
TICK = os.sysconf("SC_CLK_TCK")

DRAW = textwrap.dedent("""
    import os, sys, time
    bars, seconds, rate = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    per_tick = max(1, rate // 100)
    total = int(seconds * rate)
    for b in range(1, bars + 1):
        n = 0
        start = time.monotonic()
        while n < total:
            for _ in range(per_tick):
                n += 1
                pct = 100 * n // total
                bar = "#" * (pct // 10) + " " * (10 - pct // 10)
                os.write(2, f"\\rEpoch {b}: {pct:3d}%|{bar}| {n}/{total} [00:01<00:02, {rate}.0it/s, "
                            f"loss={1 / n:.5f}]".encode())
            # pace to `rate` drawings a second
            ahead = start + n / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        os.write(2, b"\\n")
        print(f"bar {b} done", flush=True)
""")

DRAIN = textwrap.dedent("""
    import os, subprocess, sys
    child = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE)
    fd = child.stderr.fileno()
    while os.read(fd, 1 << 16):
        pass
    child.wait()
""")


def own_cpu(pid: int) -> float | None:
    """Seconds of CPU the process itself used (not its children), or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(args: list[str], env: dict[str, str] | None = None, stdin: int | None = None) -> tuple[float, float]:
    """(CPU seconds of the process itself, wall seconds) until it exits."""
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdin=stdin, stdout=subprocess.DEVNULL)
    if stdin is not None:
        os.close(stdin)
    last = 0.0
    while proc.poll() is None:
        cpu = own_cpu(proc.pid)
        if cpu is not None:
            last = cpu
        time.sleep(0.05)
    return last, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="drawing time per bar")
    parser.add_argument("--rate", type=int, default=10_000, help="drawings per second")
    args = parser.parse_args()
    draw = [sys.executable, "-c", DRAW, str(args.bars), str(args.seconds), str(args.rate)]
    drawing_s = args.bars * args.seconds
    drawings = int(args.bars * args.seconds * args.rate)

    plane = ReportSink()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PODTUI_URL": plane.url, "PODTUI_RUN_ID": "bench", "PODTUI_TOKEN": "t",
               "PODTUI_HOME": home, "NO_PROXY": "127.0.0.1"}
        agent_cpu, agent_wall = measure([sys.executable, str(AGENT), "run", "--", *draw], env)
    drain_cpu, _ = measure([sys.executable, "-c", DRAIN, *draw])
    read_end, write_end = os.pipe()
    drawer = subprocess.Popen(draw, stdout=subprocess.DEVNULL, stderr=write_end)
    os.close(write_end)
    cat_cpu, _ = measure(["cat"], stdin=read_end)
    drawer.wait()

    printed = [text for stream, text in plane.logged.values() if stream != "system"]
    bar_lines = [text for text in printed if text.startswith("Epoch")]
    loss = sorted(step for name, step in plane.metrics if name == "loss")
    print(f"{args.bars} bars x {args.seconds:g} s at {args.rate:,} drawings/s = {drawings:,} drawings "
          f"({drawing_s:g} s), agent ran {agent_wall:.1f} s")
    print(f"agent CPU                       : {100 * agent_cpu / drawing_s:6.2f} % of a core "
          f"({agent_cpu:.2f} s; start and last report included)")
    print(f"peer: Python reader, no parsing : {100 * drain_cpu / drawing_s:6.2f} % of a core")
    print(f"peer: cat                       : {100 * cat_cpu / drawing_s:6.2f} % of a core")
    print(f"ratio agent / Python reader     : {agent_cpu / drain_cpu if drain_cpu else float('inf'):6.2f}x")
    print(f"stored log lines of the bars    : {len(bar_lines)} (one per finished bar: {args.bars}); "
          f"all lines {len(printed)}")
    print(f"loss points                     : {len(loss)} (steps {loss[0] if loss else '-'}.."
          f"{loss[-1] if loss else '-'}), reports {len(plane.reports)}")
    print(f"goal: agent < 5 % of a core: {'met' if agent_cpu / drawing_s < 0.05 else 'NOT met'}; "
          f"one line per bar: {'met' if len(bar_lines) == args.bars else 'NOT met'}")


if __name__ == "__main__":
    main()
