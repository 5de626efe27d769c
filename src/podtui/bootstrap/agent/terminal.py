"""Output as a terminal shows it: one stream's bytes drawn on per-rank rows (a bar redrawn with \\r, \\b or cursor
moves is one live row), and the lines that leave the rows for the log."""

from __future__ import annotations

import codecs
import re

from .patterns import KEEP, _bar_key, shorten

# -- output as a terminal shows it ----------------------------------------------------------------------
# Progress bars redraw one line with \r, Keras with \b, nested tqdm bars with cursor moves. What is stored
# and parsed is what a person would read on the screen: a row that is still being redrawn is "live" (sent as
# it stands, a few times a second), and it becomes a log line once, when the program has left it.

MAX_ROWS = 8  # rows a program may still redraw (nested bars); older ones scroll into the log
MAX_ROW = 64 * 1024  # a row that grows past this without a line end keeps its head and end (see `shorten`)
SETTLE_S = 2.0  # a progress row the cursor has left, untouched this long, is finished
_TOKEN = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[^\[\]]|"
                    r"([\r\n\b])|[\x00-\x07\x0b-\x1f\x7f]+|([^\x00-\x08\x0a-\x1f\x7f]+)")
_CONTROL = re.compile(r"[\x00-\x0c\x0e-\x1f\x7f]")  # any control character but \r
_PARTIAL_ESCAPE = re.compile(r"\x1b(?:\[[0-9;?]*|\][^\x07\x1b]*|)$")
_RANK_PREFIX = re.compile(r"^(?:\[(?:rank|default)(\d{1,5})\]:|\s{0,3}(\d{1,4}): )")
_PARTIAL_RANK = re.compile(r"\[(?:r(?:a(?:n(?:k\d{0,5}\]?)?)?)?|d(?:e(?:f(?:a(?:u(?:l(?:t\d{0,5}\]?)?)?)?)?)?)?)?$")
_OTHER_RANK = re.compile(r"\[(?:rank|default)\d{1,5}\]:")
_MAYBE_PREFIX = re.compile(r"^(?:\[(?:r(?:a(?:n(?:k\d{0,5}\]?)?)?)?|d(?:e(?:f(?:a(?:u(?:l(?:t\d{0,5}\]?)?)?)?)?)?)?)?"
                           r"|\s{0,3}\d{0,4}:?)$")


