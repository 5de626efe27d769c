"""The log view on its own, in a real Textual app."""

from textual.app import App, ComposeResult

from podtui.widgets.log_view import Line, LogView


class Logs(App[None]):
    def compose(self) -> ComposeResult:
        yield LogView()


def lines(n: int) -> list[Line]:
    return [Line(i, float(i), f"step={i}") for i in range(n)]


async def test_another_run_shows_its_last_lines_while_following():
    """Moving from a short log to a long one showed the long one from the middle ("step=13 … step=30")."""
    app = Logs()
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(LogView)
        view.reset(lines(30))
        await pilot.pause(0.2)
        view.reset(lines(240))
        await pilot.pause(0.2)
        assert view.follow and view.is_vertical_scroll_end and view.max_scroll_y > 0
        view.follow = False  # paused: a run shown from its start stays where it is put
        view.scroll_home(animate=False)
        view.reset(lines(300))
        await pilot.pause(0.2)
        assert not view.is_vertical_scroll_end
