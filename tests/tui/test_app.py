"""The TUI against a real embedded control plane on 127.0.0.1:0 with the local provider."""

import asyncio
import json
import time

import pytest

from podtui.app import PodtuiApp
from podtui.providers.local import group_alive
from podtui.screens.confirm import ConfirmScreen
from podtui.screens.launch import LaunchScreen
from podtui.screens.quit import QuitScreen
from podtui.widgets.loss_chart import LossChart
from podtui.widgets.offers_table import OffersTable
from tests.support import free_port, make_settings


async def wait_for(pilot, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError("condition not met in time")


async def open_the_launch_form(app, pilot):
    """Once the control plane answers: `n`, until the form offers the local GPU (picked)."""
    await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen)
                   and app.screen.query_one(OffersTable).picked == ["local"])


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "200")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.05")
    return make_settings(tmp_path)


async def test_launch_from_the_form_watch_the_chart_and_terminate(settings):
    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_the_launch_form(app, pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen))
        dash = app.dashboard
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        run_id = next(iter(app.live.runs))
        chart = dash.query_one(LossChart)
        await wait_for(pilot, lambda: "loss" in chart.series and len(chart.series["loss"].steps) >= 5)
        drawn = chart.draw(80, 20).plain
        assert "loss" in drawn and any(0x2800 < ord(ch) <= 0x28FF for ch in drawn)
        await wait_for(pilot, lambda: app.live.runs[run_id].pod_id is not None)
        pod_dir = settings.data_dir / "pods" / app.live.runs[run_id].pod_id
        pid = json.loads((pod_dir / "pod.json").read_text())["pid"]
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.live.runs[run_id].status.value == "terminated")
        await wait_for(pilot, lambda: not group_alive(pid), timeout=10)
        await pilot.press("s")  # an ended run: a word, no dialog that warns of outputs lost
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("there is nothing to stop" in str(n.message) for n in app._notifications)


async def test_ctrl_s_before_the_form_has_loaded_launches_once_it_has(settings, monkeypatch):
    # `n` then ctrl+s at once launches the demo: a newcomer's quick ctrl+s came before the datasets and offers,
    # failed on a blank dataset, and the load then wiped the error: nothing happened and nothing was said.
    from podtui.client import Client

    real = Client.datasets
    answer = asyncio.Event()  # the form's datasets come when the test says

    async def slow(self):
        await answer.wait()
        return await real(self)

    monkeypatch.setattr(Client, "datasets", slow)
    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        from textual.widgets import Static
        assert "launching once they are in" in str(app.screen.query_one("#error", Static).render())
        answer.set()
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen))
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        run = next(iter(app.live.runs.values()))
        assert run.spec.gpu_types == ["local"]
        await app.client.terminate(run.id)


async def test_quit_guard_with_a_live_run(settings):
    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        run = await app.client.launch(__import__("podtui.models", fromlist=["LaunchSpec"]).LaunchSpec(
            dataset="demo", gpu_types=["local"], command="sleep 120"))
        await wait_for(pilot, lambda: run.id in app.live.runs
                       and app.live.runs[run.id].status.is_live)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        from textual.widgets import Static
        said = str(app.screen.query(Static).first().content)
        assert "1 pod still running." in said and "billing" not in said  # a local process bills nothing
        assert "Terminating it loses the outputs not home yet." in said
        assert "Kept alone (k), a pod waits 30m00s after its command ends for podtui to start again" in said
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, QuitScreen))
        assert app.is_running
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("t")
        await wait_for(pilot, lambda: not app.is_running, timeout=30)
    store_file = settings.store_path
    import sqlite3

    status = sqlite3.connect(store_file).execute("SELECT status FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
    assert status == "terminated"


async def test_quitting_keeping_pods_running_says_so_after(settings):
    """`k` printed nothing: a user reopening podtui wondered why the run sat still."""
    import os
    import signal

    from podtui.app import kept_running_note
    from podtui.models import LaunchSpec

    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        run = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], command="sleep 120"))
        await wait_for(pilot, lambda: run.id in app.live.runs and app.live.runs[run.id].pod_id is not None
                       and app.live.runs[run.id].status.is_live)
        pod_id = app.live.runs[run.id].pod_id
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("k")
        await wait_for(pilot, lambda: not app.is_running, timeout=30)
    try:
        assert app.left_running == 1 and app.embedded
        assert kept_running_note(app.left_running, app.embedded, 1800) == (
            "1 pod keeps running within its own limits (max runtime, budget, stalls), keeping its reports; nothing "
            "supervises it until `podtui` or `podtui serve` starts again. Start it within 30m00s of a command's "
            "end, or that run's outputs are lost with its pod.")  # what a user who came back too late lost
        assert kept_running_note(2, False, 1800) == "2 pods keep running, supervised by the control plane podtui " \
            "was attached to."
    finally:
        pid = json.loads((settings.data_dir / "pods" / pod_id / "pod.json").read_text())["pid"]
        os.killpg(pid, signal.SIGKILL)


