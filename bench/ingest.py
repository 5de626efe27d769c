"""Ingest throughput: points/s of 100-point reports over 32 connections against one control plane, vs raw SQLite
inserting the same rows the way the store does (measured in the same run), and a check that what the control
plane stored is what it answered 200 for.

The peer (`raw_sqlite`) is the store's write path without the server around it: the store's own schema
(`store/schema.py`), WAL with synchronous=NORMAL, one `BEGIN IMMEDIATE` transaction per group of reports (as many
as there are connections, the most the store's writer can find queued), each report in its own SAVEPOINT, its
rows in multi-row `INSERT OR IGNORE` statements of 192/48/12/3/1 rows (the store's `_insert_rows`). It leaves out
what the store does per report beside the rows (read the run, update its heartbeat, a feed row): those are part
of what the control plane is measured doing.

    python bench/ingest.py [--seconds 10] [--connections 32]

Goal (issue 16): >= 0.7x the peer; stored = sent for every run.
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
from typing import Any

import aiohttp
import orjson
from _common import percentile, start_plane

from podtui.store.schema import MIGRATIONS

POINTS = 100
CHUNKS = (192, 48, 12, 3, 1)  # rows per INSERT statement, as store/inserts.py `_INSERT_CHUNKS`


def report(run_step: int) -> bytes:
    """One report's body (orjson: the simulated pods should not eat the CPU the server is measured on)."""
    now = time.time()
    return orjson.dumps({"metrics": [{"name": "loss", "step": run_step + i, "value": 1.0 / (run_step + i + 1),
                                      "ts": now} for i in range(POINTS)], "heartbeat_ts": now})


