"""Starting a second run shows each of its lines and events once (a line showed twice when a second run
started)."""

from collections import Counter

from podtui.app import PodtuiApp
from podtui.screens.launch import LaunchScreen
from podtui.widgets.log_view import LogView
from podtui.widgets.offers_table import OffersTable
from tests.support import make_settings
from tests.tui.test_app import wait_for


async def launch_from_the_form(app, pilot, command):
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen)
                   and app.screen.query_one(OffersTable).picked == ["local"])
    app.screen.query_one("#command").value = command
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen))


async def test_a_second_run_shows_its_lines_and_events_once(tmp_path):
    app = PodtuiApp(make_settings(tmp_path))
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        await launch_from_the_form(app, pilot, "for i in $(seq 1 30); do echo first-$i; sleep 0.05; done; sleep 30")
        await wait_for(pilot, lambda: len(app.live.runs) == 1)
        await pilot.pause(0.5)
        await launch_from_the_form(app, pilot, "for i in $(seq 1 20); do echo second-$i; sleep 0.02; done; sleep 30")
        await wait_for(pilot, lambda: len(app.live.runs) == 2)
        second = max(app.live.runs.values(), key=lambda r: r.created_at)
        view = app.dashboard.query_one(LogView)
        await wait_for(pilot, lambda: app.dashboard.selected == second.id
                       and any(line.text == "second-20" for line in view.history))
        await pilot.pause(1.0)
        shown = Counter(line.text for line in view.history)
        twice = {text: n for text, n in shown.items() if n > 1}
        assert not twice, twice
        assert not any(line.text.startswith("first-") for line in view.history)
        for run in app.live.runs.values():
            await app.client.terminate(run.id)


async def test_an_event_replayed_by_the_feed_shows_once(tmp_path):
    """The feed replays from its last entry when the subscription changes (a run newly selected): an event the
    first page already brought came again."""
    from podtui.feed import RunEventAdded

    app = PodtuiApp(make_settings(tmp_path))
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.dashboard is not None and app.dashboard._client is not None)
        await launch_from_the_form(app, pilot, "echo hello; sleep 30")
        run = next(iter(app.live.runs.values()))
        view = app.dashboard.query_one(LogView)
        await wait_for(pilot, lambda: any(line.text == "hello" for line in view.history))
        events = await app.client.run_events(run.id)
        app.dashboard.panel.load_selected(run.id)  # the first page again, then the feed's copy of each event
        await pilot.pause(0.5)
        for event in events:
            app.take_entry(RunEventAdded(event=event))
        await pilot.pause(0.5)
        notes = Counter(line.text for line in view.history if line.seq is None)
        assert notes and all(n == 1 for n in notes.values()), notes
        await app.client.terminate(run.id)
