"""TUI benchmarks (issues 5 and 16), each against a peer measured in the same run:

- start: to the first frame of the dashboard (embedded control plane included, a RunPod key set; the app made as
  `podtui` makes it, from `StartSettings`; nothing of aiohttp, httpx, pydantic or numpy imported by then), to
  "usable": the runs table showing a run the store
  already held (read straight from the store for the first frame; time from process start until the RunsTable has
  that row), and to "live": the embedded control plane answers and the feed joins, all vs a minimal Textual app's
  first frame, timed in turn (one of each per round); and usable when a control plane already serves on the port
  (`podtui serve`, or one kept in the background at quit: the TUI attaches); checks that the runpod SDK was not
  imported. `--tmux` adds the same in a real terminal: tmux polled
  (`capture-pane`) until the run's name is on screen, vs until a minimal app's text is;
- CPU while 10,000 log lines/s reach the selected run through the real feed: a control plane in its own process,
  a feeder process POSTing the lines as pod reports to /api/v1/runs/{id}/report, the app (headless, attached with
  --server) following the run over SSE; checks that every line arrived;
- latency from a loss line printed in a local pod to the chart's redraw that shows it (p50/p95).

    python bench/tui.py [--only start|cpu|latency] [--tmux] [--runs 5]

Goals: start to usable <= 2x the minimal app's first frame (issue 16); CPU <= 25% of a core; latency p95 < 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from rich.text import Text

sys.path.insert(0, str(Path(__file__).resolve().parent))

KNOWN_RUN = "bench-known-run"
"""The name of the run the start benches wait for (store pre-populated)."""

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
    import sys, time
    from pathlib import Path
    from podtui.app import PodtuiApp
    from podtui.settings_sources import StartSettings

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
            early = [m for m in ("aiohttp", "httpx", "pydantic", "podtui.models", "numpy") if m in sys.modules]
            assert not early, f"imported before the first frame: {early}"
            print(time.time())  # the first frame is on screen
            self.exit(0)

    start = StartSettings.read(data_dir=Path(sys.argv[1]), port=0, runpod_api_key="rpa-bench-not-a-key")
    FirstFrame(start).run(headless=True)
""")

PODTUI_USABLE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from podtui.app import PodtuiApp
    from podtui.settings_sources import StartSettings
    from podtui.widgets.runs_table import RunsTable

    add_row = RunsTable.add_row

    def watched_add_row(self, *cells, **kwargs):
        # Textual's DataTable.add_row: the moment the table gets the stored run's row (no polling, which would
        # slow the start it measures)
        key = add_row(self, *cells, **kwargs)
        if key.value == sys.argv[2]:
            self.app.call_after_refresh(self.app.done)  # the row is on screen after this refresh
        return key

    RunsTable.add_row = watched_add_row

    class Usable(PodtuiApp):
        def done(self):
            assert "runpod" not in sys.modules, "the runpod SDK was imported at start"
            print(time.time())  # the runs table shows the run
            self.exit(0)

    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0  # a control plane serving there: attach to it
    start = StartSettings.read(data_dir=Path(sys.argv[1]), port=port, runpod_api_key="rpa-bench-not-a-key")
    Usable(start).run(headless=True)
""")



PODTUI_LIVE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from podtui.app import PodtuiApp
    from podtui.settings_sources import StartSettings
    from podtui.screens.dashboard import Dashboard

    attach = Dashboard.attach

    def watched_attach(self, client, status_line):
        attach(self, client, status_line)  # the control plane answers: live updates join
        self.app.call_after_refresh(self.app.done)

    Dashboard.attach = watched_attach

    class Live(PodtuiApp):
        def done(self):
            print(time.time())
            self.exit(0)

    start = StartSettings.read(data_dir=Path(sys.argv[1]), port=0, runpod_api_key="rpa-bench-not-a-key")
    Live(start).run(headless=True)
""")


