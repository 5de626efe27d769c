"""A run's attempts in the store and over HTTP (issue 26): a new attempt's pod gets a new token, its log lines
follow the earlier ones, its points replace the earlier attempt's from the step it resumed at; a resend changes
nothing; the run's cost and runtime count every attempt; the resume route serves only with the run's token."""

import asyncio
import tarfile
import time

from podtui.models import Attempt, RunStatus
from podtui.server.retries import pack_resume
from podtui.store import SEQ_SPAN
from podtui.tokens import hash_token, new_token

from .test_reports import post, report_body


async def next_attempt(plane, run, reason="pod lost"):
    """Close the run's attempt (as the retry path does once its pod is gone) and give it a pod again."""
    await plane.store.update_run(run.id, pod_id="pod-1", gpu_type="local", price_per_hour=3.6,
                                 started_at=time.time() - 100)
    token = new_token()
    fresh = await plane.store.begin_attempt(
        run.id, "pod-1", Attempt(pod_id="pod-1", gpu="local", started_at=time.time() - 100, ended_at=time.time(),
                                 reason=reason, cost_usd=0.1, price_per_hour=3.6),
        hash_token(token), event=("attempt_lost", reason), boundary="-- attempt 1 of 2 ended --")
    assert fresh is not None
    await plane.store.update_run(run.id, pod_id="pod-2", gpu_type="local", price_per_hour=3.6,
                                 started_at=time.time() - 10)
    return fresh, token


async def test_a_later_attempt_replaces_redone_steps_and_numbers_its_lines_after(plane):
    run, token = await plane.fake_run()
    assert (await post(plane, run.id, token, report_body(start=0, n=10, lines=5))).status_code == 200
    fresh, token2 = await next_attempt(plane, run)
    assert fresh.status.value == "provisioning" and fresh.pod_id is None and fresh.attempt == 2
    assert (await post(plane, run.id, token, report_body(start=20))).status_code == 403  # the lost pod's token
    body = report_body(start=6, n=6, lines=3)
    for point in body["metrics"]:
        point["value"] = 100.0 + point["step"]
    assert (await post(plane, run.id, token2, body)).json()["accepted_metrics"] == 6
    again = await post(plane, run.id, token2, body)  # a resend within the attempt changes nothing
    assert again.json()["accepted_metrics"] == 0 and again.json()["accepted_logs"] == 0
    series = (await plane.http.get(f"/api/v1/runs/{run.id}/metrics")).json()["series"]["loss"]
    assert series["steps"] == list(range(12))
    assert series["attempts"] == [1] * 6 + [2] * 6
    assert series["values"][6:] == [100.0 + s for s in range(6, 12)] and series["values"][5] == 1.0 / 6
    lines = (await plane.http.get(f"/api/v1/runs/{run.id}/logs")).json()["lines"]
    assert [line["seq"] for line in lines] == [0, 1, 2, 3, 4, SEQ_SPAN, SEQ_SPAN + 1, SEQ_SPAN + 2, SEQ_SPAN + 3]
    assert lines[5]["stream"] == "system" and lines[5]["text"] == "-- attempt 1 of 2 ended --"
    got = (await plane.http.get(f"/api/v1/runs/{run.id}")).json()
    assert [a["pod_id"] for a in got["attempts"]] == ["pod-1", "pod-2"] and got["attempt"] == 2
    assert got["spent_usd"] > 0.1 and got["attempts"][1]["cost_usd"] > 0.009


async def test_begin_attempt_refuses_a_run_that_moved_on(plane):
    run, _ = await plane.fake_run()
    await plane.store.update_run(run.id, pod_id="pod-9")
    ended = Attempt(pod_id="pod-1", ended_at=time.time(), reason="x")
    assert await plane.store.begin_attempt(run.id, "pod-1", ended, "h", ("attempt_lost", "x"), "b") is None
    await plane.store.finish_run(run.id, RunStatus.terminated, "by the user")
    assert await plane.store.begin_attempt(run.id, "pod-9", ended, "h", ("attempt_lost", "x"), "b") is None


async def test_the_resume_route_serves_the_outputs_to_the_runs_pod_only(plane, tmp_path):
    run, token = await plane.fake_run()
    outputs = tmp_path / "out"
    (outputs / "sub").mkdir(parents=True)
    (outputs / "checkpoint.json").write_text('{"step": 40}')
    (outputs / "sub" / "w.bin").write_bytes(b"\x00" * 1000)
    archive = plane.runs.retries.resume_archive(run.id)
    assert pack_resume(outputs, ["checkpoint.json", "sub/w.bin", "missing.txt"], archive) == (2, 1012)
    r = await plane.http.get(f"/api/v1/boot/{run.id}/resume", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403
    r = await plane.http.get(f"/api/v1/boot/{run.id}/resume", headers={"Authorization": f"Bearer {token}",
                                                                         "Range": "bytes=0-"})
    assert r.status_code in (200, 206)
    got = tmp_path / "got.tar"
    got.write_bytes(r.content)
    with tarfile.open(got) as tar:
        assert sorted(tar.getnames()) == ["checkpoint.json", "sub/w.bin"]
    archive.unlink()
    r = await plane.http.get(f"/api/v1/boot/{run.id}/resume", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_resume"


async def test_a_restart_between_attempts_makes_the_next_pod(plane):
    from podtui.models import LaunchSpec, Run
    from podtui.server import keys

    record = await plane.store.find_dataset("demo")
    run = Run(id="a1b2c3d4e5", name="t", provider="local", status=RunStatus.training,
              spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true", retries=1),
              dataset_id=record.dataset.id, created_at=time.time())
    await plane.store.create_run(run, hash_token(new_token()))
    await next_attempt(plane, run)
    await plane.store.update_run(run.id, pod_id=None, started_at=None)  # the restart came before the new pod
    provider = plane.runs.providers["local"]
    await plane.control.runner.app[keys.SUPERVISOR].resume_after_restart()
    deadline = time.monotonic() + 10
    while not (got := await plane.store.get_run(run.id)).pod_id:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert got.status.is_live and got.attempt == 2 and len(provider.created) == 1
    assert provider.created[0].env["PODTUI_ATTEMPT"] == "2"
    assert provider.created[0].env["PODTUI_SYNC_OUTPUTS_S"] == "300"  # retries on: outputs home every 5 min
    assert await plane.store.has_event(run.id, "resumed")


async def test_gpu_use_points_carry_their_attempt_and_go_on_across_attempts(plane):
    run, _ = await plane.fake_run()
    await plane.store.record_gpu_use(run.id, 50.0, 10.0, 5, time.time())
    await next_attempt(plane, run)
    await plane.store.record_gpu_use(run.id, 70.0, 20.0, 120, time.time())
    series = (await plane.http.get(f"/api/v1/runs/{run.id}/metrics", params={"name": "gpu_util"})).json()
    got = series["series"]["gpu_util"]
    assert (got["steps"], got["values"], got["attempts"]) == ([5, 120], [50.0, 70.0], [1, 2])