async def test_busy_port_is_a_notification_not_a_crash(tmp_path):
    blocker = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        app = PodtuiApp(make_settings(tmp_path, port=port))
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
            await pilot.pause(0.5)
            messages = [n.message for n in app._notifications]
            assert any("busy" in m for m in messages), messages
            assert any("podtui control plane" in m for m in messages), messages
    finally:
        blocker.close()


async def test_the_download_bar_and_the_filter_box_come_when_needed(settings):
    from textual.widgets import Input, ProgressBar

    from podtui.feed import RunChanged
    from podtui.models import DownloadProgress, LaunchSpec, Run, RunStatus
    from podtui.widgets.log_view import LogView
    from podtui.widgets.runs_table import RunsTable

    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        dash = app.dashboard
        assert not dash.query("#progress-row") and not dash.query("#filter")
        run = Run(id="dl00000001", name="dl", provider="local", status=RunStatus.pending,
                  spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true"), dataset_id="d",
                  created_at=time.time())
        app.take_entry(RunChanged(run=run.model_copy()))
        table = dash.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        run.status, run.progress = RunStatus.downloading, DownloadProgress(bytes_done=25, bytes_total=100)
        app.take_entry(RunChanged(run=run.model_copy()))
        await wait_for(pilot, lambda: bool(dash.query("#progress")))
        # cells that grow widen their column ("pending" was the widest status so far)
        await wait_for(pilot, lambda: table.columns["status"].content_width >= len("downloading 25%"))
        assert dash.query_one("#progress", ProgressBar).percentage == 0.25
        run.progress = DownloadProgress(bytes_done=75, bytes_total=100)
        app.take_entry(RunChanged(run=run.model_copy()))
        await wait_for(pilot, lambda: dash.query_one("#progress", ProgressBar).percentage == 0.75)
        run.status, run.progress = RunStatus.training, None
        app.take_entry(RunChanged(run=run.model_copy()))
        await wait_for(pilot, lambda: not dash.query_one("#progress-row").display)  # hidden, updated in place

        from podtui.widgets.runs_table import RunsTable

        table = dash.query_one(RunsTable)
        table.focus()
        await pilot.press("slash")
        await wait_for(pilot, lambda: bool(dash.query("#filter")) and dash.query_one("#filter", Input).has_focus)
        await pilot.press("l", "o", "s", "s", "enter")
        assert dash.query_one(LogView).filter_text == "loss"
        assert table.has_focus  # back where it was: the arrows move the runs table again
        await pilot.press("slash")
        await wait_for(pilot, lambda: dash.query_one("#filter", Input).has_focus)
        await pilot.press("escape")
        assert dash.query_one(LogView).filter_text == "" and not dash.query_one("#filter", Input).has_focus
        assert table.has_focus


