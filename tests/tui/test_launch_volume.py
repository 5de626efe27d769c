"""The launch form offers the provider's volumes; a run launched with one mounts it."""

import time

from textual.widgets import Select

from podtui.app import PodtuiApp
from podtui.screens.launch import LaunchScreen
from tests.support import make_settings

from .test_app import open_the_launch_form, wait_for


def app_with_a_local_volume(tmp_path, name):
    """The app, on a data dir holding a local volume `name` (its cache folder made), and its settings."""
    settings = make_settings(tmp_path)
    (settings.data_dir / "volumes" / name / "podtui" / "datasets").mkdir(parents=True)
    return PodtuiApp(settings), settings


async def form_offering(app, pilot, volume) -> LaunchScreen:
    """The launch form, open, once it offers the volume."""
    await open_the_launch_form(app, pilot)
    form = app.screen
    assert isinstance(form, LaunchScreen)
    await wait_for(pilot, lambda: [v.name for v in form.volumes] == [volume])
    return form


async def ended(app, pilot, run_id) -> str:
    """The run's status once it has ended (a minute at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not app.live.runs[run_id].status.is_final:
        await pilot.pause(0.2)
    return app.live.runs[run_id].status.value


async def test_the_form_launches_on_a_local_volume(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "5")
    app, settings = app_with_a_local_volume(tmp_path, "cache")
    async with app.run_test(size=(160, 45)) as pilot:
        form = await form_offering(app, pilot, "cache")
        form.query_one("#volume", Select).value = "cache"
        assert form.spec().volume == "cache"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen))
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        run = next(iter(app.live.runs.values()))
        assert run.spec.volume == "cache"
        assert await ended(app, pilot, run.id) == "succeeded"
        cached = list((settings.data_dir / "volumes" / "cache" / "podtui" / "datasets").iterdir())
        assert len(cached) == 1 and (cached[0] / ".complete").is_file()


async def test_the_form_says_what_a_large_local_dataset_costs_through_the_uplink(tmp_path, monkeypatch):
    from textual.widgets import Static

    from podtui.server import uplink

    monkeypatch.setattr(uplink, "LARGE_BYTES", 1024 * 1024)
    settings = make_settings(tmp_path)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (2 * 1024 * 1024))
    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_the_launch_form(app, pilot)
        await app.client.add_dataset(str(big), "big")
        form = app.screen
        form.datasets = await app.client.datasets()
        form.query_one("#dataset", Select).set_options([(d.name, d.id) for d in form.datasets])
        form.query_one("#dataset", Select).value = next(d.id for d in form.datasets if d.name == "big")
        form.query_one("#provider", Select).value = "runpod"
        preview = form.query_one("#preview", Static)
        await wait_for(pilot, lambda: "uplink" in str(preview.render()))
        assert "podtui datasets push big --volume VOL" in str(preview.render())
        form.query_one("#provider", Select).value = "local"  # a local pod: nothing goes through the uplink
        await wait_for(pilot, lambda: "uplink" not in str(preview.render()))


async def test_the_forms_outputs_on_the_volume_needs_a_volume_and_reaches_the_spec(tmp_path, monkeypatch):
    from textual.widgets import Checkbox, Static

    monkeypatch.setenv("DEMO_STEPS", "5")
    app, _ = app_with_a_local_volume(tmp_path, "keep")
    async with app.run_test(size=(160, 45)) as pilot:
        form = await form_offering(app, pilot, "keep")
        form.query_one("#outputs_on_volume", Checkbox).value = True
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert isinstance(app.screen, LaunchScreen)  # refused here, nothing launched
        assert "choose the volume first" in str(form.query_one("#error", Static).render())
        form.query_one("#volume", Select).value = "keep"
        assert form.spec().outputs_on_volume is True and form.spec().volume == "keep"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        run = next(iter(app.live.runs.values()))
        assert run.spec.outputs_on_volume is True
        assert await ended(app, pilot, run.id) == "succeeded"
