"""Ingest throughput: points/s of 100-point reports over 32 connections against one control plane, vs a raw
SQLite indexed insert of the same rows (same schema, WAL, synchronous=NORMAL, one transaction per 100 rows) in
the same run.

    python bench/ingest.py [--seconds 10] [--connections 32]

Goal (issue 2): >= 0.5x the raw insert.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from _common import percentile, start_plane

POINTS = 100


def report(run_step: int) -> bytes:
    """One report's body (orjson: the simulated pods should not eat the CPU the server is measured on)."""
    now = time.time()
    return orjson.dumps({"metrics": [{"name": "loss", "step": run_step + i, "value": 1.0 / (run_step + i + 1),
                                      "ts": now} for i in range(POINTS)], "heartbeat_ts": now})


async def hammer(url: str, runs: list[list[str]], seconds: float) -> tuple[int, int, list[float]]:
    """Each connection posts reports for its own run as fast as answers come back."""
    ok = errors = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=len(runs))
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(run_id: str, token: str) -> None:
            nonlocal ok, errors
            step = 0
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            while time.monotonic() < deadline:
                start = time.perf_counter()
                async with session.post(f"{url}/api/v1/runs/{run_id}/report", data=report(step),
                                        headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        ok += 1
                    else:
                        errors += 1
                latencies.append((time.perf_counter() - start) * 1000)
                step += POINTS
        await asyncio.gather(*(one(run_id, token) for run_id, token in runs))
    return ok, errors, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_sqlite(path: Path, n_batches: int, n_runs: int) -> float:
    """Points/s of the same rows inserted straight into SQLite, one commit per 100-row batch."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE metrics (run_id TEXT NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL, value REAL, "
               "ts REAL NOT NULL, UNIQUE (run_id, name, step))")
    start = time.perf_counter()
    for b in range(n_batches):
        run = f"run{b % n_runs}"
        base = (b // n_runs) * POINTS
        now = time.time()
        rows = [(run, "loss", base + i, 1.0 / (base + i + 1), now) for i in range(POINTS)]
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO metrics VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return n_batches * POINTS / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podtui-ingest-"))
    plane, info = start_plane(work / "plane", runs=args.connections)
    try:
        cpu_before, client_before = cpu_seconds(plane.pid), time.process_time()
        ok, errors, latencies = asyncio.run(hammer(info["url"], info["runs"], args.seconds))
        server_cpu, client_cpu = cpu_seconds(plane.pid) - cpu_before, time.process_time() - client_before
    finally:
        plane.kill()
        plane.wait()
    ours = ok * POINTS / args.seconds
    raw = raw_sqlite(work / "raw.db", max(ok, 2000), args.connections)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{args.connections} connections x {POINTS}-point reports for {args.seconds:.0f} s")
    print(f"control plane : {ours:10.0f} points/s ({ok} reports, {errors} errors, "
          f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms)")
    print(f"CPU           : server {server_cpu:.1f} s, load generator {client_cpu:.1f} s of "
          f"{args.seconds * (os.cpu_count() or 1):.0f} core-seconds; "
          f"{ok * POINTS / max(server_cpu, 1e-9):.0f} points per server CPU-second")
    print(f"raw SQLite    : {raw:10.0f} points/s (same rows, one commit per 100)")
    print(f"ratio         : {ours / raw:10.3f}x (goal >= 0.5)")


if __name__ == "__main__":
    main()