async def test_enter_opens_the_run_detail_and_terminates_from_there(settings):
    import io

    from rich.console import Console
    from textual.widgets import DataTable, Static

    from podtui.models import LaunchSpec
    from podtui.screens.run_detail import RunDetailScreen

    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        dash = app.dashboard
        run = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], budget_usd=5,
                                                 env={"HF_TOKEN": "secret-value"}, sync_outputs_s=600))
        await wait_for(pilot, lambda: run.id in app.live.runs and app.live.runs[run.id].status.value == "training")
        await wait_for(pilot, lambda: dash.query_one("#runs", DataTable).row_count == 1)
        dash.query_one("#runs").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        screen = app.screen
        events = screen.query_one("#events", DataTable)
        await wait_for(pilot, lambda: events.row_count >= 2)
        console = Console(width=150, record=True, file=io.StringIO())
        console.print(screen.query_one("#facts", Static).content)
        facts = console.export_text()
        assert run.name in facts and "budget $5.00" in facts and "training" in facts
        assert "outputs/ in the workdir: home when the command ends, and every 10m00s while it runs" in facts
        assert "HF_TOKEN" in facts and "secret-value" not in facts  # env names only
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.live.runs[run.id].status.value == "terminated")
        await wait_for(pilot, lambda: any("terminated" in str(events.get_row_at(i)[1])
                                          for i in range(events.row_count)))
        await pilot.press("escape")
        assert app.screen is dash


