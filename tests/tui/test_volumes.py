"""The volumes view (`v`): every volume, local and RunPod (the fake REST v2), its size, type and monthly price, the
runs using it and the datasets cached on it; `d` deletes one after asking, and a volume a pod uses is kept (the
control plane's refusal shown as it says it). Snapshots at 80x24 and 160x45."""

import asyncio
import io
import threading
import time

import pytest
from rich.console import Console
from textual.widgets import DataTable, Static

from podtui.app import PodtuiApp
from podtui.models import LaunchSpec
from podtui.screens.confirm import ConfirmScreen
from podtui.screens.volumes import VolumesScreen
from podtui.server.app import ensure_demo_dataset
from podtui.store import Store
from tests.fakes.runpod_v2 import FakeRunPodV2
from tests.support import make_settings
from tests.tui.test_snapshots import until

from .test_app import wait_for

SIZES = {"80x24": (80, 24), "160x45": (160, 45)}
RUNPOD_VOLUME = {"id": "vol7k2m9qx", "name": "hub-cache", "size": 200, "dataCenter": "EU-RO-1", "type": "STANDARD"}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake RunPod API on a loop of its own (snapshot tests run the app's loop themselves), with one network
    volume."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    api = FakeRunPodV2(tmp_path / "fake")
    asyncio.run_coroutine_threadsafe(api.start(), loop).result(10)
    api.network_volumes[RUNPOD_VOLUME["id"]] = dict(RUNPOD_VOLUME)
    yield api
    asyncio.run_coroutine_threadsafe(api.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


async def cache_demo_on(settings, volume: str) -> None:
    """The demo dataset, put whole on a local volume by an earlier run (its folder and the store's record)."""
    store = await Store.open(settings.store_path)
    await ensure_demo_dataset(settings, store)
    demo = (await store.find_dataset("demo")).dataset
    key = f"file-{demo.sha256[:16]}"
    folder = settings.data_dir / "volumes" / volume / "podtui" / "datasets" / key
    folder.mkdir(parents=True)
    (folder / "data.bin").write_bytes(b"x" * 300_000)
    (folder / ".complete").write_text("{}")
    await store.record_volume_dataset("local", volume, key, demo.id)
    await store.close()


@pytest.fixture
def app(tmp_path, fake):
    settings = make_settings(tmp_path, runpod_api_key="test-key", runpod_api_url=fake.url,
                             runpod_pod_api_url=fake.url, provider="local")
    asyncio.run(cache_demo_on(settings, "cache"))
    (settings.data_dir / "volumes" / "scratch" / "podtui" / "datasets").mkdir(parents=True)
    return PodtuiApp(settings)


async def open_volumes(pilot) -> VolumesScreen:
    app = pilot.app
    await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
    await pilot.press("v")
    await wait_for(pilot, lambda: isinstance(app.screen, VolumesScreen) and app.screen.loaded)
    await pilot.pause(0.2)
    return app.screen


def rows(screen: VolumesScreen) -> list[list[str]]:
    table = screen.query_one("#volumes", DataTable)
    return [[str(cell) for cell in table.get_row(key)] for key in table.rows]


def facts(screen: VolumesScreen) -> str:
    """The selected volume's facts as text."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(screen.query_one("#facts", Static).content)
    return console.export_text()


async def test_the_view_lists_local_and_runpod_volumes_with_what_is_cached(app, tmp_path):
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_volumes(pilot)
        assert rows(screen) == [
            ["cache", "local", "-", "293.0 KiB used", "-", "-", "-", "demo"],
            ["scratch", "local", "-", "0 B used", "-", "-", "-", "-"],
            ["hub-cache", "runpod", "EU-RO-1", "200 GB", "STANDARD", "$14.00", "-", "-"],
        ]
        said = facts(screen)
        assert "local volume cache" in said and str(tmp_path / "data" / "volumes" / "cache") in said
        assert "demo" in said and "file" in said  # the cached dataset: its name, kind and size
        await pilot.press("down", "down")
        said = facts(screen)
        assert "RunPod network volume hub-cache (vol7k2m9qx)" in said and "EU-RO-1" in said
        assert "$14.00 a month" in said and "datasets push NAME --volume hub-cache" in said
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.dashboard)


async def test_d_deletes_a_volume_after_asking(app, fake):
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_volumes(pilot)
        folder = app.settings.data_dir / "volumes" / "scratch"
        await pilot.press("down", "d")  # scratch
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "scratch" in str(app.screen.query_one("#question", Static).render())
        await pilot.press("n")  # kept
        await wait_for(pilot, lambda: app.screen is screen)
        assert folder.is_dir()
        await pilot.press("delete")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: [r[0] for r in rows(screen)] == ["cache", "hub-cache"])
        assert not folder.exists()
        await pilot.press("down", "d")  # the RunPod volume: its bill named in the question
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "$14.00/month billing ends" in str(app.screen.query_one("#question", Static).render())
        await pilot.press("y")
        await wait_for(pilot, lambda: [r[0] for r in rows(screen)] == ["cache"])
        assert fake.network_volumes == {}


async def test_a_volume_a_run_uses_is_kept_and_the_refusal_shown(app, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "100000")
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.client is not None and app.dashboard._client is not None)
        run = await app.client.launch(LaunchSpec(dataset="demo", gpu_types=["local"], provider="local",
                                                 volume="cache"))
        await wait_for(pilot, lambda: app.live.get(run.id) is not None
                       and app.live.get(run.id).status.value == "training")
        screen = await open_volumes(pilot)
        await wait_for(pilot, lambda: rows(screen)[0][6] == run.name)  # in use by
        notes = len(app._notifications)
        await pilot.press("d")
        await wait_for(pilot, lambda: len(app._notifications) > notes)
        assert not isinstance(app.screen, ConfirmScreen)
        assert "in use by run(s) " + run.id in list(app._notifications)[-1].message
        assert f"{run.name} ({run.id})" in facts(screen)
        # the list went stale (the run began after it was read): the control plane refuses, its words shown
        screen.volumes[0] = screen.volumes[0].model_copy(update={"in_use_by": []})
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        notes = len(app._notifications)
        await pilot.press("y")
        await wait_for(pilot, lambda: len(app._notifications) > notes)
        told = list(app._notifications)[-1]
        assert told.severity == "error" and "terminate them first" in told.message and run.id in told.message
        assert (app.settings.data_dir / "volumes" / "cache").is_dir()
        await app.client.terminate(run.id)
        await wait_for(pilot, lambda: app.live.get(run.id).status.is_final)
        await wait_for(pilot, lambda: rows(screen)[0][6] == "-")  # the feed's end of the run: listed again


@pytest.mark.parametrize("size", SIZES)
def test_volumes_view(snap_compare, app, tmp_path, size):
    async def open_it(pilot):
        screen = await open_volumes(pilot)
        # the local folders' paths are the test's temporary ones: shown as fixed ones
        def fixed(model, *fields):
            return model.model_copy(update={f: getattr(model, f).replace(str(tmp_path), "/home/me")
                                            for f in fields if getattr(model, f)})

        screen.show([fixed(v, "path") for v in screen.volumes],
                    {n: fixed(d, "path", "source") for n, d in screen.datasets.items()})
        await until(pilot, lambda: "/home/me" in facts(screen))
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZES[size], run_before=open_it)


async def test_without_volumes_the_view_says_how_to_make_one(tmp_path):
    async with PodtuiApp(make_settings(tmp_path)).run_test(size=(80, 24)) as pilot:
        screen = await open_volumes(pilot)
        assert rows(screen) == []
        assert "podtui volumes create NAME --provider local" in facts(screen)


async def test_runpod_not_answering_leaves_the_local_volumes_shown(tmp_path):
    from podtui.server.runs import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = make_settings(tmp_path, runpod_api_key="test-key", runpod_api_url=dead, runpod_pod_api_url=dead)
    (settings.data_dir / "volumes" / "scratch").mkdir(parents=True)
    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_volumes(pilot)
        assert [r[0] for r in rows(screen)] == ["scratch"]
        told = [n for n in app._notifications if n.severity == "error"]
        assert told and "RunPod" in told[-1].message, [n.message for n in app._notifications]


async def test_deleting_a_volume_names_the_run_outputs_on_it(app):
    """The question named the cached datasets but not the outputs a run wrote to the volume (--outputs-on-volume),
    which are nowhere else."""
    from podtui.feed import RunChanged
    from podtui.models import Run, RunStatus

    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_volumes(pilot)
        run = Run(id="out0000001", name="kept-outputs", provider="local", status=RunStatus.succeeded,
                  dataset_id="d", created_at=time.time(),
                  spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true", volume="scratch",
                                  outputs_on_volume=True))
        app.take_entry(RunChanged(run=run))
        await pilot.press("down", "d")  # scratch
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = str(app.screen.query_one("#question", Static).render())
        assert "outputs of 1 run(s)" in question and "podtui outputs out0000001 --to DIR" in question
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
