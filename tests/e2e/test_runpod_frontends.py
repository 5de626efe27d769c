"""A RunPod run driven by a person: from the TUI (Pilot) and from the CLI (`podtui serve` + verbs in
subprocesses), against the fake RunPod v2 API in execute mode. Each ends with no pod left at the fake."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from textual.widgets import Static

from podtui.app import PodtuiApp
from podtui.models import LaunchSpec
from podtui.screens.confirm import ConfirmScreen
from podtui.screens.launch import LaunchScreen
from podtui.screens.run_detail import RunDetailScreen
from podtui.widgets.offers_table import OffersTable
from podtui.widgets.runs_table import RunsTable
from tests.fakes.runpod_v2 import GPU_4090, GPU_A6000, FakeRunPodV2
from tests.support import free_port, make_settings
from tests.tui.test_app import wait_for


@pytest.fixture
async def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("DEMO_STEPS", "3000")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.05")
    api = FakeRunPodV2(tmp_path / "fake", execute=True)
    api.rate_limits = [("minute", 100_000, 60)]
    await api.start()
    yield api
    await api.stop()
    assert api.response_errors == []
    assert api.live_pods() == []


def runpod_settings(tmp_path, fake, port):
    return make_settings(tmp_path, port=port, runpod_api_key="test-key", runpod_api_url=fake.url,
                         runpod_pod_api_url=fake.url, provider="runpod", public_url=f"http://127.0.0.1:{port}",
                         allow_loopback_public_url=True, supervisor_interval_s=0.3)


async def test_tui_launch_fails_over_shows_cost_and_gpu_use_and_terminates(fake, tmp_path):
    fake.no_capacity.add(GPU_4090)
    port = free_port()
    settings = runpod_settings(tmp_path, fake, port)
    app = PodtuiApp(settings)
    async with app.run_test(size=(170, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen)
                       and app.screen.query_one(OffersTable).row_count == 3)
        offers = app.screen.query_one(OffersTable)
        offers.focus()
        await pilot.press("space", "down", "space")  # 4090 (cheapest) first, then the A6000 as its fallback
        assert offers.picked == [GPU_4090, GPU_A6000]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen))
        dash = app.dashboard
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        run_id = next(iter(app.live.runs))
        await wait_for(pilot, lambda: app.live.runs[run_id].status.value == "training", timeout=60)
        run = app.live.runs[run_id]
        assert run.gpu_type == GPU_A6000 and run.price_per_hour == 0.76
        fake.set_gpu_util(run.pod_id, 87, 52)
        table = dash.query_one(RunsTable)
        await wait_for(pilot, lambda: str(table.get_cell(run_id, "use")) == "87%")
        assert str(table.get_cell(run_id, "$/h")) == "0.76"
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.live.runs[run_id].status.value == "terminated")
        await wait_for(pilot, lambda: not fake.live_pods(), timeout=10)


async def test_run_detail_shows_the_pod_log_until_the_agent_reports(fake, tmp_path):
    fake.execute = False  # the pod never boots podtui: only RunPod's own log lines exist
    port = free_port()
    settings = runpod_settings(tmp_path, fake, port)
    app = PodtuiApp(settings)
    async with app.run_test(size=(170, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        run = await app.dashboard._client.launch(LaunchSpec(dataset="demo", gpu_types=[GPU_4090]))
        dash = app.dashboard
        await wait_for(pilot, lambda: run.id in app.live.runs and app.live.runs[run.id].pod_id is not None)
        fake.add_log(app.live.runs[run.id].pod_id, "Error response from daemon: pull access denied", source="system")
        await wait_for(pilot, lambda: dash.query_one(RunsTable).row_count == 1)
        dash.query_one(RunsTable).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        pane = app.screen.query_one("#pod-log", Static)
        await wait_for(pilot, lambda: pane.has_class("shown") and "pull access denied" in str(pane.content))
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.live.runs[run.id].status.value == "terminated")
        await wait_for(pilot, lambda: not fake.live_pods(), timeout=10)


async def podtui(env, *args, timeout=60, answer=None):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "podtui.cli", *args, env=env,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(None if answer is None else answer.encode()), timeout)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_launch_runs_and_terminate_against_v2(fake, tmp_path):
    fake.no_capacity.add(GPU_4090)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PODTUI_", "RUNPOD_"))}
    env.update(PODTUI_DATA_DIR=str(tmp_path / "data"), PODTUI_CONFIG_FILE=str(tmp_path / "none.toml"),
               PODTUI_PORT=str(port), RUNPOD_API_KEY="test-key", PODTUI_RUNPOD_API_URL=fake.url,
               PODTUI_RUNPOD_POD_API_URL=fake.url,
               PODTUI_PUBLIC_URL=f"http://127.0.0.1:{port}", PODTUI_ALLOW_LOOPBACK_PUBLIC_URL="1",
               PODTUI_SUPERVISOR_INTERVAL_S="0.5", NO_PROXY="127.0.0.1,localhost")
    serve = await asyncio.create_subprocess_exec(sys.executable, "-m", "podtui.cli", "serve", env=env,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        for _ in range(100):
            code, _, _ = await podtui(env, "runs", "--json")
            if code == 0:
                break
            await asyncio.sleep(0.2)
        code, out, err = await podtui(env, "gpus", "--provider", "runpod")
        assert code == 0 and "NVIDIA RTX A6000" in out and "GraphQL" in out and "2027" in out, err
        code, out, err = await podtui(env, "launch", "--dataset", "demo", "--gpu", GPU_4090, "--gpu", GPU_A6000,
                                      "--min-gpu-util", "30/5m", "--json")
        assert code == 0, err
        run = json.loads(out)
        assert run["provider"] == "runpod" and run["spec"]["min_gpu_util_pct"] == 30
        assert run["spec"]["min_gpu_util_s"] == 300
        for _ in range(200):
            code, out, _ = await podtui(env, "runs", "--json")
            (listed,) = json.loads(out)
            if listed["status"] == "training":
                break
            await asyncio.sleep(0.3)
        assert listed["gpu_type"] == GPU_A6000 and listed["price_per_hour"] == 0.76, listed
        code, out, err = await podtui(env, "terminate", run["id"], answer="n\n")  # asks, and says what is lost
        assert code == 0 and "left running" in out, err
        assert f"Outputs not home yet are lost: `podtui outputs {run['id']} --sync` brings them home first" in out
        code, out, err = await podtui(env, "terminate", run["id"], "--yes", "--json")
        assert code == 0, err
        assert json.loads(out)["status"] == "terminated"
        assert fake.live_pods() == []
        code, out, err = await podtui(env, "launch", "--dataset", "demo", "--gpu", "NVIDIA GTX 280",
                                      "--provider", "runpod")
        assert code != 0 and "--gpu: RunPod has no GPU type" in (out + err) and "Traceback" not in (out + err)
    finally:
        serve.terminate()
        await serve.wait()
    assert fake.live_pods() == []
