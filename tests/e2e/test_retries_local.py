"""A run outlives its pod (issue 26), on this machine: the local provider's pod killed with SIGKILL mid-run (its
agent and its command) is replaced by a new attempt that resumes from the checkpoint brought home."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import Plane, make_settings, start_plane, stop_local_plane, wait_for

from .helpers import group_alive

FINAL = {"succeeded", "failed", "lost", "terminated"}


@pytest.fixture
async def priced_plane(tmp_path: Path) -> Any:
    """The real local provider billing $3.60/h (a cent a minute... a tenth of a cent a second), so costs show."""
    p = await start_plane(make_settings(tmp_path, local_price_per_hour=3.6))
    yield p
    await stop_local_plane(p)


def pod_groups(plane: Plane, pod_id: str) -> list[int]:
    """The pod's process groups: its agent's and its command's."""
    pod_dir = plane.control.settings.data_dir / "pods" / pod_id
    groups = [int(json.loads((pod_dir / "pod.json").read_text())["pid"])]
    agent = pod_dir / "agent.json"
    if agent.exists():
        groups.append(int(json.loads(agent.read_text())["child_pgid"]))
    return groups


async def all_logs(plane: Plane, run_id: str) -> list[dict[str, Any]]:
    page = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 10000})).json()
    return list(page["lines"])


async def live_pods(plane: Plane) -> list[str]:
    provider = plane.runs.providers["local"]
    return [p.pod_id for p in await provider.list_pods()]


@pytest.mark.parametrize("connect", ["push", "pull"])
async def test_killed_pod_is_replaced_and_training_resumes_from_the_checkpoint(priced_plane: Plane,
                                                                               connect: str) -> None:
    plane = priced_plane
    r = await plane.http.post("/api/v1/runs", json={
        "dataset": "demo", "gpu_types": ["local"], "retries": 1, "sync_outputs_s": 1, "keep_alive_s": 60,
        "connect": connect,
        "env": {"DEMO_STEPS": "150", "DEMO_STEP_SECONDS": "0.04", "DEMO_CHECKPOINT_EVERY": "20"}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert r.json()["spec"]["retries"] == 1

    async def checkpoint_home() -> Any:
        files = (await plane.http.get(f"/api/v1/runs/{run_id}/outputs")).json()["files"]
        run = (await plane.http.get(f"/api/v1/runs/{run_id}")).json()
        if any(f["path"] == "checkpoint.json" and f["size"] for f in files) and (run["last_step"] or 0) >= 50:
            return run
        return None

    first = await wait_for(checkpoint_home, 120, "a checkpoint home while training")
    lost_pod = first["pod_id"]
    home = plane.control.settings.data_dir / "outputs" / run_id / "checkpoint.json"
    for pgid in pod_groups(plane, lost_pod):  # the agent and the command, as a host failing takes them
        os.killpg(pgid, signal.SIGKILL)

    run = await plane.wait_status(run_id, FINAL, timeout=240)
    assert run["status"] == "succeeded", run["status_reason"]
    assert run["attempt"] == 2
    attempts = run["attempts"]
    assert len(attempts) == 2 and attempts[0]["pod_id"] == lost_pod
    assert attempts[1]["pod_id"] == run["pod_id"] != lost_pod
    assert "without reporting an end" in attempts[0]["reason"]
    assert attempts[0]["cost_usd"] > 0 and attempts[1]["cost_usd"] > 0
    assert run["spent_usd"] == pytest.approx(attempts[0]["cost_usd"] + attempts[1]["cost_usd"], rel=1e-3)
    assert attempts[0]["ended_at"] <= attempts[1]["started_at"]  # the lost pod was gone before the new one

    lines = await all_logs(plane, run_id)
    texts = [line["text"] for line in lines]
    resumed = [t for t in texts if t.startswith("demo trainer: resuming from step")]
    assert len(resumed) == 1, texts[-20:]
    resume_step = int(resumed[0].split()[5])
    assert resume_step >= 20 and resume_step % 20 == 0
    assert any("attempt 1 of 2 ended" in t for t in texts)
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # The second attempt's first step is the one after the checkpoint's; its points carry attempt 2.
    after = texts[texts.index(resumed[0]) + 1:]
    assert next(t for t in after if t.startswith("step=")).startswith(f"step={resume_step + 1} ")
    page = (await plane.http.get(f"/api/v1/runs/{run_id}/metrics", params={"name": "loss"})).json()
    series = page["series"]["loss"]
    steps = series["steps"]
    assert steps == sorted(set(steps)) and set(range(resume_step + 1, 151)) <= set(steps)
    # Before the checkpoint's step, what the lost pod delivered, from step 1 without a gap (its last reports can die
    # with it after the checkpoint came home).
    early = [step for step in steps if step <= resume_step]
    assert early == list(range(1, len(early) + 1)) and len(early) >= 20
    by_step = dict(zip(steps, series["attempts"], strict=True))
    assert by_step[resume_step + 1] == 2 and by_step[150] == 2 and all(by_step[step] == 1 for step in early)

    kinds = [e["kind"] for e in (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()]
    assert "attempt_lost" in kinds and "resumed" in kinds
    assert json.loads(home.read_text())["step"] >= resume_step
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "podtui.cli", "--server", plane.url, "--token",
                               plane.control.admin_token, *args], capture_output=True, text=True, timeout=60)

    listed = await asyncio.to_thread(cli, "runs")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert row.split()[header.split().index("TRY")] == "2/2"
    rows = list(csv.DictReader(io.StringIO((await asyncio.to_thread(cli, "metrics", run_id, "--csv",
                                                                       "--name", "loss")).stdout)))
    assert {int(r["step"]): int(r["attempt"]) for r in rows} == by_step
    await wait_for(lambda: _none(live_pods(plane)), 60, "no pod left")
    for pod in (lost_pod, run["pod_id"]):
        assert not any(group_alive(g) for g in pod_groups(plane, pod))


async def _none(pods: Any) -> bool:
    return not await pods


async def test_failing_command_is_not_retried(local_plane: Plane) -> None:
    r = await local_plane.http.post("/api/v1/runs", json={
        "dataset": "demo", "gpu_types": ["local"], "retries": 2, "command": "echo nope; exit 4"})
    run_id = r.json()["id"]
    run = await local_plane.wait_status(run_id, FINAL, timeout=90)
    assert run["status"] == "failed" and run["exit_code"] == 4
    assert run["attempt"] == 1 and len(run["attempts"]) == 1
    kinds = [e["kind"] for e in (await local_plane.http.get(f"/api/v1/runs/{run_id}/events")).json()]
    assert "attempt_lost" not in kinds


async def test_failing_command_is_retried_with_retry_failed(local_plane: Plane) -> None:
    r = await local_plane.http.post("/api/v1/runs", json={
        "dataset": "demo", "gpu_types": ["local"], "retries": 1, "retry_failed": True, "keep_alive_s": 0,
        "command": 'echo "attempt $PODTUI_ATTEMPT resume dir $PODTUI_RESUME_DIR"; exit 5'})
    run_id = r.json()["id"]
    run = await local_plane.wait_status(run_id, FINAL, timeout=120)
    assert run["status"] == "failed" and run["attempt"] == 2, run["status_reason"]
    texts = [line["text"] for line in await all_logs(local_plane, run_id)]
    assert any(t.startswith("attempt 1 resume dir /") for t in texts)
    assert any(t.startswith("attempt 2 resume dir /") for t in texts)
    assert run["attempts"][0]["reason"].startswith("the training command failed (exit code 5)")
    assert "no new pod: its 1 retry is used up" in run["status_reason"]