def timed(code: str, runs: int, *args: str) -> list[float]:
    times = []
    env = {**os.environ, "PODTUI_CONFIG_FILE": "/nonexistent/config.toml"}
    for _ in range(runs):
        start = time.time()
        out = subprocess.run([sys.executable, "-c", code, *args], check=True, env=env, capture_output=True,
                             text=True)
        times.append(float(out.stdout.strip().splitlines()[-1]) - start)
    return times


def interleaved(variants: list[tuple[str, tuple[str, ...]]], runs: int) -> list[list[float]]:
    """Each variant timed `runs` times, one of each in turn: a load that comes and goes on a shared machine
    falls on all of them alike, not on whichever ran while it lasted."""
    times: list[list[float]] = [[] for _ in variants]
    for _ in range(runs):
        for i, (code, args) in enumerate(variants):
            times[i] += timed(code, 1, *args)
    return times


def known_store(data_dir: Path) -> str:
    """A data dir whose store holds one finished run (as a user's store holds older runs); returns its id."""
    from podtui.config import Settings, ensure_admin_token
    from podtui.models import LaunchSpec, Run, RunStatus
    from podtui.store import Store

    async def make() -> str:
        store = await Store.open(Settings(data_dir=data_dir).store_path)
        run = Run(id="bench0known", name=KNOWN_RUN, provider="local", status=RunStatus.succeeded,
                  dataset_id="d", created_at=time.time() - 60, spec=LaunchSpec(dataset="demo", gpu_types=["local"]))
        await store.create_run(run, "0" * 64)
        await store.close()
        return run.id

    ensure_admin_token(Settings(data_dir=data_dir))  # made once, as after a first start
    return asyncio.run(make())


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"


