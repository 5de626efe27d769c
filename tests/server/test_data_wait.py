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


async def test_estimate_before_a_large_local_dataset_goes_through_this_uplink(plane, tmp_path, monkeypatch):
    import secrets
    import time

    from podtui.models import LaunchSpec, Run
    from podtui.server import uplink

    monkeypatch.setattr(uplink, "LARGE_BYTES", 1024 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (20 * 1024 * 1024))
    r = await plane.http.post("/api/v1/datasets", json={"path": str(big), "name": "big"})
    assert r.status_code == 201
    dataset_id = r.json()["id"]
    body = {"dataset": "big", "gpu_types": ["NVIDIA A40"], "provider": "runpod", "command": "true"}
    first = (await plane.http.post("/api/v1/data-estimate", json=body)).json()
    assert first["through_this_machine"] and first["uplink_bytes_per_s"] is None
    assert "not measured yet" in first["message"] and "podtui datasets push big --volume VOL" in first["message"]

    # an earlier RunPod run moved those 20 MiB in 10 s: 2 MiB/s
    run = Run(id=secrets.token_hex(5), name="earlier", provider="runpod", status=RunStatus.booting,
              spec=LaunchSpec(dataset="big", gpu_types=["NVIDIA A40"], command="true"), dataset_id=dataset_id,
              created_at=time.time())
    await plane.store.create_run(run, "hash")
    await plane.store.apply_report(run.id, Report(status="downloading"), now=100.0)
    await plane.store.apply_report(run.id, Report(status="training"), now=110.0)
    second = (await plane.http.post("/api/v1/data-estimate", json=body)).json()
    assert second["uplink_bytes_per_s"] == 2 * 1024 * 1024 and second["seconds"] == 10.0
    assert "~10s at 2.0 MiB/s" in second["message"]
    # the local provider: nothing goes through this machine to a pod
    local = (await plane.http.post("/api/v1/data-estimate", json={**body, "provider": "local"})).json()
    assert local["through_this_machine"] is False and local["message"] is None


async def test_pull_mode_counts_the_upload_as_waiting_for_data(plane):
    run, _ = await plane.fake_run()
    await plane.store.update_run(run.id, status=RunStatus.booting)
    await plane.store.start_data_wait(run.id, 1000.0)  # the control plane starts uploading the inputs
    await plane.store.start_data_wait(run.id, 1005.0)  # a retried upload does not move the start
    await plane.store.apply_report(run.id, Report(status="downloading"), now=1040.0)
    await plane.store.apply_report(run.id, Report(status="training"), now=1050.0)
    assert (await plane.store.get_run(run.id)).data_wait_s == 50.0
