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


async def stop_reading(task, stream, client):
    """Cancel a task reading a stream, then close the stream and its client."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await stream.aclose()
    await client.close()


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


async def test_many_streams_share_one_read_of_each_entry_and_each_gets_its_subscription(plane):
    """Six streams with different subscriptions, one of them starting from the feed's beginning (behind the shared
    tail) and the tail cut small so it forgets entries as they go: every stream gets each point and line of the
    runs it follows once, none of the others, and a change of every run; the store is read once per batch of
    writes, not once per stream."""
    from podtui.feed import LogsAdded, RunChanged
    from podtui.live import Follow
    from podtui.server import keys

    store = plane.control.store
    tail = plane.control.runner.app[keys.FEED_TAIL]
    tail.max_bytes = 20_000  # a few reports' worth: the tail forgets as the streams read
    runs = [await plane.fake_run() for _ in range(3)]
    a, b, c = (run.id for run, _ in runs)
    await report(plane, *runs[0], 0, 5)  # before any stream: only the late stream (after=0) gets these
    reads = {"tail": 0, "own": 0}
    feed_tail, feed_after = store.feed_tail, store.feed_after

    async def counted_tail(*args, **kwargs):
        reads["tail"] += 1
        return await feed_tail(*args, **kwargs)

    async def counted_after(*args, **kwargs):
        reads["own"] += 1
        return await feed_after(*args, **kwargs)

    store.feed_tail, store.feed_after = counted_tail, counted_after
    client = Client(plane.url, plane.control.admin_token)
    # stream -> (runs whose points and lines it gets, whether it starts at the feed's beginning)
    subscriptions = {
        "follows a": (client.events(follow=Follow([a])), {a}, False),
        "follows b and c": (client.events(follow=Follow([b, c])), {b, c}, False),
        "run c only": (client.events(run_id=c), {c}, False),
        "summaries": (client.events(follow=Follow([])), set(), False),
        "everything": (client.events(), {a, b, c}, False),
        "late, from the start": (client.events(after=0, follow=Follow([a, b])), {a, b}, True),
    }
    got = {name: {"points": [], "lines": [], "changed": set()} for name in subscriptions}

    async def read(name, stream):
        async for _, entry in stream:
            seen = got[name]
            if isinstance(entry, MetricsAdded):
                seen["points"] += [(entry.run_id, p.step) for p in entry.points]
            elif isinstance(entry, LogsAdded):
                seen["lines"] += [(entry.run_id, line.seq) for line in entry.lines]
            elif isinstance(entry, RunChanged):
                seen["changed"].add(entry.run.id)

    readers = [asyncio.ensure_future(read(name, s)) for name, (s, _, late) in subscriptions.items() if not late]
    try:
        await asyncio.sleep(0.5)  # the live streams are connected
        for start in range(5, 50, 5):
            await asyncio.gather(*(report(plane, run, token, start, 5) for run, token in runs))
        readers.append(asyncio.ensure_future(read("late, from the start", subscriptions["late, from the start"][0])))

        def sent(run_id, name):
            first = 0 if run_id == a and subscriptions[name][2] else 5
            return [(run_id, s) for s in range(first, 50)]

        def complete():
            return all(sorted(got[name]["points"]) == sorted(p for r in sorted(want) for p in sent(r, name))
                       for name, (_, want, _) in subscriptions.items())

        deadline = time.monotonic() + 10
        while not complete() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # anything more (a duplicate, another run's points) would come now
        for name, (_, want, _) in subscriptions.items():
            expected = sorted(p for r in sorted(want) for p in sent(r, name))
            assert sorted(got[name]["points"]) == expected, name
            assert sorted(got[name]["lines"]) == expected, name
            assert got[name]["changed"] == ({c} if name == "run c only" else {a, b, c}), name
        assert reads["tail"] <= 9 * 3 + 10  # once per write (27 reports) at most, not once per stream
        assert reads["own"] < 9 * 3  # the late stream, and streams meeting a run the tail had not read
    finally:
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for stream, _, _ in subscriptions.values():
            await stream.aclose()
        await client.close()


async def test_a_stream_following_a_run_no_stream_followed_reads_its_points_from_the_store(plane):
    """The shared tail reads a run's points only while some stream follows it; a stream that resumes from before,
    now following that run, gets those points from the store, once, and the rest from the tail."""
    from podtui.live import Follow

    (a, a_token), (b, b_token) = await plane.fake_run(), await plane.fake_run()
    client = Client(plane.url, plane.control.admin_token)
    watching_a = client.events(follow=Follow([a.id]))
    try:
        first = asyncio.ensure_future(collect(watching_a, set(range(5))))
        await asyncio.sleep(0.3)
        before_b = await plane.control.store.last_feed_id()
        await report(plane, a, a_token, 0, 5)
        await report(plane, b, b_token, 0, 5)  # the tail reads this run's points only as a bare row
        await first
        store = plane.control.store
        own_reads = 0
        feed_after = store.feed_after

        async def counted(*args, **kwargs):
            nonlocal own_reads
            own_reads += 1
            return await feed_after(*args, **kwargs)

        store.feed_after = counted
        watching_b = client.events(after=before_b, follow=Follow([b.id]))
        reading = asyncio.ensure_future(collect(watching_b, set(range(10))))
        await asyncio.sleep(0.3)
        await report(plane, b, b_token, 5, 5)  # after it connected: from the tail
        steps, _ = await reading
        await watching_b.aclose()
        assert steps == set(range(10))
        assert own_reads >= 1
    finally:
        await watching_a.aclose()
        await client.close()


async def test_the_shared_tail_stays_within_its_bound_when_no_stream_follows_points(plane):
    """Only summaries are followed and the pod sends only lines (no run change): the tail keeps a bare row for each
    batch, and those count against its bound too (else they would pile up for as long as the control plane runs)."""
    from podtui.live import Follow
    from podtui.server import keys

    tail = plane.control.runner.app[keys.FEED_TAIL]
    tail.max_bytes = 4_000
    run, token = await plane.fake_run()
    client = Client(plane.url, plane.control.admin_token)
    stream = client.events(follow=Follow([]))
    reading = asyncio.ensure_future(anext(stream))
    try:
        await asyncio.sleep(0.3)
        for seq in range(300):
            body = {"logs": [{"seq": seq, "ts": time.time(), "text": f"line {seq}"}]}
            r = await plane.http.post(f"/api/v1/runs/{run.id}/report", json=body,
                                      headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
            if seq % 50 == 0:
                await asyncio.sleep(0.05)  # the stream reads (and the tail with it)
        await asyncio.sleep(0.3)
        assert 0 < len(tail) <= 4_000 // 240  # of the 300 lines' bare rows
    finally:
        await stop_reading(reading, stream, client)


async def test_an_id_from_the_future_does_not_send_the_past_again(plane):
    run, token = await plane.fake_run()
    await report(plane, run, token, 0, 5)
    client = Client(plane.url, plane.control.admin_token)
    stream = client.events(after=10**9)
    seen = []

    async def go():
        async for _, entry in stream:
            seen.append(entry)

    reading = asyncio.ensure_future(go())
    try:
        await asyncio.sleep(0.3)
        await report(plane, run, token, 5, 5)
        await asyncio.sleep(0.5)
        assert seen == []
    finally:
        await stop_reading(reading, stream, client)


def rows_read_by_the_tail(store):
    """Count the feed rows the shared tail reads from now on (in the returned dict's "rows")."""
    read = {"rows": 0}
    feed_tail = store.feed_tail

    async def counted(after_id, limit, full):
        items, last, more = await feed_tail(after_id, limit, full)
        read["rows"] += last - after_id
        return items, last, more

    store.feed_tail = counted
    return read


async def _first_metrics(stream, timeout=30):
    async def go():
        async for _, entry in stream:
            if isinstance(entry, MetricsAdded):
                return entry
    return await asyncio.wait_for(go(), timeout)


async def test_a_stream_opened_after_a_quiet_spell_does_not_wait_for_the_gap_to_be_read(plane):
    """No stream open while ~1,000 reports come: a new stream from now is answered without the shared tail
    reading (and encoding) every feed row written meanwhile. (From a helper's review.)"""
    from podtui.server import keys

    store = plane.control.store
    streams = plane.control.runner.app[keys.STREAMS]
    run, token = await plane.fake_run()
    client = Client(plane.url, plane.control.admin_token)
    first = client.events()
    reading = asyncio.ensure_future(_first_metrics(first))
    await asyncio.sleep(0.3)
    await report(plane, run, token, 0, 5)
    await reading
    await first.aclose()
    await report(plane, run, token, 5, 5)  # the closed stream's handler notices on its next write
    for _ in range(50):
        if not streams:
            break
        await asyncio.sleep(0.05)
    assert not streams
    step = 10
    for _ in range(40):
        await asyncio.gather(*(report(plane, run, token, step + 5 * i, 5) for i in range(25)))
        step += 125
    read = rows_read_by_the_tail(store)
    second = client.events()
    reading = asyncio.ensure_future(_first_metrics(second))
    try:
        await asyncio.sleep(0.3)
        await report(plane, run, token, step, 5)
        entry = await reading
        assert entry.points[0].step == step
        assert read["rows"] < 50
    finally:
        await second.aclose()
        await client.close()


async def test_streams_are_served_while_commits_land_during_every_read_of_the_tail(plane):
    """A commit during each of the tail's reads must not keep it reading under its lock (no stream would get
    anything for as long as that lasts). (From a helper's review.)"""
    store = plane.control.store
    run, token = await plane.fake_run()
    client = Client(plane.url, plane.control.admin_token)
    stream = client.events()
    got = []

    async def read():
        async for _, entry in stream:
            if isinstance(entry, MetricsAdded):
                got.append(time.monotonic())

    reader = asyncio.ensure_future(read())
    try:
        await asyncio.sleep(0.3)
        feed_tail = store.feed_tail
        stop = time.monotonic() + 3

        async def a_commit_during_each_read(after, limit, full):
            result = await feed_tail(after, limit, full)
            if time.monotonic() < stop:
                await store.set_output_sync(run.id, synced=True)  # any write: a commit meanwhile
            return result

        store.feed_tail = a_commit_during_each_read
        t0 = time.monotonic()
        await report(plane, run, token, 0, 5)
        await asyncio.sleep(1.5)
        assert got and got[0] - t0 < 1.0
    finally:
        await stop_reading(reader, stream, client)


async def test_the_tail_starts_afresh_when_more_waits_than_it_would_keep(plane):
    """A stream that did not read while many reports came (a slow client): the tail reads at most about its bound
    of what waited, then starts from the newest entry; the stream, now behind it, reads from the store."""
    from podtui.server.events import FeedTail

    store = plane.control.store
    tail = FeedTail(store, max_bytes=20_000)
    tail.follow(None)
    run, token = await plane.fake_run()
    assert await tail.read(0, None, None) is None  # before the tail's start
    after = await store.last_feed_id()
    assert await tail.read(after, None, None) == (b"", after)
    for start in range(0, 1000, 5):
        await report(plane, run, token, start, 5)
    read = rows_read_by_the_tail(store)
    assert await tail.read(after, None, None) is None  # behind the fresh start: from the store
    assert read["rows"] < 600 - 100  # of the 600 feed rows (3 per report) that waited
    assert len(tail) == 0
    await report(plane, run, token, 1000, 5)
    newest = await store.last_feed_id()
    data, went_to = await tail.read(newest - 3, None, None)
    assert went_to == newest and b"event: metrics" in data and b'"step":1000' in data
    tail.unfollow(None)
