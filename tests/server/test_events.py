"""The live event stream: a subscriber sees a report's metrics; reconnecting with Last-Event-ID misses nothing."""

import asyncio
import time

from podtui.client import Client
from podtui.feed import MetricsAdded


async def report(plane, run, token, start, n):
    now = time.time()
    body = {"metrics": [{"name": "loss", "step": s, "value": float(s), "ts": now} for s in range(start, start + n)],
            "logs": [{"seq": s, "ts": now, "text": f"l{s}"} for s in range(start, start + n)]}
    r = await plane.http.post(f"/api/v1/runs/{run.id}/report", json=body,
                              headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


async def collect(stream, want_steps, timeout=10.0):
    steps, last_id = set(), None
    async def go():
        nonlocal last_id
        async for event_id, entry in stream:
            last_id = event_id
            if isinstance(entry, MetricsAdded):
                steps.update(p.step for p in entry.points)
            if want_steps <= steps:
                return
    await asyncio.wait_for(go(), timeout)
    return steps, last_id


async def test_subscriber_sees_metrics_and_resumes_without_gaps(plane):
    run, token = await plane.fake_run()
    client = Client(plane.url, plane.control.admin_token)
    try:
        stream = client.events(run_id=run.id)
        first = asyncio.ensure_future(collect(stream, set(range(10))))
        await asyncio.sleep(0.3)
        await report(plane, run, token, 0, 10)
        steps, last_id = await first
        await stream.aclose()
        assert steps == set(range(10))
        # while disconnected, more reports arrive
        await report(plane, run, token, 10, 10)
        await report(plane, run, token, 20, 10)
        resumed = client.events(after=last_id, run_id=run.id)
        steps2, _ = await collect(resumed, set(range(10, 30)))
        await resumed.aclose()
        assert steps2 == set(range(10, 30))
    finally:
        await client.close()


async def test_stream_sends_keepalive_comments_and_run_changes(tmp_path):
    from tests.support import RecordingProvider, make_settings, start_plane

    p = await start_plane(make_settings(tmp_path, sse_keepalive_s=0.2), {"local": RecordingProvider()})
    try:
        headers = {"Authorization": f"Bearer {p.control.admin_token}"}
        async with p.http.stream("GET", "/api/v1/events", headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            seen = []
            async def read():
                async for line in response.aiter_lines():
                    seen.append(line)
                    if line == ": keep-alive":
                        return
            await asyncio.wait_for(read(), 5)
        assert ": keep-alive" in seen
        r = await p.http.get("/api/v1/events", params={"after": "x"})
        assert r.status_code == 400
    finally:
        await p.http.aclose()
        await p.control.stop()
