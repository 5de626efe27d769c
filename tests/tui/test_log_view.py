"""The log view on its own, in a real Textual app."""

from textual.app import App, ComposeResult

from podtui.widgets.log_view import Line, LogView, parse_filter


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


async def test_a_runs_nodes_are_tagged_filtered_and_each_followed_apart():
    """Nodes number their lines in their own ranges: node 0's next line after node 1's is no resend, and no
    gap; each line says its node, and `node:1` keeps node 1's."""
    from podtui.models import NODE_SEQ_STRIDE

    app = Logs()
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(LogView)
        view.tagged = True
        view.reset([Line(0, 1.0, "a0"), Line(NODE_SEQ_STRIDE, 1.5, "b0")])
        view.add([Line(1, 2.0, "a1"), Line(NODE_SEQ_STRIDE + 1, 2.5, "b1"), Line(1, 2.6, "a1 again")])
        view.flush()
        await pilot.pause(0.1)
        shown = list(view.lines)
        assert shown == ["[node 0] a0", "[node 1] b0", "[node 0] a1", "[node 1] b1"]
        assert view.missing == 0
        view.filter_text = "node:1"
        await pilot.pause(0.1)
        assert list(view.lines) == ["[node 1] b0", "[node 1] b1"]
        view.filter_text = "node:0 a1"
        await pilot.pause(0.1)
        assert list(view.lines) == ["[node 0] a1"]


def test_a_filter_is_parsed_into_its_node_and_its_text():
    assert parse_filter("Loss") == (None, "loss")
    assert parse_filter(" node:1  Eval") == (1, "eval")
    assert parse_filter("NODE:12") == (12, "")
    assert parse_filter("node:x loss") == (None, "node:x loss")


async def test_timestamps_are_not_added_to_a_line_that_says_its_own_time():
    app = Logs()
    async with app.run_test(size=(60, 20)):
        view = app.query_one(LogView)
        view.show_timestamps = True
        stamped = view._format(Line(1, 0.0, "2026-12-07T11:50:17Z [podtui] training command finished"))
        assert stamped == "2026-12-07T11:50:17Z [podtui] training command finished"  # it showed two times
        plain = view._format(Line(2, 0.0, "step=1 loss=0.5"))
        assert plain.endswith(" step=1 loss=0.5") and plain[:8].count(":") == 2
        assert view._format(Line(None, 0.0, "» created: run created")) != "» created: run created"
