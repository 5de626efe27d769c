"""The dashboard's start: its first frame shows the runs the store holds, read straight from SQLite, before the
control plane starts; nothing on the way to that frame loads aiohttp, httpx or pydantic (the settings are validated
right after it)."""

import asyncio
import subprocess
import sys
import textwrap
import time

from podtui.config import Settings
from podtui.live import LiveRuns
from podtui.models import LIVE_STATUSES, DownloadProgress, LaunchSpec, Run, RunStatus
from podtui.store import Store
from podtui.stored_runs import LIVE, read_runs
from tests.support import make_settings

FIRST_FRAME = textwrap.dedent("""
    import sys
    from pathlib import Path
    from podtui.app import PodtuiApp
    from podtui.settings_sources import StartSettings
    from podtui.widgets.runs_table import RunsTable

    class FirstFrame(PodtuiApp):
        def on_mount(self):  # not the app's: no control plane at all
            self.call_after_refresh(self.done)

        def done(self):
            table = self.dashboard.query_one(RunsTable)
            rows = [str(table.get_row(key)[0]) for key in table.rows]
            loaded = sorted(m for m in ("aiohttp", "httpx", "pydantic", "podtui.models", "podtui.config",
                                        "podtui.client", "podtui.server", "numpy") if m in sys.modules)
            print(rows, loaded, table.cursor_row)
            self.exit(0)

    FirstFrame(StartSettings.read(data_dir=Path(sys.argv[1]), port=0)).run(headless=True)
""")


async def stored(settings: Settings, *runs: Run) -> None:
    store = await Store.open(settings.store_path)
    for run in runs:
        await store.create_run(run, "0" * 64)
    await store.close()


def a_run(run_id: str, status: RunStatus, created_at: float, **fields) -> Run:
    return Run(id=run_id, name=run_id[:3], provider="local", status=status, dataset_id="d",
               spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true"), created_at=created_at, **fields)


def test_the_first_frame_shows_the_stored_runs_without_the_server_stack(tmp_path):
    settings = make_settings(tmp_path)
    now = time.time()
    asyncio.run(stored(settings, a_run("old0000001", RunStatus.succeeded, now - 100),
                       a_run("new0000001", RunStatus.training, now - 10)))
    out = subprocess.run([sys.executable, "-c", FIRST_FRAME, str(settings.data_dir)], capture_output=True, text=True,
                         timeout=120, env={"PODTUI_CONFIG_FILE": str(tmp_path / "none.toml"), "PATH": "/usr/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['new', 'old'] [] 0"


async def test_stored_runs_read_as_the_store_holds_them_and_give_way_to_the_control_planes(tmp_path):
    settings = make_settings(tmp_path)
    assert read_runs(settings.store_path) == []  # no store yet: a first start
    now = time.time()
    downloading = a_run("dl00000001", RunStatus.pending, now - 5)
    await stored(settings, downloading, a_run("ok00000001", RunStatus.succeeded, now - 50))
    store = await Store.open(settings.store_path)
    await store.update_run("ok00000001", price_per_hour=2.0, started_at=now - 3600, gpu_type="RTX 4090")
    await store.finish_run("ok00000001", RunStatus.succeeded, "done", exit_code=0)
    await store.close()
    runs = {r.id: r for r in read_runs(settings.store_path)}
    assert runs["dl00000001"].status.is_live and not runs["ok00000001"].status.is_live
    assert runs["ok00000001"].gpu_type == "RTX 4090" and runs["ok00000001"].cost_at(now) > 1.9
    live = LiveRuns()
    live.load_stored(runs.values())
    assert [r.id for r in live.newest_first()] == ["dl00000001", "ok00000001"] and len(live.live()) == 1
    assert live.get("dl00000001") is None  # only the control plane's runs are acted on
    live.put(downloading.model_copy(update={"status": RunStatus.downloading,
                                            "progress": DownloadProgress(bytes_done=1, bytes_total=2)}))
    assert [r.status.value for r in live.newest_first()] == ["downloading", "succeeded"]
    live.load([])
    assert [r.id for r in live.newest_first()] == ["dl00000001"]


def test_the_stored_live_statuses_are_the_models():
    assert {s.value for s in LIVE_STATUSES} == LIVE


async def test_before_the_control_plane_answers_its_stored_live_runs_are_guarded(tmp_path, monkeypatch):
    """Quitting while the control plane started left its live pods unmentioned (the runs came only from it)."""
    from podtui.app import PodtuiApp
    from podtui.screens.quit import QuitScreen
    from podtui.widgets.runs_table import RunsTable
    from tests.tui.test_app import wait_for

    settings = make_settings(tmp_path)
    await stored(settings, a_run("live000001", RunStatus.training, time.time()))
    monkeypatch.setattr(PodtuiApp, "connect", lambda self: None)  # the control plane has not answered yet
    app = PodtuiApp(settings)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.dashboard.query_one(RunsTable).row_count == 1)
        assert app.dashboard.selected == "live000001"
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: any("still starting" in str(n.message) for n in app._notifications))
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("t")
        await wait_for(pilot, lambda: any("podtui stays open" in str(n.message) for n in app._notifications))
        assert app.is_running and not isinstance(app.screen, QuitScreen)


async def test_a_setting_that_is_wrong_is_said_right_after_the_first_frame_and_podtui_exits_1(tmp_path, monkeypatch,
                                                                                             capfd):
    """Validated after the first frame (pydantic is not on the way to it): podtui exits as the verbs do."""
    from podtui.app import PodtuiApp
    from podtui.settings_sources import StartSettings

    monkeypatch.setenv("PODTUI_CONFIG_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PODTUI_PORT", "eighty")
    app = PodtuiApp(StartSettings.read(data_dir=tmp_path / "data"))
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(100):
            if app._exit:
                break
            await pilot.pause(0.05)
    assert app.return_code == 1 and app.plane is None
    said = capfd.readouterr().err  # printed at exit, as `podtui` prints it
    assert said.startswith("Error: podtui settings are invalid") and "PODTUI_PORT (environment): port:" in said, said
    assert "Correct each value where it is set" in said, said  # and what to do about it