async def test_quit_keeping_the_control_plane_in_the_background_then_attach(tmp_path, monkeypatch):
    import os
    import signal

    import httpx

    from podtui.app import BACKGROUND, serve_in_background
    from podtui.models import LaunchSpec


    port = free_port()
    monkeypatch.setenv("PODTUI_CONFIG_FILE", str(tmp_path / "none.toml"))
    settings = make_settings(tmp_path, port=port)
    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        run = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], command="sleep 120"))
        await wait_for(pilot, lambda: run.id in app.live.runs and app.live.runs[run.id].status.is_live)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("b")
        await wait_for(pilot, lambda: not app.is_running, timeout=30)
    assert app.return_value == BACKGROUND
    assert serve_in_background(settings) == 0  # what `podtui` does after the app returns BACKGROUND
    try:
        token = (settings.data_dir / "admin_token").read_text().strip()
        async with httpx.AsyncClient(base_url=settings.local_url, trust_env=False,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            for _ in range(100):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            runs = (await http.get("/api/v1/runs")).json()
            assert [r["status"] for r in runs] == ["training"] or runs[0]["status"] in ("booting", "downloading")
            again = PodtuiApp(make_settings(tmp_path, port=port))  # the next podtui attaches to it
            async with again.run_test(size=(160, 45)) as pilot:
                await wait_for(pilot, lambda: again.client is not None and run.id in again.live.runs)
                assert not again.embedded
            r = await http.post(f"/api/v1/runs/{run.id}/terminate")
            assert r.status_code == 200
        out = (settings.data_dir / "serve.log").read_text()
        assert "podtui control plane on" in out
    finally:
        os.kill(int((settings.data_dir / "serve.pid").read_text()), signal.SIGTERM)


async def test_a_theme_change_recolours_statuses_and_the_chart(settings):
    from podtui.feed import MetricsAdded, RunChanged
    from podtui.models import LaunchSpec, MetricPoint, Run, RunStatus
    from podtui.widgets.palette import theme_colour
    from podtui.widgets.runs_table import RunsTable

    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        run = Run(id="theme00001", name="themed", provider="local", status=RunStatus.failed,
                  spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true"), dataset_id="d",
                  created_at=time.time())
        app.take_entry(RunChanged(run=run))
        app.take_entry(MetricsAdded(run_id=run.id, points=[
            MetricPoint(name="train_loss", step=s, value=1 / s, ts=time.time()) for s in range(1, 30)]))
        for step in (10, 20, 29):  # the run's changes that reports of train_loss make (its last_loss)
            app.take_entry(RunChanged(run=run.model_copy(update={"last_step": step, "last_loss": 1 / step})))
        table = app.dashboard.query_one(RunsTable)
        chart = app.dashboard.query_one(LossChart)
        await wait_for(pilot, lambda: table.row_count == 1 and "train_loss" in chart.series)

        def looks():
            status = table.get_cell(run.id, "status")
            return str(status.style), chart._colours

        app.theme = "textual-dark"
        await pilot.pause(0.3)
        before = looks()
        assert before[0] == f"bold {theme_colour(app, 'text-error')}"
        # a run that logs only train_loss still gets a trend
        assert app.live.sparks[run.id] and str(table.get_cell(run.id, "trend")).strip()
        app.theme = "gruvbox"
        await wait_for(pilot, lambda: looks() != before)
        assert looks()[0] == f"bold {theme_colour(app, 'text-error')}"


async def test_the_palettes_quit_asks_when_pods_still_run(settings):
    from podtui.feed import RunChanged
    from podtui.models import LaunchSpec, Run, RunStatus

    app = PodtuiApp(settings)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        app.take_entry(RunChanged(run=Run(id="live000001", name="live", provider="local", status=RunStatus.training,
                                          spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true"),
                                          dataset_id="d", created_at=time.time())))
        await app.action_quit()  # what the command palette's "Quit" runs
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("escape")


async def test_the_launch_forms_errors_name_its_fields_in_words(settings):
    """What a new user saw: `max_runtime_s: Value error, ...`, `budget_usd: Input should be greater than or equal
    to 0`, `name: String should match pattern '^[A-Za-z0-9._-]*$'`."""
    from textual.widgets import Input, Static

    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_the_launch_form(app, pilot)
        form = app.screen
        form.query_one("#max_runtime", Input).value = "banana"
        form.query_one("#budget", Input).value = "-3"
        form.query_one("#name", Input).value = "bad name"
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        shown = str(form.query_one("#error", Static).content)
        assert "max runtime: 'banana' is not a duration" in shown
        assert "budget $: must be at least 0" in shown
        assert "name: must be letters, digits" in shown
        assert "_s:" not in shown and "_usd" not in shown and "pattern" not in shown and "Value error" not in shown
        assert isinstance(app.screen, LaunchScreen) and not app.live.runs  # nothing launched


async def test_the_launch_form_sets_the_outputs_folder_and_their_sync(settings):
    """Bringing the model home was only configurable from the CLI (--outputs, --sync-outputs)."""
    from textual.widgets import Input, Static

    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_the_launch_form(app, pilot)
        form = app.screen
        assert app.focused is form.query_one("#dataset")  # the first field (was the form's scroll box)
        assert all(form.query_one(f).disabled for f in ("#image", "#cloud_type", "#pricing"))  # RunPod's only
        assert form.query_one("#outputs", Input).value == "outputs"  # the default, shown
        form.query_one("#outputs", Input).value = "/abs"
        form.query_one("#sync_outputs", Input).value = "soon"
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        error = form.query_one("#error", Static)
        shown = str(error.content)
        assert "outputs folder:" in shown and "sync outputs every: 'soon' is not a duration" in shown
        await pilot.pause(0.2)
        box = form.query_one(".box").content_region  # the errors are in view, not below the fold (at 45 rows)
        assert box.y <= error.region.y and error.region.bottom <= box.bottom, (box, error.region)
        assert not app.live.runs
        form.query_one("#outputs", Input).value = "checkpoints"
        form.query_one("#sync_outputs", Input).value = "10m"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        run = next(iter(app.live.runs.values()))
        assert (run.spec.outputs, run.spec.sync_outputs_s) == ("checkpoints", 600)
        assert run.spec.dataset == "demo"  # by name (the run's facts showed the id's hash)
        await app.client.terminate(run.id)


async def test_a_server_that_is_not_a_url_is_a_notification(settings):
    app = PodtuiApp(settings, server="notaurl")
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: any("is not a control plane's URL" in str(n.message)
                                          for n in app._notifications), timeout=10)
        assert app.client is None


