"""Reliability: a short load run with the real agent code, a full or read-only store, and a slow SSE consumer."""

import asyncio
import importlib.util
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "load.py"
spec = importlib.util.spec_from_file_location("bench_load", BENCH)
load = importlib.util.module_from_spec(spec)
sys.modules["bench_load"] = load  # dataclasses look their module up
spec.loader.exec_module(load)


@pytest.mark.timeout(120)
async def test_ten_pods_ten_seconds_no_error_no_point_lost(plane, tmp_path):
    runs = [list(await plane.fake_run()) for _ in range(10)]
    runs = [[run.id, token] for run, token in runs]
    stats = await asyncio.to_thread(load.run_pods, plane.url, runs, 10.0, tmp_path)
    assert sum(s.errors for s in stats) == 0
    problems = await load.check_complete(plane.url, plane.control.admin_token, runs, stats)
    assert problems == []
    latencies = sorted(x for s in stats for x in s.latencies)
    assert len(latencies) >= 10 * 8


async def set_store_fault(plane, pragma: str) -> None:
    """A PRAGMA on the store's writer connection, outside the writer's transactions."""
    cursor = await plane.store._w.execute(pragma)
    await cursor.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault,clear", [
    ("full", None),
    ("PRAGMA query_only = ON", "PRAGMA query_only = OFF"),
])
async def test_store_full_or_read_only_refuses_with_503_and_loses_nothing(plane, tmp_path, fault, clear):
    (run, token), = [await plane.fake_run()]
    stats = load.PodStats()
    pod = asyncio.ensure_future(asyncio.to_thread(load.simulated_pod, plane.url, run.id, token, 8.0,
                                                  tmp_path / "pod", stats))
    await asyncio.sleep(2.0)
    if fault == "full":
        pages = (await plane.store._read("PRAGMA page_count"))[0][0]
        await set_store_fault(plane, f"PRAGMA max_page_count = {pages}")
        clear = "PRAGMA max_page_count = 1073741823"
    else:
        await set_store_fault(plane, fault)
    r = await plane.http.post(f"/api/v1/runs/{run.id}/report", headers={"Authorization": f"Bearer {token}"},
                              json={"logs": [{"seq": 10**9, "ts": time.time(), "text": "x" * 5000}] * 1})
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
    assert r.headers.get("Retry-After")
    await asyncio.sleep(3.0)  # the agent keeps its buffer and retries
    await set_store_fault(plane, clear)
    await pod
    assert stats.errors >= 1, "the agent should have seen the 503s"
    problems = await load.check_complete(plane.url, plane.control.admin_token, [[run.id, token]], [stats])
    assert problems == []


def rss_mb() -> float:
    import os

    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2


@pytest.mark.timeout(120)
async def test_slow_sse_consumer_neither_slows_ingest_nor_grows_memory(plane):
    run, token = await plane.fake_run()
    host, port = plane.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /api/v1/events?after=0 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
                 f"{plane.control.admin_token}\r\n\r\n".encode())  # and never read
    rss_before = rss_mb()
    latencies = []
    try:
        async with httpx.AsyncClient(base_url=plane.url, trust_env=False) as client:
            for i in range(300):
                now = time.time()
                body = {"metrics": [{"name": "loss", "step": i * 100 + k, "value": 0.5, "ts": now}
                                    for k in range(100)],
                        "logs": [{"seq": i, "ts": now, "text": "y" * 4000}]}
                start = time.perf_counter()
                r = await client.post(f"/api/v1/runs/{run.id}/report", json=body,
                                      headers={"Authorization": f"Bearer {token}"})
                latencies.append(time.perf_counter() - start)
                assert r.status_code == 200
    finally:
        sock.close()
    latencies.sort()
    assert latencies[int(len(latencies) * 0.99) - 1] < 0.25
    assert rss_mb() - rss_before < 60
    page = (await plane.http.get(f"/api/v1/runs/{run.id}/metrics")).json()
    assert len(page["series"]["loss"]["steps"]) == 30_000


async def test_checkpoints_beside_concurrent_reads_never_fail(tmp_path, caplog):
    """Reads and the WAL checkpoint share a connection: no read may leave a statement open between hops."""
    from podtui.store import Store

    store = await Store.open(tmp_path / "store.db")
    try:
        await store._write(lambda db: db.executemany(
            "INSERT INTO feed (run_id, kind, lo, hi, ts) VALUES (?, 'metrics', 1, 1, 0)",
            [(f"r{i}",) for i in range(2000)]).close())
        caplog.set_level("WARNING", logger="podtui.store")
        reads = [store._read("SELECT * FROM feed") for _ in range(50)]
        checkpoints = [store.checkpoint() for _ in range(50)]
        results = await asyncio.gather(*[x for pair in zip(reads, checkpoints, strict=True) for x in pair])
        assert all(len(r) == 2000 for r in results[::2])
        assert not [r for r in caplog.records if "checkpoint" in r.getMessage()]
    finally:
        await store.close()


async def test_closing_the_store_finishes_the_writes_queued_before(tmp_path):
    """Writes queued when the store closes are made (their callers get their answers, none waits forever); a write
    asked for after it closed is refused."""
    from podtui.store import Store, StoreUnavailable

    store = await Store.open(tmp_path / "podtui.db")
    writes = [asyncio.ensure_future(store.add_download_token(f"{i:064x}", "d", "r", time.time() + 60))
              for i in range(50)]
    await asyncio.sleep(0)  # queued, not yet written
    await store.close()
    await asyncio.wait_for(asyncio.gather(*writes), 5)
    with pytest.raises(StoreUnavailable):
        await store.add_download_token("f" * 64, "d", "r", time.time() + 60)
    reopened = await Store.open(tmp_path / "podtui.db")
    try:
        assert (await reopened._read("SELECT count(*) FROM download_tokens"))[0][0] == 50
    finally:
        await reopened.close()
