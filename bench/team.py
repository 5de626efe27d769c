"""Team load: one control plane (bench/plane_server.py, set up as `podtui serve` runs), 500 simulated pods each
reporting once a second (100 metric points: 20 steps of loss, lr, grad_norm, tokens_per_s, mem_gb; and 20 log
lines), 10 watchers each following one run in full and every run as summaries (`GET /api/v1/events?full=<run>`,
SSE, resumed with Last-Event-ID when a connection drops), for 60 s.

The pods are a compact asyncio/aiohttp load generator (this process) posting the JSON body the agent posts
(`{"metrics": [...], "logs": [...], "heartbeat_ts": ...}`) on its own keep-alive connection per pod (opened before
the timing starts), each pod on its own phase of the second; a report that fails is sent again after 0.5 s, as the
agent would, until it is taken. The
watchers run in a second process. Then the peer: the same generator against a stub server (a minimal aiohttp app
that reads each POST and answers 200 with a tiny JSON, storing nothing), to show the generator is not the limit.

Checks: every point and line the pods sent is in the control plane's SQLite (counted per run), and every watcher
got its run's points and lines over SSE (each once), and a change of every run (the feed sends a run's last change
of each batch it reads, so at most the run changes stored after it connected, counted in SQLite).

    python bench/team.py [--pods 500] [--seconds 60] [--watchers 10] [--stub-seconds S] [--no-stub]

Goals (issue 16): 0 errors, nothing lost, every watcher gets every event it subscribed to, report p99 < 100 ms,
server RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from _common import percentile, start_plane

STEPS_PER_REPORT = 20
METRICS = ("loss", "lr", "grad_norm", "tokens_per_s", "mem_gb")
POINTS_PER_REPORT = STEPS_PER_REPORT * len(METRICS)  # 100
LINES_PER_REPORT = 20
HERE = Path(__file__).resolve().parent


# -- the pods -------------------------------------------------------------------------------------------------


def report_body(step: int, seq: int) -> bytes:
    """One second of a pod: 20 training steps printed as lines, their 5 metrics each, as the agent posts them."""
    now = time.time()
    metrics: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    for i in range(STEPS_PER_REPORT):
        s = step + i
        values = (2.0 / (1 + s / 500), 3e-4, 0.5 + (s % 7) / 10, 41000.0 + s % 100, 17.25)
        metrics += [{"name": n, "step": s, "value": v, "ts": now} for n, v in zip(METRICS, values, strict=True)]
        text = (f"step={s} loss={values[0]:.5f} lr={values[1]:.2e} grad_norm={values[2]:.3f} "
                f"tokens_per_s={values[3]:.0f} mem_gb={values[4]:.2f}")
        logs.append({"seq": seq + i, "ts": now, "stream": "stdout", "text": text})
    return orjson.dumps({"metrics": metrics, "logs": logs, "heartbeat_ts": now})


@dataclass
class LoadResult:
    """What the pods did."""

    sent: dict[str, int] = field(default_factory=dict)
    """Reports taken (answered 200) per run."""
    errors: int = 0
    failed: int = 0
    """Reports never taken (still failing when the retries stopped)."""
    latencies: list[float] = field(default_factory=list)
    late: int = 0
    """Reports posted more than 100 ms after their second began (the generator or the server fell behind)."""
    wall: float = 0.0
    cpu: float = 0.0
    """CPU seconds of this process (the generator) during the load."""
    scheduled: int = 0
    """Reports due: pods x seconds."""


async def pods_load(url: str, runs: list[list[str]], seconds: float) -> LoadResult:
    """Each pod posts one report a second on its own phase, for `seconds`."""
    result = LoadResult(sent={run_id: 0 for run_id, _ in runs})
    connector = aiohttp.TCPConnector(limit=0)
    cpu0 = time.process_time()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        # Each pod opens its keep-alive connection first (a heartbeat, not timed): 500 connections opened in the same
        # second overflow the listen backlog, and a dropped SYN is retried after 1 s, which is not what a team's pods,
        # started over hours, see.
        sem = asyncio.Semaphore(50)

        async def connect(run_id: str, token: str) -> None:
            async with sem:
                for _ in range(20):
                    try:
                        async with session.post(f"{url}/api/v1/runs/{run_id}/report",
                                                data=orjson.dumps({"heartbeat_ts": time.time()}),
                                                headers={"Authorization": f"Bearer {token}",
                                                         "Content-Type": "application/json"}) as resp:
                            await resp.read()
                            if resp.status == 200:
                                return
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    await asyncio.sleep(0.5)
                raise SystemExit(f"pod {run_id} could not reach {url}")

        await asyncio.gather(*(connect(run_id, token) for run_id, token in runs))
        start = time.monotonic() + 0.5
        end = start + seconds

        async def pod(i: int, run_id: str, token: str) -> None:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            report_url = f"{url}/api/v1/runs/{run_id}/report"
            tick = start + i / len(runs)
            step = seq = 0
            while tick < end:
                result.scheduled += 1
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
                if time.monotonic() - tick > 0.1:
                    result.late += 1
                body = report_body(step, seq)
                while True:
                    t = time.perf_counter()
                    try:
                        async with session.post(report_url, data=body, headers=headers) as resp:
                            await resp.read()
                            status = resp.status
                    except (aiohttp.ClientError, TimeoutError):
                        status = 0
                    result.latencies.append((time.perf_counter() - t) * 1000)
                    if status == 200:
                        result.sent[run_id] += 1
                        break
                    result.errors += 1
                    if time.monotonic() > end + 30:
                        result.failed += 1
                        break
                    await asyncio.sleep(0.5)
                step += STEPS_PER_REPORT
                seq += LINES_PER_REPORT
                tick += 1.0

        await asyncio.gather(*(pod(i, run_id, token) for i, (run_id, token) in enumerate(runs)))
        result.wall = time.monotonic() - start  # from the first pod's first second
    result.cpu = time.process_time() - cpu0
    return result


# -- the watchers (their own process) -----------------------------------------------------------------------------


@dataclass
class Watcher:
    """One SSE client: its run in full, every run as summaries."""

    run_id: str
    points: set[tuple[str, int]] = field(default_factory=set)
    point_entries: int = 0
    seqs: set[int] = field(default_factory=set)
    line_entries: int = 0
    runs_changed: set[str] = field(default_factory=set)
    run_entries: int = 0
    foreign: int = 0
    """metrics/logs entries of a run it did not follow (must be 0)."""
    reconnects: int = 0
    from_id: int | None = None
    """Where its stream began (the feed's newest id when it first connected)."""
    last_id: int | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    caught_up_s: float | None = None

    def take(self, kind: str, data: bytes) -> None:
        if kind == "run":
            self.run_entries += 1
            self.runs_changed.add(orjson.loads(data)["id"])
        elif kind in ("metrics", "logs"):
            entry = orjson.loads(data)
            if entry["run_id"] != self.run_id:
                self.foreign += 1
            elif kind == "metrics":
                self.point_entries += len(entry["points"])
                self.points.update((p["name"], p["step"]) for p in entry["points"])
            else:
                self.line_entries += len(entry["lines"])
                self.seqs.update(line["seq"] for line in entry["lines"])

    async def follow(self, session: aiohttp.ClientSession, url: str, token: str, stop: asyncio.Event) -> None:
        """Read the stream, resuming from the last id after a dropped connection."""
        first = True
        while not stop.is_set():
            headers = {"Authorization": f"Bearer {token}"}
            if self.last_id is not None:
                headers["Last-Event-ID"] = str(self.last_id)
            self.reconnects += not first
            first = False
            try:
                async with session.get(f"{url}/api/v1/events", params={"full": self.run_id}, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as resp:
                    resp.raise_for_status()
                    buffer = b""
                    async for chunk in resp.content.iter_any():
                        buffer += chunk
                        *blocks, buffer = buffer.split(b"\n\n")
                        for block in blocks:
                            self._block(block)
                        self.connected.set()
                        if stop.is_set():
                            return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)

    def _block(self, block: bytes) -> None:
        kind, data, event_id = b"", b"", None
        for line in block.split(b"\n"):
            if line.startswith(b"id:"):
                event_id = int(line[3:])
            elif line.startswith(b"event:"):
                kind = line[6:].strip()
            elif line.startswith(b"data:"):
                data += line[5:]
            elif line.startswith(b": from ") and self.last_id is None:
                self.last_id = self.from_id = int(line[7:])
        if event_id is not None:
            self.take(kind.decode(), data)
            self.last_id = event_id

    def complete(self, points: int, lines: int, last_id: int) -> bool:
        return len(self.points) >= points and len(self.seqs) >= lines and (self.last_id or 0) >= last_id


def feed_targets(db_path: str, run_id: str, from_id: int) -> tuple[int, int]:
    """The last feed id a watcher of `run_id` subscribes to, and the run changes after `from_id` (the load has
    ended: the feed is complete)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        last = db.execute("SELECT coalesce(max(id), 0) FROM feed WHERE kind IN ('run', 'run_event') OR run_id = ?",
                          (run_id,)).fetchone()[0]
        changes = db.execute("SELECT count(*) FROM feed WHERE kind = 'run' AND id > ?", (from_id,)).fetchone()[0]
    finally:
        db.close()
    return last, changes


async def watchers_main(url: str, token: str, followed: list[str]) -> None:
    """Follow, say "ready" once every stream is open, then read the expected counts from stdin and report."""
    watchers = [Watcher(run_id) for run_id in followed]
    stop = asyncio.Event()
    cpu0 = time.process_time()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(w.follow(session, url, token, stop)) for w in watchers]
        await asyncio.gather(*(w.connected.wait() for w in watchers))
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        expected = json.loads(line)
        t0 = time.monotonic()
        targets = {w.run_id: feed_targets(expected["db"], w.run_id, w.from_id or 0) for w in watchers}
        deadline = t0 + float(expected["wait_s"])
        while time.monotonic() < deadline:
            for w in watchers:
                points, lines = expected["runs"][w.run_id]
                if w.caught_up_s is None and w.complete(points, lines, targets[w.run_id][0]):
                    w.caught_up_s = time.monotonic() - t0
            if all(w.caught_up_s is not None for w in watchers):
                break
            await asyncio.sleep(0.1)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"cpu": time.process_time() - cpu0, "watchers": [
        {"run_id": w.run_id, "points": len(w.points), "point_entries": w.point_entries, "lines": len(w.seqs),
         "line_entries": w.line_entries, "runs_changed": len(w.runs_changed), "run_entries": w.run_entries,
         "run_entries_expected": targets[w.run_id][1],
         "foreign": w.foreign, "reconnects": w.reconnects, "caught_up_s": w.caught_up_s} for w in watchers]}),
        flush=True)


# -- the stub peer (its own process) ------------------------------------------------------------------------------


def stub_main(port: int) -> None:
    """A minimal aiohttp app that takes the same POSTs and stores nothing."""
    from aiohttp import web

    async def report(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"stop": false}', content_type="application/json")

    async def serve() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v1/runs/{run_id}/report", report)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


# -- the bench ----------------------------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stored_counts(db_path: Path) -> dict[str, tuple[int, int]]:
    """(metric rows, log rows) per run in the control plane's SQLite."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        metrics = dict(db.execute("SELECT run_id, count(*) FROM metrics GROUP BY run_id").fetchall())
        logs = dict(db.execute("SELECT run_id, count(*) FROM logs GROUP BY run_id").fetchall())
    finally:
        db.close()
    return {run_id: (metrics.get(run_id, 0), logs.get(run_id, 0)) for run_id in set(metrics) | set(logs)}


def latency_line(result: LoadResult) -> str:
    lat = result.latencies
    return (f"p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms, max {max(lat, default=0):.0f} ms")


def load_line(result: LoadResult, pods: int) -> str:
    taken = sum(result.sent.values())
    return (f"{taken} of {result.scheduled} reports taken in {result.wall:.1f} s = {taken / result.wall:.0f}/s "
            f"(target {pods}/s), "
            f"{result.errors} errors, {result.failed} never taken, {result.late} posted > 100 ms late")


def bench_plane(args: argparse.Namespace, work: Path) -> bool:
    plane, info = start_plane(work / "plane", runs=args.pods)
    runs: list[list[str]] = info["runs"]
    step = max(1, len(runs) // args.watchers)
    followed = [runs[i * step][0] for i in range(args.watchers)]
    # The token goes in the environment: as an argument, one starting with "-" read as an option.
    watchers = subprocess.Popen([sys.executable, __file__, "--role", "watchers", info["url"], ",".join(followed)],
                                env={**os.environ, "BENCH_ADMIN_TOKEN": info["admin_token"]},
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ok = True
    try:
        assert watchers.stdin is not None and watchers.stdout is not None
        if watchers.stdout.readline().strip() != "ready":
            raise SystemExit("the watchers did not start")
        cpu0 = proc_cpu(plane.pid)
        result = asyncio.run(pods_load(info["url"], runs, args.seconds))
        server_cpu = proc_cpu(plane.pid) - cpu0
        rss_peak, rss_now = proc_status_mb(plane.pid, "VmHWM"), proc_status_mb(plane.pid, "VmRSS")
        expected = {run_id: (n * POINTS_PER_REPORT, n * LINES_PER_REPORT) for run_id, n in result.sent.items()}
        watchers.stdin.write(json.dumps({"runs": expected, "db": str(work / "plane" / "podtui.db"),
                                         "wait_s": 60}) + "\n")
        watchers.stdin.flush()
        seen = json.loads(watchers.stdout.readline())
        stored = stored_counts(work / "plane" / "podtui.db")
    finally:
        watchers.kill()
        watchers.wait()
        plane.kill()
        plane.wait()
    lost = {r: (stored.get(r, (0, 0)), e) for r, e in expected.items() if stored.get(r, (0, 0)) != e}
    points = sum(e[0] for e in expected.values())
    lines = sum(e[1] for e in expected.values())
    print(f"{args.pods} pods x {args.seconds:.0f} s, each 1 report/s of {POINTS_PER_REPORT} points + "
          f"{LINES_PER_REPORT} lines; {args.watchers} watchers, each one run in full + every run as summaries")
    print(f"control plane: {load_line(result, args.pods)} (goal 0 errors)")
    print(f"  report latency  : {latency_line(result)} (goal p99 < 100 ms)")
    print(f"  server          : CPU {100 * server_cpu / result.wall:.0f}% of a core, RSS peak (VmHWM) "
          f"{rss_peak:.0f} MB, at the end {rss_now:.0f} MB (goal <= 300 MB)")
    print(f"  load generator  : CPU {100 * result.cpu / result.wall:.0f}% of a core; watchers' process "
          f"{100 * seen['cpu'] / result.wall:.0f}%")
    print(f"  nothing lost    : {'yes' if not lost else 'NO'}: {sum(s[0] for s in stored.values()):,} points and "
          f"{sum(s[1] for s in stored.values()):,} lines in SQLite for {points:,} points and {lines:,} lines taken, "
          f"{len(expected) - len(lost)}/{len(expected)} runs exact"
          + ("" if not lost else f"; e.g. {list(lost.items())[:2]} ((points, lines) stored, sent)"))
    ok = ok and not lost and result.errors == 0 and result.failed == 0
    complete = 0
    for w in seen["watchers"]:
        points_w, lines_w = expected[w["run_id"]]
        good = (w["points"] == points_w and w["point_entries"] == points_w and w["lines"] == lines_w
                and w["line_entries"] == lines_w and w["runs_changed"] == len(runs) and w["foreign"] == 0
                and 0 < w["run_entries"] <= w["run_entries_expected"])
        complete += good
        if not good:
            print(f"  watcher of {w['run_id']}: {w['points']}/{points_w} points ({w['point_entries']} entries), "
                  f"{w['lines']}/{lines_w} lines ({w['line_entries']}), run changes of {w['runs_changed']}/"
                  f"{len(runs)} runs ({w['run_entries']}/{w['run_entries_expected']} entries), {w['foreign']} "
                  f"entries of runs it did not follow, {w['reconnects']} reconnects")
    caught = [w["caught_up_s"] for w in seen["watchers"] if w["caught_up_s"] is not None]
    print(f"  watchers        : {complete}/{len(seen['watchers'])} got every point and line of their run once and "
          f"the changes of every run ({sum(w['run_entries'] for w in seen['watchers']):,} run changes in all, of "
          f"{sum(w['run_entries_expected'] for w in seen['watchers']):,} stored after they connected), "
          f"{sum(w['reconnects'] for w in seen['watchers'])} reconnects; the last caught up "
          f"{max(caught, default=float('nan')):.1f} s after the load stopped")
    return ok and complete == len(seen["watchers"])


def bench_stub(args: argparse.Namespace, seconds: float) -> None:
    from podtui.server.runs import free_port

    port = free_port()
    stub = subprocess.Popen([sys.executable, __file__, "--role", "stub", str(port)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert stub.stdout is not None
        if stub.stdout.readline().strip() != "ready":
            raise SystemExit("the stub server did not start")
        runs = [[f"stub{i:05d}", "token"] for i in range(args.pods)]
        cpu0 = proc_cpu(stub.pid)
        result = asyncio.run(pods_load(f"http://127.0.0.1:{port}", runs, seconds))
        stub_cpu = proc_cpu(stub.pid) - cpu0
    finally:
        stub.kill()
        stub.wait()
    print(f"peer, the same generator against a stub server (stores nothing), {seconds:.0f} s:")
    print(f"  {load_line(result, args.pods)}")
    print(f"  report latency  : {latency_line(result)}; generator CPU {100 * result.cpu / result.wall:.0f}% of a "
          f"core, stub {100 * stub_cpu / result.wall:.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--stub-seconds", type=float, help="the peer's length (default: --seconds)")
    parser.add_argument("--no-stub", action="store_true", help="skip the stub peer")
    parser.add_argument("--role", choices=["watchers", "stub"], help=argparse.SUPPRESS)
    parser.add_argument("role_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "watchers":
        url, followed = args.role_args
        asyncio.run(watchers_main(url, os.environ["BENCH_ADMIN_TOKEN"], followed.split(",")))
        return
    if args.role == "stub":
        stub_main(int(args.role_args[0]))
        return
    work = Path(tempfile.mkdtemp(prefix="podtui-team-"))
    try:
        ok = bench_plane(args, work)
        if not args.no_stub:
            bench_stub(args, args.stub_seconds or args.seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
