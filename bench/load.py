"""Load: N simulated pods, each running the real agent code (bootstrap/agent/: outbox, reporter, backoff),
reporting about once a second (100 metric points + 20 log lines) for S seconds against one control plane, while
an SSE client follows every run. Prints report errors, p50/p99 report latency, server CPU and RSS, and checks that
every point and line arrived once.

    python bench/load.py [--pods 50] [--seconds 60]

Goals (issue 7): 0 errors, p99 < 100 ms, RSS <= 150 MB. tests/server/test_load.py runs 10 pods x 10 s in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from podtui.bootstrap.agent.supervisor import Agent

METRICS_PER_LINE = 5
LINES_PER_SECOND = 20


@dataclass
class PodStats:
    """What one simulated pod did."""

    lines: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


def simulated_pod(url: str, run_id: str, token: str, seconds: float, home: Path, stats: PodStats) -> None:
    """One pod: the real Agent (no child process), fed 20 lines/s of 5 metrics each, then finished."""
    env = {"PODTUI_URL": url, "PODTUI_RUN_ID": run_id, "PODTUI_TOKEN": token, "PODTUI_HOME": str(home),
           "PODTUI_UNREACHABLE_LIMIT_S": "120"}
    agent = Agent(["true"], env=env)
    post = agent.link.post

    def timed_post(payload: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            return post(payload)
        except Exception:
            stats.errors += 1
            raise
        finally:
            stats.latencies.append((time.perf_counter() - start) * 1000)

    agent.link.post = timed_post  # type: ignore[method-assign]
    agent.reporter.start()
    step = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick = time.monotonic()
        for _ in range(LINES_PER_SECOND):
            values = " ".join(f"m{k}={1.0 / (step + k + 1):.6f}" for k in range(METRICS_PER_LINE))
            agent.line("stdout", f"step={step} {values}")
            step += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    stats.lines = step
    agent.finish(0)


def run_pods(url: str, runs: list[list[str]], seconds: float, work: Path) -> list[PodStats]:
    stats = [PodStats() for _ in runs]
    threads = [threading.Thread(target=simulated_pod, args=(url, run_id, token, seconds, work / run_id, s))
               for (run_id, token), s in zip(runs, stats, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats


async def follow_events(url: str, token: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """An SSE client following every run (counts metric points it saw)."""
    async with (httpx.AsyncClient(base_url=url, trust_env=False, timeout=httpx.Timeout(30, read=None)) as client,
                client.stream("GET", "/api/v1/events", params={"after": 0},
                              headers={"Authorization": f"Bearer {token}"}) as response):
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "metrics":
                counts["points"] = counts.get("points", 0) + line.count('"step"')
            if stop.is_set():
                return


async def check_complete(url: str, token: str, runs: list[list[str]], stats: list[PodStats]) -> list[str]:
    """Every run got every point and line, once, gap-free."""
    problems = []
    async with httpx.AsyncClient(base_url=url, trust_env=False, headers={"Authorization": f"Bearer {token}"},
                                 timeout=60) as client:
        for (run_id, _), s in zip(runs, stats, strict=True):
            page = (await client.get(f"/api/v1/runs/{run_id}/metrics")).json()
            points = sum(len(series["steps"]) for series in page["series"].values())
            if points != s.lines * METRICS_PER_LINE:
                problems.append(f"{run_id}: {points} points stored, {s.lines * METRICS_PER_LINE} printed")
            seqs: list[int] = []
            after = -1
            while True:
                lines = (await client.get(f"/api/v1/runs/{run_id}/logs",
                                          params={"after_seq": after, "limit": 10000})).json()["lines"]
                seqs += [line["seq"] for line in lines]
                if len(lines) < 10000:
                    break
                after = lines[-1]["seq"]
            if seqs != list(range(len(seqs))) or len(seqs) < s.lines:
                problems.append(f"{run_id}: log seqs not gap-free ({len(seqs)} lines for {s.lines} printed)")
    return problems


def proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds and RSS (MB) of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1024**2
    return cpu, rss


async def main(pods: int, seconds: float) -> int:
    from _common import start_plane

    work = Path(tempfile.mkdtemp(prefix="podtui-load-"))
    plane, info = start_plane(work / "plane", runs=pods)
    try:
        cpu0, _ = proc_stats(plane.pid)
        stop = asyncio.Event()
        counts: dict[str, int] = {}
        follower = asyncio.ensure_future(follow_events(info["url"], info["admin_token"], stop, counts))
        wall0 = time.perf_counter()
        stats = await asyncio.to_thread(run_pods, info["url"], info["runs"], seconds, work)
        wall = time.perf_counter() - wall0
        cpu1, rss = proc_stats(plane.pid)
        await asyncio.sleep(2)
        stop.set()
        follower.cancel()
        problems = await check_complete(info["url"], info["admin_token"], info["runs"], stats)
    finally:
        plane.kill()
        plane.wait()
        shutil.rmtree(work, ignore_errors=True)
    latencies = sorted(x for s in stats for x in s.latencies)
    errors = sum(s.errors for s in stats)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"{pods} pods x {seconds:.0f} s, each ~1 report/s of {LINES_PER_SECOND * METRICS_PER_LINE} points + "
          f"{LINES_PER_SECOND} lines, one SSE client following every run")
    print(f"reports: {len(latencies)}, errors: {errors} (goal 0)")
    print(f"report latency: p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms (goal < 100 ms)")
    print(f"server: CPU {100 * (cpu1 - cpu0) / wall:.0f}% of a core, RSS {rss:.0f} MB (goal <= 150 MB)")
    print(f"SSE client saw {counts.get('points', 0):,} metric points; completeness: "
          f"{'all points and lines stored once, gap-free' if not problems else problems[:3]}")
    return 0 if not problems and errors == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.pods, args.seconds)))