async def hammer(url: str, runs: list[list[str]], seconds: float) -> tuple[dict[str, int], int, list[float]]:
    """Each connection posts reports for its own run as fast as answers come back; returns the reports answered
    200 per run, the errors, and the latencies (ms)."""
    ok: dict[str, int] = {run_id: 0 for run_id, _ in runs}
    errors = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=len(runs))
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(run_id: str, token: str) -> None:
            nonlocal errors
            step = 0
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            while time.monotonic() < deadline:
                start = time.perf_counter()
                async with session.post(f"{url}/api/v1/runs/{run_id}/report", data=report(step),
                                        headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        ok[run_id] += 1
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


def stored_per_run(db_path: Path) -> dict[str, int]:
    """Metric rows per run in a SQLite file (read beside the writer: WAL)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT run_id, count(*) FROM metrics GROUP BY run_id").fetchall())
    finally:
        db.close()


def _insert_sql(n: int) -> str:
    return "INSERT OR IGNORE INTO metrics VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * n)


def _insert(db: sqlite3.Connection, rows: list[tuple[Any, ...]], sql: dict[int, str]) -> None:
    """The rows in multi-row statements of CHUNKS rows, largest first (the store's `_insert_rows`)."""
    i = 0
    for n in CHUNKS:
        while len(rows) - i >= n:
            db.execute(sql[n], [v for row in rows[i:i + n] for v in row]).close()
            i += n


def raw_sqlite(path: Path, run_ids: list[str], n_reports: int, group: int) -> tuple[float, float, int]:
    """The same rows inserted straight into SQLite: points/s batched like the store (`group` reports per
    transaction, a SAVEPOINT each, multi-row statements), points/s with one commit per report (the old peer), and
    the rows stored."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # as the store: checkpoints on a timer, not in commits
    for script in MIGRATIONS:
        db.executescript(script)
    sql = {n: _insert_sql(n) for n in CHUNKS}
    steps = dict.fromkeys(run_ids, 0)

    def next_report(b: int) -> list[tuple[Any, ...]]:
        run = run_ids[b % len(run_ids)]
        base = steps[run]
        steps[run] += POINTS
        now = time.time()
        return [(run, "loss", base + i, 1.0 / (base + i + 1), now) for i in range(POINTS)]

    start = time.perf_counter()
    last_checkpoint = start
    checkpoints = 0.0
    for g in range(0, n_reports, group):
        reports = [next_report(b) for b in range(g, min(g + group, n_reports))]
        db.execute("BEGIN IMMEDIATE")
        for rows in reports:
            db.execute("SAVEPOINT job")
            _insert(db, rows, sql)
            db.execute("RELEASE job")
        db.execute("COMMIT")
        if time.perf_counter() - last_checkpoint > 2.0:
            # The store checkpoints every 2 s from its reader's thread, beside the writer: not counted here either.
            t = time.perf_counter()
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            last_checkpoint = time.perf_counter()
            checkpoints += last_checkpoint - t
    grouped = n_reports * POINTS / (time.perf_counter() - start - checkpoints)
    stored = db.execute("SELECT count(*) FROM metrics").fetchone()[0]
    start = time.perf_counter()
    for b in range(n_reports):
        rows = next_report(b)
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO metrics VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    single = n_reports * POINTS / (time.perf_counter() - start)
    db.close()
    return grouped, single, stored


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podtui-ingest-"))
    plane, info = start_plane(work / "plane", runs=args.connections)
    run_ids = [run_id for run_id, _ in info["runs"]]
    # The peer runs before and after the control plane (the machine's other load moves it), on as many reports
    # as the control plane took in the first test runs; the ratio is against the mean of the two.
    peer_reports = max(2000, int(args.seconds * 1500))
    grouped0, single0, _ = raw_sqlite(work / "raw0.db", run_ids, peer_reports, args.connections)
    try:
        cpu_before, client_before = cpu_seconds(plane.pid), time.process_time()
        wall0 = time.perf_counter()
        ok, errors, latencies = asyncio.run(hammer(info["url"], info["runs"], args.seconds))
        wall = time.perf_counter() - wall0
        server_cpu, client_cpu = cpu_seconds(plane.pid) - cpu_before, time.process_time() - client_before
        stored = stored_per_run(work / "plane" / "podtui.db")
    finally:
        plane.kill()
        plane.wait()
    sent = sum(ok.values())
    ours = sent * POINTS / wall
    grouped1, single1, raw_stored = raw_sqlite(work / "raw.db", run_ids, max(sent, 2000), args.connections)
    grouped, single = (grouped0 + grouped1) / 2, (single0 + single1) / 2
    shutil.rmtree(work, ignore_errors=True)
    wrong = {r: (stored.get(r, 0), n * POINTS) for r, n in ok.items() if stored.get(r, 0) != n * POINTS}
    print(f"{args.connections} connections x {POINTS}-point reports for {wall:.1f} s")
    print(f"control plane : {ours:10.0f} points/s ({sent} reports answered 200, {errors} errors, "
          f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms)")
    print(f"CPU           : server {server_cpu:.1f} s, load generator {client_cpu:.1f} s of "
          f"{wall * (os.cpu_count() or 1):.0f} core-seconds; "
          f"{sent * POINTS / max(server_cpu, 1e-9):.0f} points per server CPU-second")
    print(f"stored = sent : {'yes' if not wrong else 'NO'}: {sum(stored.values())} rows in the control plane's "
          f"SQLite for {sent * POINTS} points answered 200, {len(ok) - len(wrong)}/{len(ok)} runs exact"
          + ("" if not wrong else f"; e.g. {list(wrong.items())[:3]} (stored, sent)"))
    print(f"raw SQLite    : {grouped:10.0f} points/s batched like the store ({args.connections} reports per "
          f"transaction, a SAVEPOINT each, 192/48/12/3/1-row INSERTs; {grouped0:.0f} before the control plane, "
          f"{grouped1:.0f} after, {raw_stored} rows stored of {max(sent, 2000) * POINTS})")
    print(f"                {single:10.0f} points/s with one commit per 100-row report (the old peer; "
          f"{single0:.0f} before, {single1:.0f} after)")
    print(f"ratio         : {ours / grouped:10.3f}x (goal >= 0.7)")


if __name__ == "__main__":
    main()
