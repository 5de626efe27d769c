"""The run detail's outputs: `o` asks the pod for them while it trains; the panel lists what is home."""

import io

from rich.console import Console
from textual.widgets import DataTable, Static

from podtui.app import PodtuiApp
from podtui.models import LaunchSpec
from podtui.screens.run_detail import RunDetailScreen
from tests.support import make_settings

from .test_app import wait_for


def text_of(widget: Static) -> str:
    console = Console(width=150, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


async def test_o_brings_the_outputs_home_and_the_detail_lists_them(tmp_path):
    settings = make_settings(tmp_path)
    app = PodtuiApp(settings)
    command = ("echo step-10 > $PODTUI_OUTPUT_DIR/checkpoint.json && while [ ! -e $HOME/go ]; do sleep 0.05; done && "
               "echo weights > $PODTUI_OUTPUT_DIR/model.json")
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        dash = app.dashboard
        run = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], command=command))
        await wait_for(pilot, lambda: run.id in app.live.runs and app.live.runs[run.id].status.value == "training")
        await wait_for(pilot, lambda: dash.query_one("#runs", DataTable).row_count == 1)
        dash.query_one("#runs").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        panel = app.screen.query_one("#outputs", Static)
        await pilot.press("o")
        await wait_for(pilot, lambda: "checkpoint.json" in text_of(panel))  # while the command still runs
        assert app.live.runs[run.id].status.value == "training"
        (settings.data_dir / "pods" / str(app.live.runs[run.id].pod_id) / "go").touch()
        await wait_for(pilot, lambda: "home" in text_of(panel) and "model.json" in text_of(panel))
        shown = text_of(panel)
        assert "outputs: 2 files" in shown and ", home" in shown
        await wait_for(pilot, lambda: app.screen._outputs_settled())  # a page read after the run ended
        asked = []
        outputs = app.client.outputs

        async def counted(run_id):
            asked.append(run_id)
            return await outputs(run_id)

        app.client.outputs = counted
        await pilot.pause(2.5)
        assert asked == []  # home after the end: nothing more to ask for (it asked every 2 s)
        await pilot.press("o")  # the command has ended: a clear word, not a traceback
        await pilot.pause(0.5)
        assert any("no running command" in str(n.message) for n in app._notifications)
