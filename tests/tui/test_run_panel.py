"""The dashboard's run panel: the selected run's download bar, chart and logs, kept live from the feed."""

import time

from podtui.app import PodtuiApp
from podtui.feed import MetricsAdded, RunChanged
from podtui.models import DownloadProgress, LaunchSpec, MetricPoint, Run, RunStatus
from podtui.widgets.loss_chart import LossChart
from podtui.widgets.runs_table import RunsTable
from tests.support import make_settings
from tests.tui.test_app import wait_for


def a_run(run_id: str, status: RunStatus, **fields) -> Run:
    return Run(id=run_id, name=run_id, provider="local", status=status, dataset_id="d",
               spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true"), created_at=time.time(), **fields)


async def test_moving_the_selection_during_a_download_keeps_one_progress_row(tmp_path):
    """The row was removed and mounted again as the selection moved: under load a second one was mounted before
    the first had gone (`DuplicateIds: 'progress-row'`, a dead TUI)."""
    from textual.widgets import ProgressBar

    app = PodtuiApp(make_settings(tmp_path))
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        dash = app.dashboard
        downloading = a_run("dl00000001", RunStatus.downloading, progress=DownloadProgress(bytes_done=1,
                                                                                           bytes_total=100))
        app.take_entry(RunChanged(run=a_run("tr00000001", RunStatus.training)))
        app.take_entry(RunChanged(run=downloading))
        table = dash.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        for n in range(60):  # the user runs up and down the table while the bytes come in
            table.move_to("dl00000001" if n % 2 else "tr00000001")
            dash.select("dl00000001" if n % 3 else "tr00000001")
            downloading.progress = DownloadProgress(bytes_done=n, bytes_total=100)
            app.take_entry(RunChanged(run=downloading.model_copy()))
            if n % 7 == 0:
                await pilot.pause()
        await pilot.pause(0.3)
        dash.select("dl00000001")
        await wait_for(pilot, lambda: dash.query_one("#progress", ProgressBar).percentage == 0.59)
        assert len(dash.query("#progress-row")) == 1 and dash.query_one("#progress-row").display
        dash.select("tr00000001")
        await wait_for(pilot, lambda: not dash.query_one("#progress-row").display)


async def test_the_panel_follows_its_runs_and_draws_the_feeds_points(tmp_path):
    """The panel's run and compared run are the ones the feed brings in full, and their points reach the chart."""
    app = PodtuiApp(make_settings(tmp_path))
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        dash = app.dashboard
        for run_id in ("aa00000001", "bb00000001"):
            app.take_entry(RunChanged(run=a_run(run_id, RunStatus.training)))
        await wait_for(pilot, lambda: dash.query_one(RunsTable).row_count == 2)
        dash.select("aa00000001")
        await pilot.press("c")
        dash.select("bb00000001")
        assert app.follow.runs == {"aa00000001", "bb00000001"}
        chart = dash.query_one(LossChart)
        for run_id, value in (("bb00000001", 0.5), ("aa00000001", 0.7), ("cc00000001", 0.9)):
            app.take_entry(MetricsAdded(run_id=run_id, points=[MetricPoint(name="loss", step=1, value=value,
                                                                           ts=time.time())]))
        await wait_for(pilot, lambda: "loss" in chart.series and "loss" in chart.compare)
        assert list(chart.series["loss"].values) == [0.5] and list(chart.compare["loss"].values) == [0.7]
        await pilot.press("c")
        await wait_for(pilot, lambda: app.follow.runs == {"bb00000001"} and not chart.compare)


async def test_a_runs_end_is_told_once_on_whichever_screen_is_open(tmp_path):
    """Run notifications are the app's now (they were the dashboard's): one each, also over the run detail."""
    from podtui.feed import RunEventAdded
    from podtui.models import RunEvent
    from podtui.screens.run_detail import RunDetailScreen

    app = PodtuiApp(make_settings(tmp_path))
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        app.take_entry(RunChanged(run=a_run("ff00000001", RunStatus.training)))
        await wait_for(pilot, lambda: app.dashboard.selected == "ff00000001")
        app.dashboard.action_open_run()  # the key's path is test_app's (a run the control plane holds)
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        app.take_entry(RunEventAdded(event=RunEvent(id=1, run_id="ff00000001", ts=time.time(), kind="failed",
                                                    message="exit code 2\nTraceback ...")))
        await pilot.pause(0.3)
        told = [str(n.message) for n in app._notifications if "failed" in str(n.message)]
        assert told == ["ff00000001 failed: exit code 2"]
