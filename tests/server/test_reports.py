"""Pod reports: de-duplication, limits answered with 4xx, NaN kept, concurrency, ownership."""

import asyncio
import json
import math
import time

import httpx

from podtui.models import MAX_LOG_LINE


def report_body(start=0, n=10, seq0=0, lines=5, **extra):
    now = time.time()
    return {"metrics": [{"name": "loss", "step": start + i, "value": 1.0 / (start + i + 1), "ts": now}
                        for i in range(n)],
            "logs": [{"seq": seq0 + i, "ts": now, "stream": "stdout", "text": f"line {seq0 + i}"}
                     for i in range(lines)],
            "heartbeat_ts": now, **extra}


async def post(plane, run_id, token, body, raw=None):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    content = raw if raw is not None else json.dumps(body).encode()
    return await plane.http.post(f"/api/v1/runs/{run_id}/report", content=content, headers=headers)


async def test_resent_report_changes_nothing(plane):
    run, token = await plane.fake_run()
    first = await post(plane, run.id, token, report_body())
    assert first.status_code == 200 and first.json()["accepted_metrics"] == 10
    again = await post(plane, run.id, token, report_body())
    assert again.json()["accepted_metrics"] == 0 and again.json()["accepted_logs"] == 0
    page = (await plane.http.get(f"/api/v1/runs/{run.id}/metrics")).json()
    assert len(page["series"]["loss"]["steps"]) == 10
    logs = (await plane.http.get(f"/api/v1/runs/{run.id}/logs")).json()["lines"]
    assert [line["seq"] for line in logs] == list(range(5))


async def test_limits_are_4xx_and_leave_the_store_as_it_was(plane):
    run, token = await plane.fake_run()
    point = {"name": "loss", "step": 1, "value": 1.0, "ts": time.time()}
    cases = [
        ({"metrics": [{**point, "step": 2**63}]}, 422),
        ({"metrics": [{**point, "value": True}]}, 422),
        ({"metrics": [{**point, "ts": False}]}, 422),
        ({"metrics": [{**point, "name": "n" * 251}]}, 422),
        ({"metrics": [{**point, "step": i} for i in range(5001)]}, 422),
        ({"logs": [{"seq": i, "ts": 1.0, "text": "x"} for i in range(5001)]}, 422),
        ({"status": "exploded"}, 422),
        ({"metrics": [point, {**point, "step": "x"}]}, 422),  # one bad point: none stored
        ([1, 2], 422),
    ]
    for body, status in cases:
        r = await post(plane, run.id, token, body)
        assert r.status_code == status, (body if len(str(body)) < 200 else str(body)[:200], r.text)
        assert r.json()["error"]["message"]
    r = await post(plane, run.id, token, None, raw=b"{not json")
    assert r.status_code == 400
    r = await post(plane, run.id, token, None, raw=b"x" * (1024 * 1024 + 10))
    assert r.status_code == 413 and r.json()["error"]["code"]
    r = await post(plane, run.id, token, None, raw=b"[" * 100_000)
    assert r.status_code in (400, 422)
    assert (await plane.http.get(f"/api/v1/runs/{run.id}/metrics")).json()["series"] == {}


