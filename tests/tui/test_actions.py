"""The action table: the screens' bindings, the command palette, help and the [keymap] checks all come from it."""

import pytest

from podtui.actions import ACTIONS, BY_ID, in_scope, keymap_problems, palette_actions
from podtui.app import PodtuiApp, run_tui
from podtui.screens.confirm import ConfirmScreen
from podtui.screens.dashboard import Dashboard
from podtui.screens.help import HelpScreen
from podtui.screens.launch import LaunchScreen
from podtui.screens.quit import QuitScreen
from podtui.screens.run_detail import RunDetailScreen
from podtui.screens.volumes import VolumesScreen
from podtui.widgets.offers_table import OffersTable
from podtui.widgets.run_panel import RunPanel
from tests.support import make_settings

HOLDERS = {"app": PodtuiApp, "dashboard": Dashboard, "detail": RunDetailScreen, "launch": LaunchScreen,
           "offers": OffersTable, "help": HelpScreen, "quit": QuitScreen, "confirm": ConfirmScreen,
           "volumes": VolumesScreen}


def test_every_screens_bindings_are_the_tables_and_every_action_exists():
    assert len(BY_ID) == len(ACTIONS)  # ids are unique
    # the panel's keys are bound on the dashboard (they hold wherever its focus is) and run on its RunPanel
    assert [b.id for b in Dashboard.BINDINGS] == [a.id for a in in_scope("dashboard") + in_scope("panel")]
    for scope, holder in {**HOLDERS, "panel": RunPanel}.items():
        if scope not in ("dashboard", "panel"):
            assert [b.id for b in holder.BINDINGS] == [a.id for a in in_scope(scope)], scope
        for action in in_scope(scope):
            name = action.action.split("(")[0]
            target = PodtuiApp if name.startswith("app.") else holder
            assert hasattr(target, f"action_{name.removeprefix('app.')}"), (scope, action.id)
    for action in palette_actions():
        holder = {"dashboard": Dashboard, "panel": RunPanel}[action.scope]
        assert hasattr(holder, f"action_{action.action}")


@pytest.mark.parametrize(("keymap", "named"), [
    ({"run.new": "q"}, ["'run.new'", "takes q", "'app.quit' (Quit)"]),
    ({"app.help": "z"}, ["'app.help'", "takes z", "'run.zoom'"]),  # the app's keys hold on the dashboard
    ({"app.quit": "k"}, ["'app.quit'", "takes k", "'quit.keep'"]),  # ... and in the quit dialog
    ({"run.new": "x"}, ["'run.new'", "takes x", "owned by 'chart.x_axis'"]),
    ({"run.new": "m", "logs.focus": "m"}, ["'logs.focus'", "takes m", "set for 'run.new'"]),
    ({"run.nwe": "m"}, ["'run.nwe'", "no binding", "did you mean 'run.new'"]),
    ({"run.new": " "}, ["'run.new' no key"]),
])
def test_a_keymap_that_takes_anothers_key_or_names_no_binding_is_refused(keymap, named):
    problems = keymap_problems(keymap)
    assert len(problems) == 1, problems
    for words in named:
        assert words in problems[0]


def test_a_keymap_that_moves_keys_without_clashing_is_fine():
    # the same key on different screens is no clash: s stops from the dashboard and the run detail alike
    assert keymap_problems({"run.terminate": "ctrl+x", "detail.terminate": "ctrl+x", "run.new": "n,a"}) == []
    assert keymap_problems({"run.new": "x", "chart.x_axis": "n"}) == []  # two keys swapped
    assert keymap_problems({}) == []


def test_the_dashboard_does_not_start_with_a_keymap_that_takes_quit(tmp_path, monkeypatch, capsys):
    """`"run.new" = "q"` silently took over Quit: the key line showed "q New run" and nothing quit."""
    def started(self, *args, **kwargs):
        raise AssertionError("the dashboard started")

    monkeypatch.setattr(PodtuiApp, "run", started)
    assert run_tui(make_settings(tmp_path, keymap={"run.new": "q"}), None, None) == 2
    err = capsys.readouterr().err
    assert "'run.new'" in err and "'app.quit'" in err and "no-config.toml" in err


async def test_z_zooms_and_z_again_or_escape_comes_back(tmp_path):
    app = PodtuiApp(make_settings(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        dash = app.dashboard
        for back in ("z", "escape"):
            await pilot.press("z")
            await pilot.pause(0.1)
            assert dash.has_class("zoomed")
            await pilot.press(back)
            await pilot.pause(0.1)
            assert not dash.has_class("zoomed"), back