class Terminal:
    """One output stream (of one rank) as a terminal draws it: the rows a program may still redraw, and the
    lines that have left them for the log (`done`)."""

    def __init__(self, rank: int | None = None, done: list | None = None) -> None:
        self.rank = rank
        self.prefix = ""  # the launcher's prefix of this rank's lines, put back on them in the log
        self.done = [] if done is None else done  # (text, was_progress, rank, prefix), shared by a stream's screens
        self.rows = [""]
        self.progress = [False]  # the row was drawn over (\r, \b, cursor moves): a progress line
        self.touched = [0.0]
        self.row = self.col = 0
        self.cleared: set = set()  # rows blanked since their last parse (tqdm clears a bar to print beside it)
        self.cut: dict = {}  # row: bytes cut from the middle of a row that grew past MAX_ROW
        self.changed: set = set()
        self.held: tuple | None = None  # (text, bar key, time) of a bar drawn a line at a time
        self.returned = False  # a \r since the last line end
        self.drawn: list = []  # drawings of the held bar since the last take (each was a line: all count)

    def feed(self, text: str, now: float) -> None:
        if not _CONTROL.search(text):  # only \r: a bar redrawn, maybe hundreds of times in this read
            drawings = text.split("\r")
            last = drawings[-1]
            if len(drawings) > 2 and len(last) >= max(map(len, drawings)):
                # The last drawing covers every one before it: a terminal shows it over the row as it was.
                self.feed(drawings[0] + "\r", now)
                if any(map(str.isspace, drawings[1:-1])):
                    self.cleared.add(self.row)
                self.col = 0
                self.write(last, now)
                return
        for m in _TOKEN.finditer(text):
            plain, control = m.group(4), m.group(3)
            if plain is not None:
                self.write(plain, now)
            elif control == "\n":
                self.newline(now)
            elif control == "\r":
                if self.rows[self.row] and self.rows[self.row].isspace():
                    self.cleared.add(self.row)
                    self.changed.add(self.row)
                self.col = 0
                self.returned = True
            elif control == "\b":
                self.col = max(0, self.col - 1)
            elif m.group(2) is not None:
                self.csi(m.group(1), m.group(2), now)

    def write(self, text: str, now: float) -> None:
        r, col = self.row, self.col
        line = self.rows[r]
        if col > len(line):
            line += " " * (col - len(line))
        elif col < len(line) or self.returned:  # drawn over, or drawn after a \r: a progress line
            self.progress[r] = True
        self.rows[r] = line[:col] + text + line[col + len(text):]
        self.col = col + len(text)
        self.touched[r] = now
        self.changed.add(r)
        if len(self.rows[r]) > MAX_ROW:
            self.squeeze(r)

    def squeeze(self, r: int) -> None:
        """A row past MAX_ROW keeps its first and last KEEP characters: one log line, however long it gets."""
        row = self.rows[r]
        middle = row[KEEP:len(row) - KEEP]
        self.cut[r] = self.cut.get(r, 0) + len(middle.encode("utf-8", "replace"))
        self.rows[r] = row[:KEEP] + row[len(row) - KEEP:]
        if self.col > KEEP:
            self.col = max(KEEP, self.col - len(middle))

    def newline(self, now: float) -> None:
        r = self.row
        self.returned = False
        if not self.progress[r]:
            key = _bar_key(self.rows[r])
            if key is not None and self.row == len(self.rows) - 1:
                # A bar drawn a line at a time (a launcher that turns \r into \n): each drawing replaces
                # the last drawing of the same bar, as on the terminal of whoever ran it.
                if self.held is not None and self.held[1] != key:
                    self.done.append((self.held[0], True, self.rank, self.prefix))
                self.held = (self.rows[r].rstrip(), key, now)
                self.drawn.append(self.held[0])
                self.rows[r], self.col = "", 0
                self.cut.pop(r, None)
                return
            if self.held is not None:
                if not self.rows[r]:  # the empty piece before a drawing's \r, turned into a line
                    self.col = 0
                    return
                self.done.append((self.held[0], True, self.rank, self.prefix))
                self.held = None
            # a plain line: it and every row above it are the screen's history now
            self.commit(r + 1)
            r = -1
        self.row, self.col = r + 1, 0
        if self.row == len(self.rows):
            self.rows.append("")
            self.progress.append(False)
            self.touched.append(now)
        if len(self.rows) > MAX_ROWS:
            self.commit(len(self.rows) - MAX_ROWS)

    def csi(self, args: str, final: str, now: float) -> None:
        try:
            n = int(args) if args.isdigit() else 1
        except ValueError:
            n = 1
        r = self.row
        if final == "A":
            self.row = max(0, r - n)
            self.progress[r] = self.progress[self.row] = True
        elif final == "B":
            for _ in range(n):
                if self.row == len(self.rows) - 1:
                    break
                self.row += 1
        elif final == "K":
            line = self.rows[r]
            mode = args or "0"
            self.rows[r] = line[:self.col] if mode == "0" else "" if mode == "2" else " " * self.col + line[self.col:]
            if len(self.rows[r]) <= KEEP:
                self.cut.pop(r, None)
            self.progress[r] = True
            self.touched[r] = now
            self.changed.add(r)
            if not self.rows[r].strip():
                self.cleared.add(r)
        elif final == "G":
            self.col = max(0, n - 1)
        elif final == "C":
            self.col += n
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "J" and args == "2":  # the screen was cleared: what it showed is history
            self.commit(len(self.rows))
            self.rows, self.progress, self.touched, self.row, self.col = [""], [False], [now], 0, 0
            self.cut = {}

    def commit(self, count: int) -> None:
        """The first `count` rows leave the screen for the log (a cleared progress row leaves nothing)."""
        for i in range(count):
            text, progress = self.rows[i].rstrip(), self.progress[i]
            if text or not progress:
                self.done.append((shorten(text, self.cut.get(i, 0)), progress, self.rank, self.prefix))
        del self.rows[:count], self.progress[:count], self.touched[:count]
        if self.cut:
            self.cut = {r - count: n for r, n in self.cut.items() if r >= count}
        if not self.rows:
            self.rows, self.progress, self.touched = [""], [False], [0.0]
        self.row = max(0, self.row - count)
        self.changed = {r - count for r in self.changed if r >= count}
        self.cleared = {r - count for r in self.cleared if r >= count}

    def settle(self, now: float) -> None:
        """Progress rows above the cursor that nobody redraws any more are finished bars: into the log."""
        top = 0
        while top < self.row and self.progress[top] and now - self.touched[top] >= SETTLE_S:
            top += 1
        if top:
            self.commit(top)
        if self.held is not None and now - self.held[2] >= SETTLE_S:
            self.done.append((self.held[0], True, self.rank, self.prefix))
            self.held = None

    def close(self) -> None:
        """The stream ended: every row with something on it is a log line."""
        if self.held is not None:
            self.done.append((self.held[0], True, self.rank, self.prefix))
            self.held = None
        last = len(self.rows)
        if self.row == last - 1 and not self.rows[-1] and not self.progress[-1]:
            last -= 1  # the empty row after a final line end
        self.commit(last)

    def live(self) -> list:
        """The rows being drawn now (progress bars, a line not ended yet), as they stand."""
        held = [] if self.held is None else [self.held[0]]
        return held + [row.rstrip() for row in self.rows if row.strip()]


