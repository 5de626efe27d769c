"""The launch form offers the provider's volumes; a run launched with one mounts it."""

import time

from textual.widgets import Select

from podtui.app import PodtuiApp
from podtui.screens.launch import LaunchScreen
from tests.support import make_settings

from .test_app import open_the_launch_form, wait_for


async def test_the_form_launches_on_a_local_volume(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_STEPS", "5")
    settings = make_settings(tmp_path)
    (settings.data_dir / "volumes" / "cache" / "podtui" / "datasets").mkdir(parents=True)
    app = PodtuiApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_the_launch_form(app, pilot)
        form = app.screen
        assert isinstance(form, LaunchScreen)
        volume = form.query_one("#volume", Select)
        await wait_for(pilot, lambda: [v.name for v in form.volumes] == ["cache"])
        volume.value = "cache"
        assert form.spec().volume == "cache"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen))
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        run = next(iter(app.live.runs.values()))
        assert run.spec.volume == "cache"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not app.live.runs[run.id].status.is_final:
            await pilot.pause(0.2)
        assert app.live.runs[run.id].status.value == "succeeded"
        cached = list((settings.data_dir / "volumes" / "cache" / "podtui" / "datasets").iterdir())
        assert len(cached) == 1 and (cached[0] / ".complete").is_file()
