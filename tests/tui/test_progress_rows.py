"""A run's live progress rows: one row in the log view that updates in place, and the run detail's note on
how its metrics were read."""

import io
import time

from rich.console import Console
from textual.app import App, ComposeResult

from podtui.models import LaunchSpec, Run, RunStatus
from podtui.screens.run_detail import run_facts
from podtui.widgets.log_view import Line, LogView


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LogView(id="logs")


async def test_a_progress_row_is_replaced_in_place_and_stays_last():
    app = LogApp()
    async with app.run_test(size=(100, 20)) as pilot:
        view = app.query_one(LogView)
        view.add([Line(0, 0.0, "starting")])
        for n in range(1, 50):
            view.set_live([f"Epoch 1: {n:3d}/100 [00:01<00:01, loss={1 / n:.3f}]"])
            view.flush()
        await pilot.pause()
        assert view.lines == ["starting", "Epoch 1:  49/100 [00:01<00:01, loss=0.020]"]
        view.add([Line(1, 0.0, "a warning")])
        view.flush()
        assert view.lines == ["starting", "a warning", "Epoch 1:  49/100 [00:01<00:01, loss=0.020]"]
        view.set_live([])
        view.add([Line(2, 0.0, "Epoch 1: 100/100 [00:02<00:00, loss=0.010]")])
        view.flush()
        assert view.lines == ["starting", "a warning", "Epoch 1: 100/100 [00:02<00:00, loss=0.010]"]
        view.set_live(["Epoch 2: 1/100"])
        view.filter_text = "warning"
        assert view.lines == ["a warning"]
        view.filter_text = ""
        assert view.lines[-1] == "Epoch 2: 1/100"


def test_run_detail_says_how_the_metrics_were_read():
    spec = LaunchSpec(dataset="demo", gpu_types=["local"], metrics="auto", metrics_ranks="all")
    run = Run(id="r1", name="n", provider="local", status=RunStatus.training, spec=spec, dataset_id="d",
              created_at=time.time(), metrics_source="tqdm postfix, step from the bar's counter")
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(run_facts(App(), run, time.time()))
    text = console.export_text()
    assert "tqdm postfix, step from the bar's counter  (--metrics auto, --metrics-ranks all)" in text


async def test_the_view_keeps_following_while_a_live_row_is_replaced():
    """Taking the live row off moves the end; the view must still follow the new lines (it stuck mid-way)."""
    app = LogApp()
    async with app.run_test(size=(100, 12)) as pilot:
        view = app.query_one(LogView)
        for n in range(60):
            view.add([Line(n, 0.0, f"step={n}")])
            view.set_live([f"Epoch 1: {n}/100"])
            view.flush()
            await pilot.pause()
            assert view.is_vertical_scroll_end, n
        assert view.lines[-1] == "Epoch 1: 59/100"
        view.scroll_home(animate=False)  # a person scrolled up: new lines do not pull the view down
        await pilot.pause()
        view.add([Line(60, 0.0, "step=60")])
        view.flush()
        await pilot.pause()
        assert view.scroll_y == 0


async def test_the_view_keeps_following_when_it_gets_shorter():
    """A row mounted above the log (the dataset download bar) shortens it: it must stay at the end (it stuck)."""
    from textual.widgets import Static

    app = LogApp()
    async with app.run_test(size=(100, 16)) as pilot:
        view = app.query_one(LogView)
        view.add([Line(n, 0.0, f"step={n}") for n in range(40)])
        view.flush()
        await pilot.pause()
        assert view.is_vertical_scroll_end
        await app.screen.mount(Static("dataset ▇▇▇▇\n\n\n"), before=view)
        await pilot.pause()
        for n in range(40, 45):
            view.add([Line(n, 0.0, f"step={n}")])
            view.flush()
            await pilot.pause()
        assert view.is_vertical_scroll_end
