"""A run outlives its pod, as a user sees it in the TUI: launched from the form with retries, its local pod killed,
the run carries on with a notification, one curve and its attempts in the run detail."""

import contextlib
import json
import os
import signal

import pytest
from textual.widgets import Input

from podtui.app import PodtuiApp
from podtui.screens.run_detail import attempts_text
from podtui.widgets.loss_chart import LossChart
from tests.support import make_settings
from tests.tui.test_app import open_the_launch_form, wait_for


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "160")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.15")  # the kill must come while it trains, under load too
    monkeypatch.setenv("DEMO_CHECKPOINT_EVERY", "20")
    return make_settings(tmp_path)


async def test_a_killed_pod_is_replaced_and_the_curve_goes_on(settings):
    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_the_launch_form(app, pilot)
        form = app.screen
        form.query_one("#retries", Input).value = "1"
        form.query_one("#sync_outputs", Input).value = "1s"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        run_id = next(iter(app.live.runs))
        assert app.live.runs[run_id].spec.retries == 1
        chart = app.dashboard.query_one(LossChart)
        home = settings.data_dir / "outputs" / run_id / "checkpoint.json"
        await wait_for(pilot, lambda: home.exists() and json.loads(home.read_text())["step"] >= 40, timeout=90)
        lost_pod = app.live.runs[run_id].pod_id
        pod_dir = settings.data_dir / "pods" / lost_pod
        os.killpg(json.loads((pod_dir / "pod.json").read_text())["pid"], signal.SIGKILL)  # the pod (its agent)
        with contextlib.suppress(ProcessLookupError):  # then its command, when still there
            os.killpg(json.loads((pod_dir / "agent.json").read_text())["child_pgid"], signal.SIGKILL)
        await wait_for(pilot, lambda: any("attempt 1 of 2 lost" in str(n.message) for n in app._notifications))
        # (a notification lasts 10 s: looked for while it shows)
        await wait_for(pilot, lambda: any("attempt 2 of 2 on pod" in str(n.message) for n in app._notifications))
        await wait_for(pilot, lambda: app.live.runs[run_id].status.value == "succeeded", timeout=120)
        run = app.live.runs[run_id]
        assert run.attempt == 2 and run.pod_id != lost_pod
        page = await app.client.metrics(run_id, name="loss")
        stored = page.series["loss"]
        assert stored.steps == sorted(set(stored.steps)) and stored.steps[-1] == 160  # a lost pod's last reports
        # can die with it: the steps before the checkpoint's are what it delivered
        await wait_for(pilot, lambda: len(chart.series["loss"].steps) == len(stored.steps))
        assert chart.series["loss"].steps.tolist() == stored.steps  # one curve, no step twice
        assert chart.series["loss"].values.tolist() == pytest.approx(stored.values)  # the later attempt's values
        first_of_2 = next(line.text.split()[5] for line in (await app.client.logs(run_id, limit=5000)).lines
                          if line.text.startswith("demo trainer: resuming from step"))
        await wait_for(pilot, lambda: chart.resumes == [int(first_of_2) + 1])  # marked where the new pod took over
        drawn = chart.draw(100, 20).plain
        assert "↻" in drawn and "resumed on a new pod" in drawn
        app.dashboard.panel.load_selected(run_id)  # loaded again from the control plane: the same mark
        await wait_for(pilot, lambda: chart.resumes == [int(first_of_2) + 1] and not chart.resume_pending)
        text = attempts_text(run, run.ended_at or 0.0)
        assert text.startswith(f"1. pod {lost_pod} on local") and f"2. pod {run.pod_id} on local" in text
