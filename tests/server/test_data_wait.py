"""data_wait_s / data_wait_usd: how long (and how much) a pod waited for its dataset before training."""

from __future__ import annotations

from podtui.models import Report, RunStatus


async def test_data_wait_runs_from_downloading_to_training(plane):
    run, _ = await plane.fake_run()
    await plane.store.update_run(run.id, status=RunStatus.booting, price_per_hour=3.6)
    assert (await plane.store.get_run(run.id)).data_wait_s is None
    await plane.store.apply_report(run.id, Report(status="downloading"), now=1000.0)
    await plane.store.apply_report(run.id, Report(status="training"), now=1090.0)
    await plane.store.apply_report(run.id, Report(status="training"), now=2000.0)  # a later report moves nothing
    got = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()
    assert got["data_wait_s"] == 90.0 and got["data_wait_usd"] == 0.09
    listed = next(r for r in (await plane.http.get("/api/v1/runs")).json() if r["id"] == run.id)
    assert listed["data_wait_s"] == 90.0


async def test_a_pod_that_trains_at_once_waited_for_nothing(plane):
    run, _ = await plane.fake_run()
    await plane.store.update_run(run.id, status=RunStatus.booting)
    await plane.store.apply_report(run.id, Report(status="training"), now=500.0)
    got = await plane.store.get_run(run.id)
    assert got.data_wait_s == 0.0 and got.data_wait_usd is None
