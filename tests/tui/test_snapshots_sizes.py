"""80x24 is a first-class size: snapshots at 80x24 and 160x45 of the dashboard, the launch form, the run detail,
the quit dialog and help (the data and clocks are fixed as in test_snapshots.py); and the runs table keeps names
of at least 12 cells at 80 columns, giving up other columns first, and shows the provider at 160."""

import asyncio

import pytest
from rich.cells import cell_len

from podtui.app import PodtuiApp
from podtui.models import LaunchSpec, Run, RunStatus
from podtui.screens.launch import LaunchScreen
from podtui.screens.quit import QuitScreen
from podtui.server.app import ensure_demo_dataset
from podtui.store import Store
from podtui.widgets.runs_table import RunsTable
from tests.support import make_settings
from tests.tui.test_snapshots import T0, open_launch, open_run, populate, pressing, ready, until

SIZES = {"80x24": (80, 24), "160x45": (160, 45)}


@pytest.fixture
def app(tmp_path):
    settings = make_settings(tmp_path, public_url="https://pods.example.com")
    asyncio.run(populate(settings))
    return PodtuiApp(settings)


@pytest.mark.parametrize("size", SIZES)
def test_dashboard(snap_compare, app, size):
    assert snap_compare(app, terminal_size=SIZES[size], run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_launch_form(snap_compare, app, size):
    assert snap_compare(app, terminal_size=SIZES[size], run_before=open_launch)


@pytest.mark.parametrize("size", SIZES)
def test_run_detail(snap_compare, app, size):
    assert snap_compare(app, terminal_size=SIZES[size], run_before=open_run)


@pytest.mark.parametrize("size", SIZES)
def test_quit_dialog(snap_compare, app, size):
    async def ask(pilot):  # as `q` asks with one live RunPod pod
        await ready(pilot)
        pilot.app.push_screen(QuitScreen(1, True, True, 1800))
        await until(pilot, lambda: isinstance(pilot.app.screen, QuitScreen))
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=SIZES[size], run_before=ask)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, app, size):
    assert snap_compare(app, terminal_size=SIZES[size], run_before=pressing("question_mark"))


LONG_NAMES = ["nanteaux-wave-12", "demo-lr-sweep-03", "bert-finetune-large", "demo-snap-2"]


async def many_runs(settings) -> None:
    store = await Store.open(settings.store_path)
    await ensure_demo_dataset(settings, store)
    demo = (await store.find_dataset("demo")).dataset
    for k, name in enumerate(LONG_NAMES):
        run = Run(id=f"many00000{k}", name=name, provider="local", status=RunStatus.pending,
                  spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true"),
                  dataset_id=demo.id, created_at=T0 + k)
        await store.create_run(run, f"{k}" * 64)
        await store.update_run(run.id, pod_id=f"p{k}", gpu_type="local", price_per_hour=0.0, started_at=T0 + k)
        await store.finish_run(run.id, RunStatus.succeeded, "done", exit_code=0)
    await store.close()


def shown_names(table: RunsTable) -> list[str]:
    return [str(table.get_row(key)[0]) for key in table.rows]


async def test_names_keep_12_cells_at_80_columns(tmp_path):
    settings = make_settings(tmp_path)
    await many_runs(settings)
    app = PodtuiApp(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.dashboard.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == len(LONG_NAMES))
        await pilot.pause(0.5)
        columns = [k.value for k in table.columns]
        assert "status" in columns and "spent" in columns, columns
        for name in shown_names(table):
            assert cell_len(name) >= 12 or name in LONG_NAMES, shown_names(table)


async def test_the_provider_column_stays_at_160_columns(app):
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.dashboard.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 1)
        await pilot.pause(0.5)
        assert "provider" in [k.value for k in table.columns]


@pytest.mark.parametrize(("width", "stacked"), [(80, True), (160, False)])
async def test_the_launch_form_stacks_its_fields_below_100_columns(app, width, stacked):
    """At 80 columns the selects wrapped ("secur"/"e") and labels were cut ("budget $ (empty: no lim")."""
    async with app.run_test(size=(width, 40)) as pilot:
        await until(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await pilot.pause(0.3)
        form = app.screen
        cloud, budget = form.query_one("#cloud_type"), form.query_one("#budget")
        if stacked:
            assert cloud.region.width >= 60 and budget.region.x == cloud.region.x
            assert budget.region.y > cloud.region.y
        else:
            assert cloud.region.width < 30 and cloud.region.y == form.query_one("#connect").region.y