class Output:
    """A stream as the agent reads it: bytes in (any chunking), per-rank screens, lines and states out.
    Launchers prefix each line with its rank (`[rank1]:`, `[default1]:`, `1: `): each rank draws on its own
    screen, so their bars do not overwrite each other."""

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.carry = ""
        self.screens: dict = {}
        self.done: list = []
        self.rank: int | None = None  # of the line being written; None until its start has been read
        self.line_start = ""

    def screen(self, rank: int | None) -> Terminal:
        if rank not in self.screens:
            self.screens[rank] = Terminal(rank, self.done)
        return self.screens[rank]

    def feed(self, data: bytes, now: float, final: bool = False) -> None:
        text = self.carry + self.decoder.decode(data, final)
        self.carry = ""
        # An escape sequence, or another rank's prefix, cut by the end of this read: wait for its end.
        partial = None if final else _PARTIAL_ESCAPE.search(text) or _PARTIAL_RANK.search(text, max(0, len(text) - 12))
        if partial and len(text) - partial.start() < 256:  # an escape that never ends is drawn as text
            text, self.carry = text[:partial.start()], text[partial.start():]
        while text:
            if self.rank is None:
                start = self.line_start + text
                end = start.find("\n")
                head = start if end < 0 else start[:end]
                if end < 0 and not final and len(head) < 16 and _MAYBE_PREFIX.match(head):
                    self.line_start, text = start, ""  # could still become a rank prefix: wait for more
                    break
                self.line_start = ""
                m = _RANK_PREFIX.match(start)
                self.rank = -1 if m is None else int(m.group(1) or m.group(2))
                if m is not None:
                    self.screen(self.rank).prefix = m.group(0)
                    start = start[m.end():]
                text = start
            end = text.find("\n")
            other = _OTHER_RANK.search(text, 0, len(text) if end < 0 else end)
            if other is not None:  # another rank's line starts before this one ended: this one has ended
                self.screen(self.rank).feed(text[:other.start()] + "\n", now)
                text, self.rank = text[other.start():], None
                continue
            piece, text = (text, "") if end < 0 else (text[:end + 1], text[end + 1:])
            self.screen(self.rank).feed(piece, now)
            if end >= 0:
                self.rank = None
        if final and self.line_start:
            self.rank, start, self.line_start = -1, self.line_start, ""
            self.screen(-1).feed(start, now)

    def settle(self, now: float) -> None:
        for screen in self.screens.values():
            screen.settle(now)

    def close(self, now: float) -> None:
        self.feed(b"", now, final=True)
        for screen in self.screens.values():
            screen.close()

    def take(self) -> tuple:
        """(lines, states) since the last take: lines are (log text, text, rank, was_progress); states are
        (text, rank, key, after_clear) of progress rows drawn since, as they stand now."""
        lines = [(prefix + text if prefix and text else text, text, rank, progress)
                 for text, progress, rank, prefix in self.done]
        self.done.clear()
        states = []
        for rank, screen in self.screens.items():
            states += [(text, rank, (rank, -1), False) for text in screen.drawn]
            screen.drawn = []
            for r in sorted(screen.changed):
                if screen.progress[r] and screen.rows[r].strip():
                    states.append((screen.rows[r].rstrip(), rank, (rank, r), r in screen.cleared))
                    screen.cleared.discard(r)
                elif screen.progress[r]:
                    states.append(("", rank, (rank, r), True))  # a bar cleared from its row (and not drawn yet)
            screen.changed = set()
        return lines, states

    def live(self) -> list:
        return [screen.prefix + row for screen in self.screens.values() for row in screen.live()]