def bench_start(runs: int = 5, tmux: bool = False) -> None:
    # Bytecode as an installed package has it (pip compiles on install); an editable install under
    # PYTHONDONTWRITEBYTECODE would compile podtui's sources on every start, while the peer's textual is compiled.
    import podtui

    compileall.compile_dir(Path(podtui.__file__).parent, quiet=1)
    work = Path(tempfile.mkdtemp(prefix="podtui-start-"))
    try:
        run_id = known_store(work / "data")
        data = str(work / "data")
        peer, first, usable, live = interleaved([(MINIMAL, ()), (PODTUI, (data,)), (PODTUI_USABLE, (data, run_id)),
                                                 (PODTUI_LIVE, (data,))], runs)
        p = statistics.median(peer)
        print(f"start, {runs} runs each (headless, in-process timing of the frame)")
        print(f"  minimal Textual app, first frame     : {spread(peer)}")
        print(f"  podtui, first frame of the dashboard : {spread(first)} -> {statistics.median(first) / p:.2f}x")
        print(f"  podtui, usable (runs table shows the stored run): {spread(usable)} -> "
              f"{statistics.median(usable) / p:.2f}x (goal <= 2x the minimal app); runpod SDK not imported")
        print(f"  podtui, live (the embedded control plane answers, the feed joins): {spread(live)} -> "
              f"{statistics.median(live) / p:.2f}x")
        attached = timed_attached(work / "data", run_id, runs)
        print(f"  podtui, usable attached to a running control plane (`podtui serve`, or one kept in the background):"
              f" {spread(attached)} -> {statistics.median(attached) / p:.2f}x")
        if tmux:
            bench_start_tmux(work, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def timed_attached(data_dir: Path, run_id: str, runs: int) -> list[float]:
    """PODTUI_USABLE with `podtui serve` already answering on the data dir's port (the TUI attaches to it)."""
    from podtui.server.runs import free_port

    port = free_port()
    env = {**os.environ, "PODTUI_CONFIG_FILE": "/nonexistent/config.toml", "PODTUI_DATA_DIR": str(data_dir),
           "PODTUI_PORT": str(port)}
    serve = subprocess.Popen([sys.executable, "-c", "import sys; from podtui.cli import main; sys.argv[0] = 'podtui';"
                              " main()", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise SystemExit("`podtui serve` did not start") from None
                time.sleep(0.02)
        return timed(PODTUI_USABLE, runs, str(data_dir), run_id, str(port))
    finally:
        serve.terminate()
        serve.wait()


MINIMAL_TMUX = textwrap.dedent("""
    from textual.app import App
    from textual.widgets import Static

    class Minimal(App):
        def compose(self):
            yield Static("hello from a minimal app")

    Minimal().run()
""")


def tmux_until(socket: str, command: list[str], text: str, env: dict[str, str], timeout: float = 20.0) -> float:
    """Seconds from starting `command` in a new tmux session (160x45) until `text` is on its screen."""
    session = "bench"
    start = time.perf_counter()
    subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", session, "-x", "160", "-y", "45",
                    "-e", f"PODTUI_DATA_DIR={env['PODTUI_DATA_DIR']}", "-e", f"PODTUI_PORT={env['PODTUI_PORT']}",
                    "-e", "PODTUI_CONFIG_FILE=/nonexistent/config.toml", *command], check=True)
    try:
        while time.perf_counter() - start < timeout:
            screen = subprocess.run(["tmux", "-L", socket, "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            if text in screen:
                return time.perf_counter() - start
            time.sleep(0.005)
        raise SystemExit(f"tmux: {text!r} did not appear within {timeout:.0f} s")
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-session", "-t", session], capture_output=True)
        time.sleep(0.3)  # the app's exit (and its control plane's) is not part of the next start


def bench_start_tmux(work: Path, runs: int) -> None:
    """A real terminal: tmux on its own socket, its screen polled for the text."""
    from podtui.server.runs import free_port

    if shutil.which("tmux") is None:
        print("  tmux: not installed, skipped")
        return
    socket = f"podtui-bench-{os.getpid()}"
    env = {"PODTUI_DATA_DIR": str(work / "data"), "PODTUI_PORT": "0"}
    podtui = [sys.executable, "-c", "import sys; from podtui.entry import main; sys.argv[0] = 'podtui'; main()"]
    try:
        peer, ours = [], []
        for _ in range(runs):
            peer.append(tmux_until(socket, [sys.executable, "-c", MINIMAL_TMUX], "hello from a minimal app", env))
            ours.append(tmux_until(socket, podtui, KNOWN_RUN, {**env, "PODTUI_PORT": str(free_port())}))
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    print(f"  tmux (real terminal, screen polled every 5 ms), {runs} runs each")
    print(f"    minimal Textual app's text on screen : {spread(peer)}")
    print(f"    podtui, the stored run's name on screen: {spread(ours)} -> "
          f"{statistics.median(ours) / statistics.median(peer):.2f}x")


FEEDER = textwrap.dedent("""
    import asyncio, sys, time
    import aiohttp, orjson

    async def main(url, run_id, token, rate, seconds, seq):
        per_report = rate // 10
        ok = errors = 0
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            start = time.monotonic()
            tick = start
            while time.monotonic() - start < seconds:
                now = time.time()
                body = {"logs": [{"seq": seq + i, "ts": now, "stream": "stdout",
                                  "text": f"step={seq + i} loss={1 / (seq + i + 1):.6f} some more training output here"}
                                 for i in range(per_report)], "heartbeat_ts": now}
                async with session.post(f"{url}/api/v1/runs/{run_id}/report", data=orjson.dumps(body),
                                        headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        ok += per_report
                        seq += per_report
                    else:
                        errors += 1
                tick += 0.1
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
        print(ok, errors, flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])))
""")


async def bench_cpu(seconds: float = 10.0, rate: int = 10_000) -> None:
    from _common import start_plane

    from podtui.app import PodtuiApp
    from podtui.config import Settings
    from podtui.feed import FeedEntry, LogsAdded

    work = Path(tempfile.mkdtemp(prefix="podtui-cpu-"))
    plane, info = start_plane(work / "plane", runs=1)
    run_id, token = info["runs"][0]
    received = 0

    class Counting(PodtuiApp):
        def take_entry(self, entry: FeedEntry) -> None:
            nonlocal received
            if isinstance(entry, LogsAdded) and entry.run_id == run_id:
                received += len(entry.lines)
            super().take_entry(entry)

    app = Counting(Settings(data_dir=work / "tui", port=0), server=info["url"], token=info["admin_token"])
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            # usable: the runs table shows the run and it is selected (followed in full over SSE)
            while app.dashboard is None or app.dashboard.selected != run_id or run_id not in app.follow.runs:
                await pilot.pause(0.05)
            # The app's stream notices a changed subscription when its next entry comes: a first report with a
            # loss (a run change, which every subscriber gets) lets it reconnect following the run in full. Then
            # one line, to see the run's lines arrive before the timing starts.
            import httpx

            async with httpx.AsyncClient(base_url=info["url"], headers={"Authorization": f"Bearer {token}"},
                                         trust_env=False) as pod:
                now = time.time()
                (await pod.post(f"/api/v1/runs/{run_id}/report", json={
                    "metrics": [{"name": "loss", "step": 0, "value": 1.0, "ts": now}], "heartbeat_ts": now})
                 ).raise_for_status()
                await pilot.pause(0.5)
                (await pod.post(f"/api/v1/runs/{run_id}/report", json={
                    "logs": [{"seq": 0, "ts": now, "stream": "stdout", "text": "first line"}], "heartbeat_ts": now})
                 ).raise_for_status()
            deadline = time.monotonic() + 20
            while received < 1:
                if time.monotonic() > deadline:
                    raise SystemExit("the app did not get the run's first line over SSE within 20 s")
                await pilot.pause(0.05)
            received = 0
            await pilot.pause(0.5)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu0, wall0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
            feeder = await asyncio.create_subprocess_exec(
                sys.executable, "-c", FEEDER, info["url"], run_id, token, str(rate), str(seconds), "1",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await feeder.communicate()
            sent, errors = (int(x) for x in out.split())
            deadline = time.monotonic() + 10
            while received < sent and time.monotonic() < deadline:  # the lines still on their way count too
                await pilot.pause(0.02)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = usage.ru_utime + usage.ru_stime - cpu0
            wall = time.perf_counter() - wall0
    finally:
        plane.kill()
        plane.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{rate:,} log lines/s for {wall:.0f} s through the real feed (POSTed as pod reports, followed over SSE): "
          f"TUI CPU {100 * cpu / wall:.1f}% of a core (goal <= 25%; the control plane and the feeder in their own "
          f"processes, not counted)")
    print(f"  lines: {sent:,} answered 200 ({errors} errors), {received:,} reached the app over SSE "
          f"({'all' if received == sent else 'MISSING ' + str(sent - received)})")


async def bench_latency(steps: int = 150) -> None:
    from podtui.app import PodtuiApp
    from podtui.config import Settings
    from podtui.models import LaunchSpec, MetricPoint
    from podtui.widgets.loss_chart import LossChart

    work = Path(tempfile.mkdtemp())
    printed = work / "printed.txt"
    command = (f"python3 -c \"import time\nf = open('{printed}', 'w')\nfor i in range({steps}):\n"
               f"    print(f'step={{i}} loss={{1 / (i + 1):.5f}}', flush=True)\n"
               f"    f.write(f'{{i}} {{time.time()}}\\\\n'); f.flush()\n    time.sleep(0.05)\"")
    arrivals: dict[int, float] = {}
    redraws: list[float] = []
    original_add, original_draw = LossChart.add_points, LossChart.draw

    def add_points(self: LossChart, points: list[MetricPoint], compare: bool = False) -> None:
        now = time.time()
        for point in points:
            if point.name == "loss" and not compare:
                arrivals.setdefault(point.step, now)
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
    parser.add_argument("--tmux", action="store_true", help="also time the start in a real terminal (tmux)")
    parser.add_argument("--runs", type=int, default=5, help="starts of each kind")
    args = parser.parse_args()
    if args.only in (None, "start"):
        bench_start(args.runs, args.tmux)
    if args.only in (None, "cpu"):
        asyncio.run(bench_cpu())
    if args.only in (None, "latency"):
        asyncio.run(bench_latency())


if __name__ == "__main__":
    main()
