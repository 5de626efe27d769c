"""What the agent stores of a stream is what a terminal would show: redraws replace, lines stay."""

from __future__ import annotations

from podtui.bootstrap.agent.patterns import KEEP, MAX_LINE, shorten
from podtui.bootstrap.agent.terminal import Output, Terminal


def shown(*chunks: str) -> tuple[list[str], list[str]]:
    """(log lines, live rows) after the chunks and before the stream ends."""
    out = Output()
    for i, chunk in enumerate(chunks):
        out.feed(chunk.encode(), float(i))
    lines, _ = out.take()
    return [text for text, *_ in lines], out.live()


def closed(*chunks: str) -> list[str]:
    out = Output()
    for chunk in chunks:
        out.feed(chunk.encode(), 0.0)
    out.close(0.0)
    return [text for text, *_ in out.take()[0]]


def test_plain_lines_are_stored_at_once():
    assert shown("one\ntwo\nthr") == (["one", "two"], ["thr"])


def test_carriage_return_redraws_and_only_the_last_drawing_is_stored():
    lines, live = shown("\r 10%|#  | 1/10", "\r 20%|## | 2/10", "\r100%|###| 10/10")
    assert lines == [] and live == ["100%|###| 10/10"]
    assert closed("\r 10%|#  | 1/10", "\r100%|###| 10/10\n", "done\n") == ["100%|###| 10/10", "done"]


def test_a_shorter_drawing_leaves_the_tail_a_terminal_would_show():
    assert closed("abcdef\rxy\n") == ["xycdef"]


def test_backspaces_and_colours_are_what_a_person_reads():
    keras = ("\r\x1b[1m 1/32\x1b[0m \x1b[37m━━━━\x1b[0m - loss: 0.9" + "\b" * 40
             + "\r\x1b[1m32/32\x1b[0m ━━━━ - loss: 0.5\n")
    assert closed(keras) == ["32/32 ━━━━ - loss: 0.5"]


def test_erase_line_and_cursor_up_for_nested_bars():
    # tqdm draws a second bar one row down ("\n" ... ESC[A) and clears it when it leaves (leave=False).
    out = closed("\rmain 1/9", "\n\rinner 1/3\x1b[A", "\rmain 2/9", "\n\r         \x1b[A", "\rmain 9/9\n", "end\n")
    assert out == ["main 9/9", "end"]


def test_a_row_the_program_left_is_stored_once_it_settles():
    screen = Terminal()
    screen.feed("\rbar 1/2", 0.0)
    screen.feed("\rbar 2/2\n", 1.0)
    screen.feed("\rnext 1/5", 1.0)
    screen.settle(2.0)
    assert screen.done == []
    screen.settle(3.5)
    assert screen.done == [("bar 2/2", True, None, "")] and screen.live() == ["next 1/5"]


def test_escape_and_utf8_cut_between_reads():
    out = Output()
    data = "\x1b[32m█ok\x1b[0m\n".encode()
    for i in range(len(data)):
        out.feed(data[i:i + 1], 0.0)
    assert [text for text, *_ in out.take()[0]] == ["█ok"]


def test_rank_prefixes_are_stripped_for_reading_and_kept_in_the_log():
    out = Output()
    out.feed(b"[rank1]:step=1 loss=2\n[rank0]:step=1 loss=1\n0: hello\n", 0.0)
    lines = out.take()[0]
    assert [(text, content, rank) for text, content, rank, _ in lines] == [
        ("[rank1]:step=1 loss=2", "step=1 loss=2", 1), ("[rank0]:step=1 loss=1", "step=1 loss=1", 0),
        ("0: hello", "hello", 0)]


def test_a_bar_redrawn_a_line_at_a_time_is_stored_once():
    # A launcher that reads its workers line by line turns each \r into a line end.
    lines = closed("[default0]:Epoch 0:  10%|#  | 1/10 [00:00<00:01, 9.0it/s, loss=1]\n",
                   "[default0]:\n[default0]:Epoch 0: 100%|###| 10/10 [00:01<00:00, 9.0it/s, loss=0.1]\n",
                   "[default0]:done\n")
    assert lines == ["[default0]:Epoch 0: 100%|###| 10/10 [00:01<00:00, 9.0it/s, loss=0.1]", "[default0]:done"]


def test_a_line_without_end_that_grows_forever_stays_one_bounded_row():
    out = Output()
    for i in range(100):  # 6.4 MB, never ended
        out.feed(b"x" * 65536, float(i))
    assert out.take()[0] == []
    assert len(out.screens[-1].rows[0]) <= 64 * 1024
    out.close(100.0)
    lines = [text for text, *_ in out.take()[0]]
    assert lines == ["x" * KEEP + "…[6384 KiB cut]…" + "x" * KEEP]  # (6553600 - 2 x KEEP) / 1024


def test_one_huge_printed_line_is_one_stored_line_with_its_head_and_end():
    # print("X" * 5_000_000) read as a pipe hands it over: 64 KiB at a time
    data = ("X" * 5_000_000 + "\n").encode()
    out = Output()
    for i in range(0, len(data), 65536):
        out.feed(data[i:i + 65536], 0.0)
    lines = [text for text, *_ in out.take()[0]]
    assert lines == ["X" * KEEP + "…[4867 KiB cut]…" + "X" * KEEP]
    assert len(lines[0]) <= MAX_LINE


def test_a_200_kb_line_keeps_its_end_and_leaves_no_empty_line():
    head, tail = "start " + "a" * 100, "b" * 100 + " the end"
    lines = closed(head + "m" * 200_000 + tail + "\n", "next\n")
    assert len(lines) == 2 and lines[1] == "next"
    assert lines[0].startswith(head) and lines[0].endswith(tail) and "KiB cut]…" in lines[0]
    assert len(lines[0]) <= MAX_LINE


def test_a_line_at_the_limit_is_stored_whole_and_one_past_it_is_cut_in_the_middle():
    assert shorten("é" * MAX_LINE) == "é" * MAX_LINE
    cut = shorten("é" * (MAX_LINE + 1))
    assert cut == "é" * KEEP + "…[1 KiB cut]…" + "é" * KEEP  # 129 characters of 2 bytes each, about 0.25 KiB
    assert closed("y" * 20_000 + "\n") == ["y" * KEEP + "…[4 KiB cut]…" + "y" * KEEP]


def test_an_escape_that_never_ends_does_not_hold_the_stream():
    out = Output()
    out.feed(b"\x1b]0;title" + b"x" * 300, 0.0)
    out.feed(b"\nnext\n", 0.0)
    lines = [text for text, *_ in out.take()[0]]
    assert lines[-1] == "next" and lines[0].endswith("x" * 10)