async def test_the_runs_table_shows_every_column_of_a_runpod_run_at_160_columns(settings):
    """A RunPod GPU type ("NVIDIA GeForce RTX 4090") and a long run name pushed the time column out of sight."""
    from podtui.feed import RunChanged
    from podtui.models import LaunchSpec, Run, RunStatus
    from podtui.widgets.runs_table import RunsTable

    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        run = Run(id="wide000001", name="llama-finetune-lora-r16-lr2e-4-warmup", provider="runpod",
                  status=RunStatus.training, gpu_type="NVIDIA GeForce RTX 4090", price_per_hour=0.69,
                  spec=LaunchSpec(dataset="demo", gpu_types=["NVIDIA GeForce RTX 4090"], command="true"),
                  dataset_id="d", created_at=time.time() - 3725, started_at=time.time() - 3725, last_step=123456,
                  last_loss=0.012345)
        app.take_entry(RunChanged(run=run))
        table = app.dashboard.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.pause(0.2)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        shown = [str(column.label) for column in table.columns.values()]
        assert shown == ["name", "gpu", "use", "status", "step", "loss", "spent", "time"]  # provider, $/h, trend went
        assert [str(cell) for cell in table.get_row(run.id)] == [
            "llama-finetune-lora-r16…", "RTX 4090", "-", "training", "123456", "0.01235", "0.71", "1h02m"]
        await pilot.resize_terminal(80, 24)  # the time column was cut ("1m" of "1m02s"): the loss gives way (the
        # chart beside shows it) before the name falls under 12 cells ("nante…" told no run apart)
        await wait_for(pilot, lambda: [str(c.label) for c in table.columns.values()]
                       == ["name", "status", "spent", "time"])
        await pilot.pause(0.2)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert [str(cell) for cell in table.get_row(run.id)][-2:] == ["0.71", "1h02m"]
        assert str(table.get_row(run.id)[0]).endswith("…") and len(str(table.get_row(run.id)[0])) >= 12
        await pilot.resize_terminal(220, 45)  # room for every column again
        await wait_for(pilot, lambda: len(table.columns) == 11)
        assert table.virtual_size.width <= table.scrollable_content_region.width


async def test_compare_overlays_the_first_run_on_the_next_one_and_c_again_clears(settings):
    """`c` drew the run over itself until another was selected, and `c` after a comparison started a new one."""
    from podtui.models import LaunchSpec
    from podtui.widgets.runs_table import RunsTable

    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        a = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], name="run-a"))
        b = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], name="run-b"))
        await wait_for(pilot, lambda: all(r in app.live.runs and (app.live.runs[r].last_step or 0) >= 3
                                          for r in (a.id, b.id)))
        dash, chart, table = app.dashboard, app.dashboard.query_one(LossChart), app.dashboard.query_one(RunsTable)
        table.move_to(a.id)
        await wait_for(pilot, lambda: dash.selected == a.id and "loss" in chart.series)
        await pilot.press("c")
        await pilot.pause(0.3)
        assert chart.compare == {} and chart.compare_name == ""  # not over itself
        table.move_to(b.id)
        await wait_for(pilot, lambda: dash.selected == b.id and chart.compare_name == "run-a"
                       and "loss" in chart.compare)
        await pilot.press("c")
        await pilot.pause(0.3)
        assert chart.compare == {} and dash.panel.compare_id is None  # cleared, not a comparison of run-b with itself
        commands = {c.title: c.callback for c in app.get_system_commands(dash)}
        assert commands["run: open"] == dash.action_open_run  # it was zoom's
        assert commands["run: zoom"] == dash.action_zoom and commands["run: compare"] == dash.panel.action_compare
        for run in (a, b):
            await app.client.terminate(run.id)


