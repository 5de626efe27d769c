"""A run that ended without metrics says so in the chart (a failed run said "waiting for metrics…")."""

import time

from podtui.app import PodtuiApp
from podtui.models import LaunchSpec
from podtui.widgets.loss_chart import WAITING, LossChart
from tests.support import make_settings


async def test_a_failed_run_without_metrics_is_not_waiting(tmp_path):
    app = PodtuiApp(make_settings(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 60
        while (app.dashboard is None or app.dashboard._client is None) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        run = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], command="exit 3",
                                                 keep_alive_s=0))
        chart = app.dashboard.query_one(LossChart)
        while time.monotonic() < deadline:
            live = app.live.get(run.id)
            if live is not None and live.status.value == "failed" and chart.idle_text != WAITING:
                break
            await pilot.pause(0.1)
        assert app.live.get(run.id).status.value == "failed"
        assert app.dashboard.selected == run.id
        assert chart.idle_text == "No metrics: the run failed without printing any (its events and logs say why)."
        assert "waiting" not in chart.render().plain
