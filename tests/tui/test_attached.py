"""A dashboard attached to a `podtui serve` (--server) shows whether that control plane answers: unreachable since
when (the figures greyed), back live when it answers again; the launch form says it instead of loading forever."""

import asyncio

from textual.widgets import Select, Static

from podtui.app import PodtuiApp
from podtui.screens.launch import LaunchScreen
from podtui.widgets.loss_chart import LossChart
from tests.support import Plane, free_port, make_settings, start_plane
from tests.tui.test_app import wait_for


def status_of(app: PodtuiApp) -> str:
    assert app.dashboard is not None
    return str(app.dashboard.query_one("#status", Static).content)


async def serve_at(tmp_path, port: int) -> Plane:
    return await start_plane(make_settings(tmp_path / "server", port=port))


async def stop(plane: Plane) -> None:
    await plane.http.aclose()
    await plane.control.stop()


async def test_a_stopped_control_plane_is_said_and_greyed_then_live_again(tmp_path):
    port = free_port()
    plane = await serve_at(tmp_path, port)
    token = plane.control.admin_token
    app = PodtuiApp(make_settings(tmp_path / "client"), server=plane.url, token=token)
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            dash = app.dashboard
            await wait_for(pilot, lambda: dash._client is not None and "connecting" not in status_of(app))
            assert "unreachable" not in status_of(app)
            await stop(plane)
            await wait_for(pilot, lambda: "unreachable since" in status_of(app))
            assert status_of(app).startswith("⚠ control plane unreachable since ") and plane.url in status_of(app)
            assert "retrying" in status_of(app) and dash.has_class("stale")
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            await wait_for(pilot, lambda: form.query_one("#dataset", Select).prompt == "control plane unreachable")
            await pilot.press("ctrl+s")
            await pilot.pause(0.2)
            said = str(form.query_one("#error", Static).content)
            assert "cannot launch" in said and "No podtui control plane answers" in said
            assert "pick at least one GPU type" not in said

            plane = await serve_at(tmp_path, port)  # the same store, back on the same port
            run, _ = await plane.fake_run()  # made while the dashboard was away
            await wait_for(pilot, lambda: "unreachable" not in status_of(app))
            assert not dash.has_class("stale")
            await wait_for(pilot, lambda: run.id in app.live.runs)
            # the form loads by itself once the control plane answers
            await wait_for(pilot, lambda: form.query_one("#dataset", Select).value != Select.BLANK)
    finally:
        await stop(plane)


async def test_a_server_unreachable_at_start_is_said_not_no_runs_yet(tmp_path):
    port = free_port()
    seed = await serve_at(tmp_path, port)  # a store with a run, then the control plane stopped
    run, _ = await seed.fake_run()
    token = seed.control.admin_token
    await stop(seed)
    app = PodtuiApp(make_settings(tmp_path / "client"), server=f"http://127.0.0.1:{port}", token=token)
    plane = None
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(pilot, lambda: "unreachable since" in status_of(app))
            chart = app.dashboard.query_one(LossChart)
            await wait_for(pilot, lambda: "does not answer" in chart.idle_text)
            assert "No runs yet" not in chart.idle_text
            await asyncio.sleep(1.0)
            plane = await serve_at(tmp_path, port)
            await wait_for(pilot, lambda: run.id in app.live.runs)
            assert "unreachable" not in status_of(app)
    finally:
        if plane is not None:
            await stop(plane)


async def test_the_dashboard_reads_the_token_file_as_every_verb_does(tmp_path):
    """`podtui --server URL` without --token showed 'No runs yet' over a store of runs: it never read the token
    file that every CLI verb reads."""
    plane = await serve_at(tmp_path, free_port())
    try:
        run, _ = await plane.fake_run()
        settings = make_settings(tmp_path / "client")
        settings.data_dir.mkdir(parents=True)
        (settings.data_dir / "admin_token").write_text(plane.control.admin_token + "\n")
        app = PodtuiApp(settings, server=plane.url)
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(pilot, lambda: run.id in app.live.runs)
    finally:
        await stop(plane)


async def test_a_refused_token_names_where_it_came_from(tmp_path):
    plane = await serve_at(tmp_path, free_port())
    try:
        settings = make_settings(tmp_path / "client")
        settings.data_dir.mkdir(parents=True)
        token_file = settings.data_dir / "admin_token"
        token_file.write_text("not-this-planes-token\n")
        app = PodtuiApp(settings, server=plane.url)
        async with app.run_test(size=(160, 45)) as pilot:
            def named() -> bool:
                return any(f"the token file {token_file}" in str(n.message) for n in app._notifications)
            await wait_for(pilot, named)
            await wait_for(pilot, lambda: "refused this dashboard" in status_of(app))
            assert "No runs yet" not in app.dashboard.query_one(LossChart).idle_text
    finally:
        await stop(plane)


async def test_quitting_an_attached_dashboard_asks_its_runs_and_says_the_serve_goes_on(tmp_path):
    """After `q`, `k` an attached dashboard said "1 pod keeps running" with none (its view was stale), and it said
    nothing of the `podtui serve` left running."""
    from podtui.app import exit_note
    from podtui.models import RunStatus
    from podtui.screens.quit import QuitScreen

    plane = await serve_at(tmp_path, free_port())
    try:
        run, _ = await plane.fake_run()  # training, says the store
        app = PodtuiApp(make_settings(tmp_path / "client"), server=plane.url, token=plane.control.admin_token)
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(pilot, lambda: run.id in app.live.runs)
            await plane.store.finish_run(run.id, RunStatus.terminated, "ended while the view was stale")
            app.live.runs[run.id] = app.live.runs[run.id].model_copy(update={"status": RunStatus.training})
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running or isinstance(app.screen, QuitScreen))
            assert not isinstance(app.screen, QuitScreen)
        note = exit_note(app)
        assert app.left_running == 0 and note is not None and "pod" in note
        assert "keeps running" not in note.split("The control plane")[0]
        assert f"The control plane at {plane.url} keeps running" in note
        assert f"`podtui --server {plane.url}` attaches again" in note
    finally:
        await stop(plane)