async def test_a_first_start_says_how_to_launch_a_run(settings):
    """The first dashboard was an empty table and "waiting for metrics…", with no word of `n`."""
    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        chart = app.dashboard.query_one(LossChart)
        await wait_for(pilot, lambda: "Press n to launch one" in chart.draw(60, 10).plain)
        assert "on this machine (free)" in chart.draw(120, 10).plain  # the local provider: no RunPod key here


async def test_a_narrow_key_line_keeps_quit_and_help(settings):
    """At 80 columns the hints were cut before "q Quit ? Help"."""
    from podtui.widgets.key_hints import KeyHints

    app = PodtuiApp(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        hints = app.dashboard.query_one(KeyHints)
        line = hints.render().plain
        assert "q Quit" in line and "? Help" in line and ": Commands" in line and len(line) <= 80
        assert "n New run" in line
        await pilot.resize_terminal(200, 24)
        await pilot.pause(0.2)
        assert "c Compare" in hints.render().plain  # room for all again


async def test_a_remapped_key_works_and_help_shows_it(tmp_path):
    """Help read the classes' bindings, so a key remapped in config.toml still showed its old key there."""
    from textual.widgets import Static

    from podtui.screens.help import HelpScreen

    app = PodtuiApp(make_settings(tmp_path, keymap={"run.terminate": "ctrl+x"}))
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        rows = app.screen.query(Static)[1].content.columns  # the grid: keys, what they do, binding ids
        keys = dict(zip(rows[2].cells, rows[0].cells, strict=True))
        assert keys["run.terminate"] == "ctrl+x" and keys["run.kill"] == "ctrl+k"
        await pilot.press("escape")
        from podtui.feed import RunChanged
        from podtui.models import LaunchSpec, Run, RunStatus

        run = Run(id="remap00001", name="remapped", provider="local", status=RunStatus.training, dataset_id="d",
                  spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true"), created_at=time.time())
        app.take_entry(RunChanged(run=run))
        await wait_for(pilot, lambda: app.dashboard.selected == run.id)
        await pilot.press("ctrl+x")  # the remapped key asks to terminate
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")


async def test_a_two_node_run_from_the_form_shows_its_nodes_and_ends_with_both(settings):
    """--nodes in the form: the runs table says nodes x GPUs, the run detail each node, ctrl+d ends them all."""
    import io

    from rich.console import Console
    from textual.widgets import DataTable, Input, Static

    from podtui.screens.run_detail import RunDetailScreen

    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_the_launch_form(app, pilot)
        app.screen.query_one("#nodes", Input).value = "2"
        app.screen.query_one("#command", Input).value = "echo node $NODE_RANK of $NUM_NODES; sleep 120"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen))
        dash = app.dashboard
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        run_id = next(iter(app.live.runs))
        await wait_for(pilot, lambda: len(app.live.runs[run_id].nodes) == 2
                       and all(n.pod_id for n in app.live.runs[run_id].nodes)
                       and app.live.runs[run_id].status.value == "training", timeout=60)
        table = dash.query_one("#runs", DataTable)  # (the table redraws on its own beat)
        await wait_for(pilot, lambda: "2x1 local" in [str(c) for c in table.get_row_at(0)])
        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        console = Console(width=150, record=True, file=io.StringIO())
        console.print(app.screen.query_one("#facts", Static).content)
        facts = console.export_text()
        assert "2 nodes x 1 local (2 GPUs)" in facts
        nodes = app.live.runs[run_id].nodes
        assert f"node 0  {nodes[0].pod_id}" in facts and f"node 1  {nodes[1].pod_id}" in facts
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.live.runs[run_id].status.value == "terminated", timeout=60)
        pods = settings.data_dir / "pods"
        for node in nodes:
            pid = json.loads((pods / node.pod_id / "pod.json").read_text())["pid"]
            await wait_for(pilot, lambda pid=pid: not group_alive(pid), timeout=30)