async def test_nan_and_infinity_are_stored_and_json_stays_valid(plane):
    run, token = await plane.fake_run()
    now = time.time()
    raw = ('{"metrics": [{"name": "loss", "step": 1, "value": NaN, "ts": NOW},'
           '{"name": "loss", "step": 2, "value": "Infinity", "ts": NOW},'
           '{"name": "loss", "step": 3, "value": -Infinity, "ts": NOW}]}').replace("NOW", str(now)).encode()
    assert (await post(plane, run.id, token, None, raw=raw)).status_code == 200
    r = await plane.http.get(f"/api/v1/runs/{run.id}/metrics")
    strict = json.loads(r.text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert strict["series"]["loss"]["values"] == ["NaN", "Infinity", "-Infinity"]
    got = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()
    assert got["last_loss"] == "-Infinity" and got["last_step"] == 3
    assert math.isinf((await plane.store.get_run(run.id)).last_loss)


async def test_long_log_line_truncated_with_marker(plane):
    run, token = await plane.fake_run()
    body = {"logs": [{"seq": 0, "ts": time.time(), "text": "y" * (MAX_LOG_LINE * 2)}]}
    assert (await post(plane, run.id, token, body)).status_code == 200
    line = (await plane.http.get(f"/api/v1/runs/{run.id}/logs")).json()["lines"][0]["text"]
    assert line.endswith("line over 16 KiB]") and len(line) < MAX_LOG_LINE + 100


async def test_a_pod_writes_only_its_own_run(plane):
    run_a, token_a = await plane.fake_run()
    run_b, _ = await plane.fake_run()
    r = await post(plane, run_b.id, token_a, report_body())
    assert r.status_code == 403
    no_token = await plane.http.post(f"/api/v1/runs/{run_a.id}/report", json=report_body(),
                                     headers={"Authorization": ""})
    assert no_token.status_code == 401
    assert (await post(plane, "nope", token_a, report_body())).status_code == 404
    admin = await plane.http.post(f"/api/v1/runs/{run_a.id}/report", json=report_body())
    assert admin.status_code == 403  # the admin token is not an ingest token


async def test_concurrent_reports_from_many_runs(plane):
    runs = [await plane.fake_run() for _ in range(20)]
    async with httpx.AsyncClient(base_url=plane.url, trust_env=False) as client:
        async def pod(run, token):
            for batch in range(5):
                r = await client.post(f"/api/v1/runs/{run.id}/report",
                                      json=report_body(start=batch * 100, n=100, seq0=batch * 20, lines=20),
                                      headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
        await asyncio.gather(*(pod(run, token) for run, token in runs))
    for run, _ in runs:
        page = (await plane.http.get(f"/api/v1/runs/{run.id}/metrics")).json()
        assert page["series"]["loss"]["steps"] == list(range(500))


async def test_status_progress_and_final_report(plane):
    run, token = await plane.fake_run()
    r = await post(plane, run.id, token, {"status": "downloading", "progress": {"bytes_done": 5, "bytes_total": 10}})
    assert r.status_code == 200
    got = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()
    assert got["progress"] == {"bytes_done": 5, "bytes_total": 10}
    r = await post(plane, run.id, token, {"status": "failed", "exit_code": 3, "error": "exit code 3\nboom"})
    final = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()
    assert final["status"] == "failed" and final["exit_code"] == 3 and "boom" in final["status_reason"]
    # its ingest token lives while the pod brings its outputs home (the keep-alive window), and goes with the pod
    assert (await post(plane, run.id, token, report_body())).status_code == 200
    await plane.store.revoke_ingest_token(run.id)  # what the supervisor does once the pod is gone
    assert (await post(plane, run.id, token, report_body())).status_code == 401
    r = await post(plane, run.id, token, {"live": ["x" * 1001]})  # a refused token is said first, whatever the body
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"


async def test_live_rows_and_how_metrics_were_read_are_on_the_run_until_it_ends(plane):
    run, token = await plane.fake_run()
    bar = "Epoch 1:  45%|████▌     | 45/100 [00:01<00:01, 30.1it/s, loss=0.123]"
    r = await post(plane, run.id, token, {"status": "training", "live": [bar],
                                          "metrics_source": "tqdm postfix, step from the bar's counter"})
    assert r.status_code == 200, r.text
    got = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()
    assert got["live"] == [bar] and got["metrics_source"] == "tqdm postfix, step from the bar's counter"
    await post(plane, run.id, token, report_body())  # a report that says nothing of them leaves them
    got = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()
    assert got["live"] == [bar] and got["metrics_source"].startswith("tqdm postfix")
    before = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()["last_activity"]
    await asyncio.sleep(0.01)
    await post(plane, run.id, token, {"live": []})
    got = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()
    assert got["live"] == [] and got["last_activity"] > before  # a moving bar is activity (stall guardrail)
    await post(plane, run.id, token, {"live": [bar]})
    r = await post(plane, run.id, token, {"live": ["x" * 1001]})
    assert r.status_code == 422 and "live" in r.text
    await post(plane, run.id, token, {"status": "succeeded", "exit_code": 0})
    final = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()
    assert final["live"] == [] and final["metrics_source"].startswith("tqdm postfix")


async def test_a_deadline_read_while_the_price_changes_is_not_kept(plane):
    """A report's deadline computed from the run as it was before a price change must not stay cached after it."""
    import asyncio as aio

    run, _ = await plane.fake_run()
    runs = plane.runs
    runs.settings.default_budget_usd = 10.0  # the run's budget: its deadline depends on the price
    await plane.store.update_run(run.id, started_at=1000.0, price_per_hour=1.0)
    gate = aio.Event()
    real_get_run = runs.store.get_run

    async def slow_get_run(run_id):
        before = await real_get_run(run_id)  # read, then held while the price changes
        await gate.wait()
        return before

    runs.store.get_run = slow_get_run
    try:
        first = aio.ensure_future(runs.pod_deadline(run.id))
        await aio.sleep(0.05)
        await plane.store.update_run(run.id, price_per_hour=2.0)
        runs.forget_deadline(run.id)
        gate.set()
        stale = await first
    finally:
        runs.store.get_run = real_get_run
    fresh = await runs.pod_deadline(run.id)
    assert stale == 1000.0 + 10.0 * 3600.0 and fresh == 1000.0 + 5.0 * 3600.0
