"""TUI benchmarks (issue 5), each against a peer measured in the same run:

- cold start to the first frame of the dashboard (embedded control plane included, a RunPod key set) vs a
  minimal Textual app; checks that the runpod SDK was not imported;
- CPU while 10,000 log lines/s stream into the selected run's log view (10 s, headless);
- latency from a loss line printed in a local pod to the chart's redraw that shows it (p50/p95).

    python bench/tui.py [--only start|cpu|latency]

Goals: start <= 2x the minimal app; CPU <= 25% of a core; latency p95 < 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from rich.text import Text

MINIMAL = textwrap.dedent("""
    from textual.app import App
    from textual.widgets import Static

    class Minimal(App):
        def compose(self):
            yield Static("hello")

        def on_mount(self):
            self.call_after_refresh(self.done)

        def done(self):
            print(time.time())  # the first frame is on screen
            self.exit()

    import time
    Minimal().run(headless=True)
""")

PODTUI = textwrap.dedent("""
    import sys, tempfile, time
    from pathlib import Path
    from podtui.app import PodtuiApp
    from podtui.config import Settings

    class FirstFrame(PodtuiApp):
        # Textual runs PodtuiApp.on_mount too (handlers run along the MRO): calling super() would build a
        # second dashboard.
        def on_mount(self):
            self.call_after_refresh(self.done)

        def done(self):  # runs after a refresh has written the screen out
            if self.screen is not self.dashboard:
                self.call_after_refresh(self.done)
                return
            assert "runpod" not in sys.modules, "the runpod SDK was imported at start"
            print(time.time())  # the first frame is on screen
            self.exit(0)

    data = Path(tempfile.mkdtemp())
    FirstFrame(Settings(data_dir=data, port=0, runpod_api_key="rpa-bench-not-a-key")).run(headless=True)
""")


def timed(code: str, runs: int) -> list[float]:
    times = []
    env = {**os.environ, "PODTUI_CONFIG_FILE": "/nonexistent/config.toml"}
    for _ in range(runs):
        start = time.time()
        out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
        times.append(float(out.stdout.strip().splitlines()[-1]) - start)
    return times


def bench_start(runs: int = 5) -> None:
    # Bytecode as an installed package has it (pip compiles on install); an editable install under
    # PYTHONDONTWRITEBYTECODE would compile podtui's sources on every start, while the peer's textual is compiled.
    import podtui

    compileall.compile_dir(Path(podtui.__file__).parent, quiet=1)
    peer = timed(MINIMAL, runs)
    ours = timed(PODTUI, runs)
    p, o = statistics.median(peer), statistics.median(ours)
    print(f"cold start to first frame, median of {runs}: minimal Textual app {p * 1000:.0f} ms, "
          f"podtui {o * 1000:.0f} ms -> {o / p:.2f}x (goal <= 2x); runpod SDK not imported")


async def bench_cpu(seconds: float = 10.0, rate: int = 10_000) -> None:
    from podtui.app import PodtuiApp
    from podtui.config import Settings
    from podtui.feed import LogsAdded, RunChanged
    from podtui.models import LaunchSpec, LogLine, Run, RunStatus

    app = PodtuiApp(Settings(data_dir=Path(tempfile.mkdtemp()), port=0))
    async with app.run_test(size=(160, 45)) as pilot:
        while app.dashboard is None or app.dashboard._client is None:  # the control plane answers
            await pilot.pause(0.05)
        run = Run(id="bench", name="bench", provider="local", status=RunStatus.training, dataset_id="d",
                  created_at=time.time(), spec=LaunchSpec(dataset="demo", gpu_types=["local"]))
        app.take_entry(RunChanged(run=run))
        await pilot.pause(0.5)
        seq = 0
        per_tick = rate // 10
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, wall0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
        feed_cpu = 0.0
        while time.perf_counter() - wall0 < seconds:
            t = time.process_time()
            lines = [LogLine(seq=seq + i, ts=time.time(), stream="stdout",
                             text=f"step={seq + i} loss={1 / (seq + i + 1):.6f} some more training output here")
                     for i in range(per_tick)]
            app.take_entry(LogsAdded(run_id="bench", lines=lines))
            seq += per_tick
            feed_cpu += time.process_time() - t  # building the fake events is not the TUI's work
            await asyncio.sleep(0.1)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime - cpu0 - feed_cpu
        wall = time.perf_counter() - wall0
    print(f"{rate:,} log lines/s for {wall:.0f} s: TUI CPU {100 * cpu / wall:.1f}% of a core "
          f"(goal <= 25%; {seq:,} lines, generating them not counted)")


async def bench_latency(steps: int = 150) -> None:
    from podtui.app import PodtuiApp
    from podtui.config import Settings
    from podtui.models import LaunchSpec
    from podtui.widgets.loss_chart import LossChart

    work = Path(tempfile.mkdtemp())
    printed = work / "printed.txt"
    command = (f"python3 -c \"import time\nf = open('{printed}', 'w')\nfor i in range({steps}):\n"
               f"    print(f'step={{i}} loss={{1 / (i + 1):.5f}}', flush=True)\n"
               f"    f.write(f'{{i}} {{time.time()}}\\\\n'); f.flush()\n    time.sleep(0.05)\"")
    arrivals: dict[int, float] = {}
    redraws: list[float] = []
    original_add, original_draw = LossChart.add_points, LossChart.draw

    def add_points(self: LossChart, points: list[tuple[str, int, float, float]], compare: bool = False) -> None:
        now = time.time()
        for name, step, _, _ in points:
            if name == "loss":
                arrivals.setdefault(step, now)
        original_add(self, points, compare)

    def draw(self: LossChart, width: int, height: int) -> Text:
        out = original_draw(self, width, height)  # Textual's render of a frame that shows new points
        redraws.append(time.time())
        return out

    LossChart.add_points = add_points  # type: ignore[method-assign]
    LossChart.draw = draw  # type: ignore[method-assign]
    app = PodtuiApp(Settings(data_dir=work / "data", port=0))
    async with app.run_test(size=(160, 45)) as pilot:
        while app.dashboard is None or app.dashboard._client is None:  # the control plane answers
            await pilot.pause(0.05)
        assert app.client is not None
        run = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], command=command))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = app.live.runs.get(run.id)
            if current is not None and current.status.is_final:
                break
            await pilot.pause(0.2)
        await pilot.pause(1.0)
    LossChart.add_points, LossChart.draw = original_add, original_draw  # type: ignore[method-assign]
    printed_at = {int(a): float(b) for a, b in (line.split() for line in printed.read_text().splitlines())}
    latencies = []
    for step, arrived in arrivals.items():
        shown = next((r for r in redraws if r >= arrived), None)
        if step in printed_at and shown is not None:
            latencies.append(shown - printed_at[step])
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(f"loss line printed in a local pod -> chart redraw showing it: n={len(latencies)} "
          f"p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms (goal p95 <= 250 ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["start", "cpu", "latency"])
    args = parser.parse_args()
    if args.only in (None, "start"):
        bench_start()
    if args.only in (None, "cpu"):
        asyncio.run(bench_cpu())
    if args.only in (None, "latency"):
        asyncio.run(bench_latency())


if __name__ == "__main__":
    main()
