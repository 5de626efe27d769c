"""The live event stream: a subscriber sees a report's metrics; reconnecting with Last-Event-ID misses nothing."""

import asyncio
import contextlib
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


async def test_a_subscription_brings_followed_runs_in_full_and_the_rest_as_summaries(plane):
    from podtui.feed import LogsAdded, RunChanged
    from podtui.live import Follow

    a, a_token = await plane.fake_run()
    b, b_token = await plane.fake_run()
    client = Client(plane.url, plane.control.admin_token)
    follow = Follow([a.id])
    got: list = []
    stream = client.events(follow=follow)

    async def read_until(predicate, timeout=10.0):
        async def go():
            async for _, entry in stream:
                got.append(entry)
                if predicate():
                    return
        await asyncio.wait_for(go(), timeout)

    def points(run):
        return [p.step for e in got if isinstance(e, MetricsAdded) and e.run_id == run.id for p in e.points]

    def lines(run):
        return [x.seq for e in got if isinstance(e, LogsAdded) and e.run_id == run.id for x in e.lines]

    try:
        reader = asyncio.ensure_future(read_until(lambda: len(points(a)) >= 10))
        await asyncio.sleep(0.3)
        await report(plane, b, b_token, 0, 10)   # b: summaries only
        await report(plane, a, a_token, 0, 10)
        await reader
        assert points(b) == [] and lines(b) == []
        assert any(isinstance(e, RunChanged) and e.run.id == b.id for e in got)  # b's summary came
        # b reports more while the reader is away; then b is followed too: what b had since the change point
        # comes once, in order, and a's entries are not repeated
        await report(plane, b, b_token, 10, 10)
        follow.set([a.id, b.id])
        await report(plane, a, a_token, 10, 10)
        await read_until(lambda: len(points(b)) >= 10 and set(range(10, 20)) <= set(points(a)))
        assert sorted(points(b)) == list(range(10, 20)) and len(points(b)) == 10
        assert sorted(points(a)) == list(range(20)) and len(points(a)) == 20
        await report(plane, b, b_token, 20, 5)
        await read_until(lambda: len(points(b)) >= 15 and len(lines(b)) >= 15)
        assert sorted(points(b)) == list(range(10, 25))
        assert lines(b) == list(range(10, 25))
    finally:
        await stream.aclose()
        await client.close()


async def test_full_refuses_what_is_not_a_list_of_run_ids(plane):
    r = await plane.http.get("/api/v1/events", params={"full": "../etc,x y"})
    assert r.status_code == 400 and "full=" in r.json()["error"]["message"]


async def test_unfollowing_a_run_stops_its_points(plane):
    from podtui.live import Follow

    a, a_token = await plane.fake_run()
    client = Client(plane.url, plane.control.admin_token)
    follow = Follow([a.id])
    stream = client.events(follow=follow)
    try:
        first = asyncio.ensure_future(collect(stream, set(range(5))))
        await asyncio.sleep(0.3)
        await report(plane, a, a_token, 0, 5)
        await first
        follow.set([])
        await report(plane, a, a_token, 5, 5)
        seen = []

        async def go():
            async for _, entry in stream:
                seen.append(entry)
        reading = asyncio.ensure_future(go())
        await asyncio.sleep(1.0)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        assert seen and not any(isinstance(e, MetricsAdded) for e in seen)  # the run's change came, not its points
    finally:
        await stream.aclose()
        await client.close()


async def test_a_newly_followed_run_that_only_logs_comes_at_once(plane):
    """The stream reconnects when the subscription changes, not at its next line: while another run writes only
    what this subscription leaves out, no line would come to notice the change by."""
    from podtui.feed import LogsAdded
    from podtui.live import Follow

    a, a_token = await plane.fake_run()
    b, b_token = await plane.fake_run()
    client = Client(plane.url, plane.control.admin_token)
    follow = Follow([])
    stream = client.events(follow=follow)

    async def lines_only(run, token, start):
        body = {"logs": [{"seq": s, "ts": time.time(), "text": f"l{s}"} for s in range(start, start + 5)]}
        r = await plane.http.post(f"/api/v1/runs/{run.id}/report", json=body,
                                  headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200

    async def first_lines_of(run):
        async for _, entry in stream:
            if isinstance(entry, LogsAdded) and entry.run_id == run.id:
                return [x.seq for x in entry.lines]

    try:
        await report(plane, a, a_token, 0, 5)  # gets the stream going
        reading = asyncio.ensure_future(first_lines_of(b))
        await asyncio.sleep(0.3)
        follow.set([b.id])
        await asyncio.sleep(0.3)
        await lines_only(b, b_token, 0)
        await lines_only(a, a_token, 5)
        assert await asyncio.wait_for(reading, 3.0) == list(range(5))
    finally:
        await stream.aclose()
        await client.close()
