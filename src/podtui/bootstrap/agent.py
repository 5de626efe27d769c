#!/usr/bin/env python3
"""podtui pod agent: runs inside the pod with the Python standard library only (any image has it).

    python3 agent.py run -- bash start.sh

It runs the command, reads its stdout/stderr as a terminal would show them (a progress bar redrawn with \r or
\b is one live row, stored once when finished; escape codes are drawn, not kept), streams the lines as numbered
log lines, extracts metrics from what the command prints (JSON lines, `key=value` lines with a step, Hugging Face
Trainer dicts, tqdm/Lightning and Keras progress bars; launchers' rank prefixes stripped) and from an optional
metrics file, and posts them with a heartbeat to the control plane as soon as it has them and no report is in
flight (at most 20 reports a second, fewer when the control plane says it is busy; a heartbeat every
PODTUI_REPORT_INTERVAL_S when idle). When the control plane does not
answer it keeps everything (memory, then a spill file) and resends in order with backoff; the control plane
de-duplicates. When the command ends it reports `succeeded` or `failed` and ends the pod (after the keep-alive
window on success), so a failed run stops billing at once.

Environment: PODTUI_URL, PODTUI_RUN_ID, PODTUI_TOKEN (the run's ingest token), PODTUI_HOME (its folder),
PODTUI_KEEP_ALIVE_S, PODTUI_RUNPOD_API_URL (a RunPod pod ends itself with DELETE /v2/pods/$RUNPOD_POD_ID and its
own pod-scoped RUNPOD_API_KEY), PODTUI_TERMINATE_CMD (the fallback, or how another pod ends itself; empty = exit),
PODTUI_UNREACHABLE_LIMIT_S (while the command runs, default 12 h), PODTUI_UNDELIVERED_KEEP_S (after it ends, how
long undelivered reports keep the pod, default 30 min), PODTUI_MAX_RUNTIME_S and PODTUI_STALL_TIMEOUT_S (the pod
enforces them itself, and the deadline the control plane sends in its replies: the budget; PODTUI_LIMIT_GRACE_S
later than the control plane would), PODTUI_METRICS_FILE, PODTUI_METRICS (auto | json | off: what is read
from the output), PODTUI_METRICS_RANKS (0 | all), PODTUI_REPORT_INTERVAL_S, PODTUI_GRACE_S.

More than one pod (RunPod's cluster contract; `cluster_env`): the command gets MASTER_ADDR/PRIMARY_ADDR,
MASTER_PORT/PRIMARY_PORT, NODE_RANK, NUM_NODES, NUM_TRAINERS, WORLD_SIZE and PODTUI_TORCHRUN, from the pod's own
env where RunPod or the local provider set them, else single-node defaults (PODTUI_NODES, PODTUI_GPU_COUNT). A
node other than 0 numbers its log lines from NODE_RANK * NODE_SEQ_STRIDE, sends no metrics, and brings its
outputs home only with PODTUI_OUTPUTS_FROM=all (under node<k>/).

One file, longer than a module should be: pods fetch it (or get it in their env) as a single script.
"""

from __future__ import annotations

import ast
import codecs
import collections
import hashlib
import hmac
import http.server
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import typing
import urllib.error
import urllib.parse
import urllib.request

MAX_LINE = 16 * 1024
MAX_BATCH_ITEMS = 5000
MAX_BATCH_BYTES = 900 * 1024
MEMORY_ITEMS = 20000
SPILL_CHUNK = 5000
TAIL_LINES = 50
STEP_KEYS = ("step", "global_step", "iteration", "iter", "it")
MARKER = "##podtui "

NODE_SEQ_STRIDE = 10 ** 12
"""Node k's log lines are numbered from k * NODE_SEQ_STRIDE, so one run's nodes never share a number."""
DEFAULT_MASTER_PORT = "29500"


def _count_of(value: typing.Optional[str], default: int = 1) -> int:
    try:
        return max(1, int(value or default))
    except ValueError:
        return default


def cluster_env(env: typing.Mapping[str, str]) -> dict:
    """The torchrun contract for the command: what RunPod sets on a cluster's nodes (kept where set), else
    the single-node values, and PODTUI_TORCHRUN built from them (concrete values: `$PODTUI_TORCHRUN train.py`
    expands once, so it must not hold further `$NAMES`)."""
    out: dict = {}
    nodes = _count_of(env.get("NUM_NODES") or env.get("PODTUI_NODES"))
    trainers = _count_of(env.get("NUM_TRAINERS") or env.get("PODTUI_GPU_COUNT") or env.get("RUNPOD_GPU_COUNT"))
    addr = env.get("MASTER_ADDR") or env.get("PRIMARY_ADDR") or "127.0.0.1"
    port = env.get("MASTER_PORT") or env.get("PRIMARY_PORT") or DEFAULT_MASTER_PORT
    try:
        rank = str(max(0, int(env.get("NODE_RANK") or 0)))
    except ValueError:
        rank = "0"
    out.update(MASTER_ADDR=addr, PRIMARY_ADDR=env.get("PRIMARY_ADDR") or addr, MASTER_PORT=port,
               PRIMARY_PORT=env.get("PRIMARY_PORT") or port, NODE_RANK=rank, NUM_NODES=str(nodes),
               NUM_TRAINERS=str(trainers), WORLD_SIZE=env.get("WORLD_SIZE") or str(nodes * trainers))
    if nodes > 1 and env.get("PODTUI_CLUSTER") == "runpod" and not env.get("NCCL_SOCKET_IFNAME"):
        out["NCCL_SOCKET_IFNAME"] = "ens1"  # RunPod: eth0 is for the internet; NCCL over it times out
    out["PODTUI_TORCHRUN"] = (f"torchrun --nnodes={nodes} --node_rank={rank} --nproc_per_node={trainers} "
                              f"--master_addr={addr} --master_port={port}")
    return out


def node_rank_of(env: typing.Mapping[str, str]) -> int:
    """This pod's node in a run of more than one (0 on a single pod: podtui's PODTUI_NODES first, so a user's own
    NUM_NODES on one pod changes nothing)."""
    if _count_of(env.get("PODTUI_NODES") or env.get("NUM_NODES")) <= 1:
        return 0
    try:
        return max(0, min(255, int(env.get("NODE_RANK") or 0)))
    except ValueError:
        return 0


# -- metric extraction (pure functions) -----------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity)"
_PAIR = re.compile(r"(?<![\w./-])([A-Za-z_][\w./-]{0,120})\s*(?:=|:)\s*(" + _NUMBER + r")(?=$|[\s,;|)\]}])",
                   re.IGNORECASE)
_HF_PAIR = re.compile(r"'([^'\\]{1,250})'\s*:\s*(" + _NUMBER + r")(?=\s*[,}])", re.IGNORECASE)


def _to_float(text: str) -> float:
    return float(text)  # float() accepts nan, inf, infinity in any case


def _numeric_fields(obj: dict, strings: bool = False) -> dict:
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not key or len(key) > 250 or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[key] = float(value)
        elif strings and isinstance(value, str) and re.fullmatch(_NUMBER, value.strip(), re.IGNORECASE):
            out[key] = _to_float(value)  # Trainer (transformers 5) prints its numbers as strings
    return out


def _split_step(values: dict, state: dict) -> tuple:
    step = None
    for key in STEP_KEYS:
        if key in values and float(values[key]).is_integer() and 0 <= values[key] < 2**63:
            step = int(values.pop(key))
            break
    for key in STEP_KEYS:
        values.pop(key, None)
    if step is None:
        state["auto_step"] = state.get("auto_step", 0) + 1
        step = state["auto_step"]
    return step, values


def _plain_values(text: str) -> tuple:
    """("json" | "hf", numeric fields) for a line that is a JSON object or a Trainer dict, else ("pairs", None)."""
    if not (text.startswith("{") and text.endswith("}")):
        return "pairs", None
    try:
        obj = json.loads(text)
        return "json", _numeric_fields(obj) if isinstance(obj, dict) else None
    except ValueError:
        if not text.startswith("{'"):
            return "json", None
    try:
        obj = ast.literal_eval(text)
        return "hf", _numeric_fields(obj, strings=True) if isinstance(obj, dict) else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        # HF prints nan/inf bare, which literal_eval refuses: read the pairs one by one.
        return "hf", {k: _to_float(v) for k, v in _HF_PAIR.findall(text)} or None


def parse_metrics(line: str, state: dict) -> list:
    """Metrics in one printed line, as [(name, step, value)]; [] for lines that carry none.

    Understands JSON objects with numeric fields, Hugging Face Trainer's printed dicts, and `key=value` /
    `key: value` pairs on a line that has a step. `state` carries the step counter for lines without a step.
    """
    text = line.strip()
    if not text or len(text) > MAX_LINE:
        return []
    kind, values = _plain_values(text)
    return _metrics_of(text, kind, values, state)


def _metrics_of(text: str, kind: str, values: dict | None, state: dict) -> list:
    """parse_metrics for a stripped line whose _plain_values are known."""
    if kind != "pairs":
        if not values:
            return []
        step, values = _split_step(dict(values), state)
        return [(name, step, value) for name, value in values.items()]
    pairs = _PAIR.findall(text)
    if len(pairs) < 2:
        return []
    values = {}
    step = None
    for key, raw in pairs:
        if key.lower() in STEP_KEYS and step is None:
            try:
                number = float(raw)
            except ValueError:
                return []
            if not number.is_integer() or not 0 <= number < 2**63:
                return []
            step = int(number)
        elif key not in values:
            values[key] = _to_float(raw)
    if step is None or not values:
        return []
    return [(name, step, value) for name, value in values.items()]


def json_value(value: float) -> object:
    """JSON has no NaN or infinity: send them as the strings the control plane reads."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


# -- output as a terminal shows it ----------------------------------------------------------------------
# Progress bars redraw one line with \r, Keras with \b, nested tqdm bars with cursor moves. What is stored
# and parsed is what a person would read on the screen: a row that is still being redrawn is "live" (sent as
# it stands, a few times a second), and it becomes a log line once, when the program has left it.

MAX_ROWS = 8  # rows a program may still redraw (nested bars); older ones scroll into the log
MAX_ROW = 64 * 1024  # a row that grows past this without a line end is cut into a log line
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


class Screen:
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
            self.newline(now)

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

    def commit(self, count: int) -> None:
        """The first `count` rows leave the screen for the log (a cleared progress row leaves nothing)."""
        for i in range(count):
            text, progress = self.rows[i].rstrip(), self.progress[i]
            if text or not progress:
                self.done.append((text, progress, self.rank, self.prefix))
        del self.rows[:count], self.progress[:count], self.touched[:count]
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

    def screen(self, rank: int | None) -> Screen:
        if rank not in self.screens:
            self.screens[rank] = Screen(rank, self.done)
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
            screen.changed = set()
        return lines, states

    def live(self) -> list:
        return [screen.prefix + row for screen in self.screens.values() for row in screen.live()]


# -- progress bars and trainers' own lines (pure; the agent feeds them what a terminal shows) ----------------

_ELAPSED = r"\d{1,3}:\d\d(?::\d\d)?"
_TQDM = re.compile(r"^(?P<desc>.*?)(?::\s*)?(?:\b\d{1,3}%\|[^|]*\|\s*)?(?P<n>\d+(?:\.\d+)?[kMGT]?)"
                   r"(?:/(?P<total>\d+(?:\.\d+)?[kMGT]?))?\s*[A-Za-z]*\s*\[(?P<info>" + _ELAPSED + r"[^\[\]]*)\]\s*$")
_EPOCH = re.compile(r"\bepoch\s*[:#]?\s*(\d{1,6})(?:\s*/\s*\d+)?\b", re.IGNORECASE)
_KERAS = re.compile(r"^\s*(?P<n>\d{1,9})/(?P<total>\d{1,9})\s+(?:\S*[\[━─=>. \]]|\d).*?(?P<pairs>(?:\s-\s[A-Za-z_]"
                    r"[\w./]*:\s[^\s]+)+)\s*$")
_KERAS_PAIR = re.compile(r"\s-\s([A-Za-z_][\w./]*):\s(" + _NUMBER + r")(?=\s|$)", re.IGNORECASE)
_KERAS_EPOCH = re.compile(r"^\s*Epoch (\d{1,6})/(\d{1,6})\s*$")
_SCALE = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
NOT_METRICS = ("v_num",)  # Lightning's logger version in its bar's postfix


def text_of(values: dict) -> str:
    """A Trainer dict printed again (nan and inf as Python prints them), for the line counter."""
    return repr(values)


def _bar_key(text: str) -> tuple | None:
    """What identifies a tqdm or Keras bar in a drawing of it (its description and total), or None."""
    if "/" not in text or len(text) > 4096:
        return None
    m = _TQDM.match(text.strip())
    if m is not None:
        return ("tqdm", _EPOCH.sub("", m.group("desc")).strip(), m.group("total"))
    m = _KERAS.match(text)
    return None if m is None else ("keras", m.group("total"))


def _count(text: str) -> int:
    scale = text[-1] if text[-1] in "kMGT" else ""
    return round(float(text[:-1] if scale else text) * _SCALE[scale])


class MetricReader:
    """Metrics from what a run prints, with the step each format implies, and a note on how it was read.

    Plain lines (JSON, Hugging Face Trainer dicts, `key=value` with a step) go through `parse_metrics` as
    before. Progress bars (tqdm and Lightning's, which is tqdm; Keras) give their postfix or ` - name: value`
    metrics at the bar's counter, made global with the epoch (`Epoch N` in a tqdm bar's description, a Keras
    `Epoch N/M` line): step = (epoch - first epoch seen) x steps per epoch + position. A Trainer dict takes the
    counter of the trainer's bar: tqdm clears its bars to print the dict and draws them again at once, so the
    bar drawn right after a clear holds the trainer's step. `mode` is PODTUI_METRICS (auto, json, off);
    `ranks` is "all" to count every rank's metrics (named `rank<N>/<name>`), else rank 0's alone."""

    def __init__(self, mode: str = "auto", ranks: str = "0") -> None:
        self.mode = mode if mode in ("auto", "json", "off") else "auto"
        self.all_ranks = ranks == "all"
        self.state: dict = {}  # parse_metrics's line counter
        self.sources: list = []  # how the metrics were read, first seen first
        self.first_epoch: dict = {}  # per bar kind and rank
        self.keras_epoch: dict = {}  # the last `Epoch N/M` line per rank
        self.bar: tuple | None = None  # (counter, time) of the last drawing of the longest bar
        self.bar_total = 0
        self.redrawn: int | None = None  # counter of a bar drawn right after a clear, not yet given to a dict
        self.pending: list = []  # Trainer dicts waiting for that bar: (values, time, rank)
        self.ready: list = []  # Trainer dict points resolved by a bar, to be taken by `overdue`
        self.per_epoch: float | None = None  # Trainer steps per epoch, once a dict met its bar
        self.last_state: dict = {}
        self.bar_points: dict = {}  # (step, value) of each bar metric's last point

    def note(self, source: str) -> None:
        if source not in self.sources:
            self.sources.append(source)

    def explain(self) -> str:
        """The note the run shows: which parser produced its metrics and where their steps came from."""
        sources = (["output not parsed (PODTUI_METRICS=off)"] if self.mode == "off" else []) + self.sources
        return "; ".join(sources)[:300]

    def counts(self, rank: int | None) -> bool:
        return self.all_ranks or rank in (None, -1, 0)

    def named(self, points: list, rank: int | None) -> list:
        if rank is None or rank <= 0:
            return points
        return [(f"rank{rank}/{name}", step, value) for name, step, value in points]

    def line(self, text: str, rank: int | None = None, stream: str = "stdout", progress: bool = False,
             now: float = 0.0) -> list:
        """The metrics of a line that has left the screen (a finished bar too)."""
        if self.mode == "off" or not self.counts(rank):
            return []
        if progress or self.mode == "auto":
            got = self.bar_state(text, rank, False, now, final=True)
            if got is not None:
                return self.named(got, rank)
        if stream != "stdout":
            return []
        text = text.strip()
        if not text or len(text) > MAX_LINE:
            return []
        m = _KERAS_EPOCH.match(text)
        if m and self.mode == "auto":
            self.keras_epoch[rank] = int(m.group(1))
            return []
        kind, values = _plain_values(text)  # decoded once: _metrics_of takes it
        if self.mode == "json" and kind != "json":
            return []
        if kind == "hf" and values and "step" not in values and self.bar is not None:
            return self.named(self.trainer_dict(values, rank, now), rank)
        points = _metrics_of(text, kind, values, self.state)
        if points:
            has_step = kind == "pairs" or (values is not None and any(k in values for k in STEP_KEYS))
            if kind == "hf":
                self.note("Hugging Face Trainer dicts, " + ("step from their step field" if has_step else
                          "step counted by line (no trainer progress bar seen)"))
            elif kind == "json":
                self.note("JSON lines, " + ("step from their step field" if has_step else "step counted by line"))
            else:
                self.note("key=value lines, step from their step key")
        return self.named(points, rank)

    def state_of(self, text: str, key: tuple, rank: int | None, after_clear: bool, now: float) -> list:
        """The metrics of a progress row as it stands now (sampled while it is redrawn)."""
        if self.mode != "auto" or not self.counts(rank):
            return []
        if self.last_state.get(key) == text:
            return []
        self.last_state[key] = text
        return self.named(self.bar_state(text, rank, after_clear, now) or [], rank)

    def bar_state(self, text: str, rank: int | None, after_clear: bool, now: float,
                  final: bool = False) -> list | None:
        """Metrics of a tqdm/Lightning or Keras bar line; None when the text is no bar.

        A bar is drawn many times at one counter: plain tqdm draws the counter it last synced with a newer
        postfix (the first drawing at a step holds that step's values), Lightning draws the new counter with
        the last batch's values and then its own (the first new value at a step is the step's). So a point
        is taken when both its step and its value are new: right for both, and a validation loss carried
        along the bar is stored once, where it appeared, not at every later step. A finished drawing (a line
        that left the screen: Keras's end of epoch) counts at a new step whatever its values."""
        if self.mode != "auto" or len(text) > MAX_LINE or "/" not in text:
            return None
        m = _TQDM.match(text.strip())
        if m is not None:
            points = self.tqdm(m, rank, after_clear, now)
        else:
            m = _KERAS.match(text)
            if m is None:
                return None
            points = self.keras(m, rank)
        fresh = []
        for point in points:
            key = (point[0], rank)
            last = self.bar_points.get(key)
            if last is None or (last[0] != point[1] and (final or last[1] != point[2])):
                self.bar_points[key] = point[1:]
                fresh.append(point)
        return fresh

    def tqdm(self, m: re.Match, rank: int | None, after_clear: bool, now: float) -> list:
        n = _count(m.group("n"))
        total = _count(m.group("total")) if m.group("total") else None
        info = m.group("info")
        cut = info.find(",")
        pairs = [(k, v) for k, v in _PAIR.findall(info[cut + 1:] if cut >= 0 else "") if k not in NOT_METRICS]
        lightning = "v_num=" in info
        if total and rank in (None, -1, 0) and total >= self.bar_total:  # the trainer's bar: the longest
            self.bar, self.bar_total = (n, now), total
            if after_clear:
                self.redrawn = n
                self.resolve(n)
        if not pairs:
            return []
        epoch_match = _EPOCH.search(m.group("desc"))
        kind = "Lightning progress bar" if lightning else "tqdm postfix"
        step = n
        if epoch_match and total:
            epoch = int(epoch_match.group(1))
            first = self.first_epoch.setdefault(("tqdm", rank), epoch)
            step = max(0, epoch - first) * total + n
            self.note(f"{kind}, step = epoch x steps per epoch + position (epochs from {first})")
        else:
            self.note(f"{kind}, step from the bar's counter")
        values: dict = {}
        for key, raw in pairs:
            values.setdefault(key, _to_float(raw))
        return [(name, step, value) for name, value in values.items()]

    def keras(self, m: re.Match, rank: int | None) -> list:
        n, total = int(m.group("n")), int(m.group("total"))
        values: dict = {}
        for key, raw in _KERAS_PAIR.findall(m.group("pairs")):
            values.setdefault(key, _to_float(raw))
        if not values:
            return []
        epoch = self.keras_epoch.get(rank)
        if epoch is None:
            self.note("Keras progress bar, step from the bar's counter")
            return [(name, n, value) for name, value in values.items()]
        first = self.first_epoch.setdefault(("keras", rank), epoch)
        self.note(f"Keras progress bar, step = (epoch - {first}) x steps per epoch + position")
        step = (epoch - first) * total + n
        return [(name, step, value) for name, value in values.items()]

    def trainer_dict(self, values: dict, rank: int | None, now: float) -> list:
        """A Trainer dict printed beside the trainer's bar: its step is the bar's counter, drawn again just
        after the dict (before or after we read the dict: the two streams race)."""
        if self.redrawn is not None:
            step, self.redrawn = self.redrawn, None
            return self.trainer_points(values, step, "the trainer's progress bar")
        self.pending.append((values, now, rank))
        return []

    def trainer_points(self, values: dict, step: int, source: str) -> list:
        epoch = values.get("epoch")
        if isinstance(epoch, float) and epoch > 0 and step > 0 and source == "the trainer's progress bar":
            self.per_epoch = step / epoch
        self.note(f"Hugging Face Trainer dicts, step from {source}")
        return [(name, step, value) for name, value in values.items()]

    def resolve(self, step: int) -> None:
        if self.pending:
            self.redrawn = None
            for values, _, rank in self.pending:
                self.ready += self.named(self.trainer_points(values, step, "the trainer's progress bar"), rank)
            self.pending = []

    def overdue(self, now: float, wait: float = 2.0) -> list:
        """Trainer dicts whose bar did not come back within `wait` seconds (or all of them, at the end): their
        step from epoch x steps per epoch when known, else the bar's last counter; plus dicts resolved since."""
        out, self.ready = self.ready, []
        keep = []
        for values, at, rank in self.pending:
            if now - at < wait:
                keep.append((values, at, rank))
                continue
            epoch = values.get("epoch")
            if self.per_epoch and isinstance(epoch, float):
                points = self.trainer_points(values, round(epoch * self.per_epoch), "epoch x steps per epoch")
            elif self.bar and at - self.bar[1] < 5.0:
                points = self.trainer_points(values, self.bar[0], "the last counter of its progress bar")
            else:  # the bar seen was no trainer's (a dataset's, say): count dicts as before
                points = parse_metrics(text_of(values), self.state)
                self.note("Hugging Face Trainer dicts, step counted by line (no trainer progress bar seen)")
            out += self.named(points, rank)
        self.pending = keep
        return out


# -- the outbox: ordered, bounded in memory, spilling to a file ---------------------------------------

class Outbox:
    """Metric points and log lines waiting to be sent, oldest first. Past MEMORY_ITEMS in memory, the oldest
    go to a spill file (JSON lines), which is always sent before what is in memory."""

    def __init__(self, spill_path: str) -> None:
        self.lock = threading.Lock()
        self.memory: collections.deque = collections.deque()
        self.spill_path = spill_path
        self.spill_offset = 0
        self.spilled = 0
        self.left_memory = 0  # items ever removed from the front of memory (sent, or spilled)

    def add(self, kind: str, item: dict) -> None:
        with self.lock:
            self.memory.append((kind, item))
            if len(self.memory) > MEMORY_ITEMS:
                with open(self.spill_path, "a", encoding="utf-8") as f:
                    for _ in range(SPILL_CHUNK):
                        f.write(json.dumps(self.memory.popleft()) + "\n")
                self.spilled += SPILL_CHUNK
                self.left_memory += SPILL_CHUNK

    def __len__(self) -> int:
        with self.lock:
            return len(self.memory) + self.spilled

    def peek(self) -> tuple:
        """The next batch (within the control plane's limits) and a token to commit it with."""
        with self.lock:
            items: list = []
            size = 0
            offset = self.spill_offset
            if self.spilled:
                with open(self.spill_path, encoding="utf-8") as f:
                    f.seek(offset)
                    while len(items) < MAX_BATCH_ITEMS and size < MAX_BATCH_BYTES:
                        raw = f.readline()
                        if not raw:
                            break
                        kind, item = json.loads(raw)
                        items.append((kind, item))
                        size += len(raw)
                        offset = f.tell()
                return items, ("spill", offset, len(items))
            for kind, item in self.memory:
                if len(items) >= MAX_BATCH_ITEMS or size >= MAX_BATCH_BYTES:
                    break
                items.append((kind, item))
                size += len(item.get("text", "")) + 64
            return items, ("memory", self.left_memory, len(items))

    def commit(self, token: tuple) -> None:
        where, offset, count = token
        with self.lock:
            if where == "spill":
                self.spill_offset = offset
                self.spilled -= count
                if self.spilled <= 0:
                    self.spilled, self.spill_offset = 0, 0
                    open(self.spill_path, "w").close()
            else:
                # Items of the batch spilled while it was in flight are in the spill file now (sent again
                # from there; the control plane de-duplicates): remove only what is still in memory.
                gone = self.left_memory - offset
                for _ in range(max(0, count - gone)):
                    self.memory.popleft()
                self.left_memory += max(0, count - gone)


# -- talking to the control plane ---------------------------------------------------------------------

class Gone(Exception):
    """The control plane says this run is over (or this token is no longer valid): stop."""


class PushLink:
    """Push mode's way to the control plane: `post` sends a report to its URL with the run's ingest token and
    returns the reply (Gone when the run or the token is no longer valid). PullLink stands in for it in pull mode."""

    def __init__(self, url: str, run_id: str, token: str) -> None:
        self.url = url.rstrip("/") + "/api/v1/runs/" + run_id + "/report"
        self.token = token

    def post(self, payload: dict) -> dict:
        body = json.dumps(payload, allow_nan=False).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404, 410):
                raise Gone(f"control plane answered {exc.code}") from None
            raise


MIN_REPORT_GAP_S = 0.05
"""At most 20 reports a second: what comes faster rides in the next batch."""
LIVE_ROW_GAP_S = 0.25
"""A progress row that only moved (no new line, no new point) wakes the reporter at most this often."""
MAX_SERVER_GAP_S = 10.0


class Reporter(threading.Thread):
    """Sends the outbox in order as soon as something is in it and no report is in flight, at most one report per
    MIN_REPORT_GAP_S (or the longer gap the control plane asks for when busy), so batches grow only under load;
    with nothing to send, a heartbeat every `interval` seconds."""

    def __init__(self, agent: Agent, interval: float) -> None:
        super().__init__(daemon=True, name="reporter")
        self.agent = agent
        self.interval = interval
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.last_ok = time.time()
        self.failures = 0
        self.server_gap = 0.0
        self.last_sent = 0.0

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.failures:
                self.stopping.wait(self.backoff())  # a full buffer does not cut a backoff short
            else:
                self.wake.wait(self.interval)
                gap = max(MIN_REPORT_GAP_S, self.server_gap) - (time.monotonic() - self.last_sent)
                if gap > 0:
                    self.stopping.wait(gap)
            self.wake.clear()
            if self.stopping.is_set():
                return
            self.last_sent = time.monotonic()
            self.flush_once()

    def backoff(self) -> float:
        return min(30.0, 0.5 * 2 ** min(self.failures, 6)) * (0.5 + random.random())

    def flush_once(self, final: dict | None = None) -> bool:
        """Send one batch (the final status rides on the last batch). True when the control plane took it."""
        agent = self.agent
        items, token = agent.outbox.peek()
        payload = {
            "metrics": [i for k, i in items if k == "m"],
            "logs": [i for k, i in items if k == "l"],
            "heartbeat_ts": time.time(),
        }
        if agent.node:
            payload["node"] = agent.node
        if agent.progress is not None:
            payload["progress"] = {"bytes_done": agent.progress[0], "bytes_total": agent.progress[1]}
        if agent.status:
            payload["status"] = agent.status
        live, source = agent.live, agent.reader.explain()
        if live != agent.live_sent:
            payload["live"] = live
        if source and source != agent.source_sent:
            payload["metrics_source"] = source
        drained = len(items) >= len(agent.outbox)
        if final and drained:
            payload.update(final)
        try:
            reply = agent.link.post(payload)
        except Gone as exc:
            agent.gone(str(exc))
            return False
        except Exception as exc:
            self.failures += 1
            if self.failures in (1, 5) or self.failures % 20 == 0:
                agent.note(f"control plane unreachable ({exc}); keeping {len(agent.outbox)} items to resend")
            if time.time() - self.last_ok > agent.unreachable_limit:
                agent.gone(f"control plane unreachable for {int(time.time() - self.last_ok)} s")
            return False
        self.failures = 0
        self.last_ok = time.time()
        agent.outbox.commit(token)
        agent.live_sent, agent.source_sent = live, source or agent.source_sent
        gap = reply.get("min_interval_s")
        busy = isinstance(gap, (int, float)) and not isinstance(gap, bool) and math.isfinite(gap)
        self.server_gap = min(MAX_SERVER_GAP_S, max(0.0, float(gap))) if busy else 0.0
        left = reply.get("deadline_in_s")
        if isinstance(left, (int, float)) and not isinstance(left, bool) and math.isfinite(left):
            agent.plane_deadline = time.time() + float(left)  # on this pod's clock, not the laptop's
        if reply.get("stop"):
            agent.gone("the control plane ended this run")
        if reply.get("sync_outputs"):
            agent.want_outputs.set()
        return bool(final) and drained

    def drain(self, final: dict, deadline: float) -> bool:
        """Send everything, then the final status; give up at the deadline."""
        while time.time() < deadline:
            if self.flush_once(final):
                return True
            if self.failures:
                time.sleep(min(self.backoff(), max(0.0, deadline - time.time())))
            if self.agent.stopped_by_control_plane:
                return False
        return False


# -- outputs: the files of $PODTUI_OUTPUT_DIR brought home ---------------------------------------------

MAX_OUTPUT_NAME = 1024
MAX_OUTPUT_PART = 255
OUTPUT_PIECE = 64 * 1024 * 1024  # bytes per PUT: a tunnel in front of the control plane often caps a body at 100 MB
SEND_BLOCK = 1 << 20


def output_name_problem(name: str) -> str | None:
    """Why a name under the outputs folder is not sent (None when it is fine): the control plane checks the same."""
    if not name or "\x00" in name:
        return "an empty name or a NUL byte in it"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a control character in the name"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "a name that is not UTF-8"
    if len(encoded) > MAX_OUTPUT_NAME:
        return f"a name over {MAX_OUTPUT_NAME} bytes"
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return "a path that leaves the outputs folder"
    if any(len(p.encode("utf-8")) > MAX_OUTPUT_PART for p in parts):
        return f"a part of the path over {MAX_OUTPUT_PART} bytes"
    if parts[0] == ".partial":
        return "the reserved name .partial"
    return None


def printable(name: str) -> str:
    """A name as text any JSON parser and terminal takes (bytes that are not UTF-8 shown as escapes)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")[:300]


def scan_outputs(root: str) -> tuple:
    """The files under `root` as sorted [(name, real path, size, mtime)], and the names refused [(name, why)].
    Symlinks pointing outside the folder are refused, never followed; one pointing to a file inside is sent
    under its own name; folders are walked without following links."""
    files: list = []
    refused: list = []
    real_root = os.path.realpath(root)
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = prefix + entry.name
            problem = output_name_problem(name)
            if problem:
                refused.append((printable(name), problem))
                continue
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not target.startswith(real_root + os.sep):
                        refused.append((name, "a symlink pointing outside the outputs folder (not followed)"))
                    elif os.path.isfile(target):
                        st = os.stat(target)
                        files.append((name, target, st.st_size, st.st_mtime))
                    continue  # a linked folder inside is listed under its own name already
                if entry.is_dir(follow_symlinks=False):
                    stack.append((name + "/", entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    files.append((name, entry.path, st.st_size, st.st_mtime))
            except OSError:
                continue  # gone while listed: the next sync sees what is there then
    files.sort()
    return files, refused


def hash_prefix(path: str, size: int) -> typing.Any:
    """The sha256 object of a file's first `size` bytes (to go on from an offset)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left > 0:
            block = f.read(min(SEND_BLOCK, left))
            if not block:
                raise OSError(f"{path} is shorter than {size} bytes")
            digest.update(block)
            left -= len(block)
    return digest


def hash_range(path: str, offset: int, length: int, digest: typing.Any, done: list) -> None:
    """Feed `length` bytes of a file from `offset` to `digest`; appends the count hashed to `done`."""
    count = 0
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while count < length:
                block = f.read(min(4 * SEND_BLOCK, length - count))
                if not block:
                    break
                digest.update(block)
                count += len(block)
    except OSError:
        pass
    done.append(count)


class Refused(Exception):
    """The control plane will not take a file (cap, disk full, a bad name): not retried in this sync."""


class OutputSender:
    """Push mode: sends what is new or changed in the outputs folder to the control plane, in pieces that resume
    from what the control plane has after any interruption, each file finished with its sha256."""

    def __init__(self, agent: Agent, url: str, run_id: str, token: str) -> None:
        self.agent = agent
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.netloc = parts.netloc
        self.base = parts.path.rstrip("/") + "/api/v1/runs/" + urllib.parse.quote(run_id, safe="") + "/outputs/"
        self.token = token
        self.lock = threading.Lock()
        self.conn: typing.Any = None
        self.said: set = set()
        self.deadline = 0.0  # no request of a sync outlives it: the keep-alive bound holds

    def timeout(self) -> float:
        return max(1.0, min(120.0, self.deadline - time.time()))

    def bound(self, until: float) -> None:
        """The command has ended: a pass under way gives up by `until` (the keep-alive bound) instead of its own
        later deadline, so the final pass, which waits for it, is not held past the bound."""
        if self.deadline:
            self.deadline = min(self.deadline, until)

    def connect(self) -> typing.Any:
        import http.client  # only a pushing pod with outputs needs it

        if self.conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self.conn = cls(self.netloc, timeout=self.timeout())
        elif self.conn.sock is not None:
            self.conn.sock.settimeout(self.timeout())
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, method: str, route: str, query: dict | None = None, body: bytes = b"") -> tuple:
        """One small request; (status, JSON answer). Connection problems raise OSError."""
        import http.client

        url = self.base + route + ("?" + urllib.parse.urlencode(query) if query else "")
        conn = self.connect()
        try:
            conn.request(method, url, body=body, headers={"Authorization": "Bearer " + self.token,
                                                          "Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.drop()
            raise OSError(f"{type(exc).__name__}: {exc}") from None
        try:
            return resp.status, json.loads(raw or b"{}")
        except ValueError:
            return resp.status, {}

    def note_once(self, text: str) -> None:
        if text not in self.said:
            self.said.add(text)
            self.agent.note(text)

    def sync(self, final: bool, deadline: float, stop: threading.Event | None = None) -> tuple:
        """One sync pass: (files sent, files not home). Retries connection problems until the deadline; once
        `stop` is set no new file starts (the command ended: the final pass takes over)."""
        with self.lock:
            self.deadline = deadline
            root = self.agent.output_dir
            files, refused = scan_outputs(root)
            prefix = getattr(self.agent, "output_prefix", "")
            if prefix:  # --outputs-from all: each node's outputs under node<k>/
                files = [(prefix + n, p, s, m) for n, p, s, m in files]
                refused = [(prefix + n, w) for n, w in refused]
            # Only node 0's final pass is the run's: another node's must not cut node 0's keep-alive short.
            final = final and not getattr(self.agent, "node", 0)
            for name, why in refused:
                self.note_once(f"output {name!r} not sent: {why}")
            offer = json.dumps({"files": [{"path": n, "size": s, "mtime": m} for n, _, s, m in files][:10000],
                                "refused": [{"path": n, "why": w} for n, w in refused][:100], "final": final})
            plan = self.retry(lambda: self.call("POST", "offer", body=offer.encode()), deadline)
            if plan is None:
                return 0, len(files)
            where = {n: (p, s, m) for n, p, s, m in files}
            sent = failed = 0
            for item in plan.get("files") or []:
                name = item.get("path")
                if self.agent.signalled or (stop is not None and stop.is_set()) or time.time() >= self.deadline:
                    failed += 1  # the pod is being stopped, the command ended, or the bound passed: no new file
                    continue
                if item.get("action") == "refuse":
                    failed += 1
                    self.note_once(f"output {name!r} not brought home: {item.get('reason', '')}")
                    continue
                if item.get("action") != "send" or name not in where:
                    continue
                path, size, mtime = where[name]
                try:
                    if self.send_file(name, path, size, mtime, int(item.get("offset") or 0), deadline):
                        sent += 1
                    else:
                        failed += 1
                except Refused as exc:
                    failed += 1
                    self.note_once(f"output {name!r} not brought home: {exc}")
            self.retry(lambda: self.call("POST", "synced", body=json.dumps(
                {"final": final, "sent": sent, "failed": failed}).encode()), deadline)
            return sent, failed

    def retry(self, fn: typing.Callable, deadline: float) -> dict | None:
        """fn() until it answers 2xx (its JSON) or the deadline passes (None); 401/403/404/410 end at once."""
        pause = 1.0
        while True:
            try:
                status, obj = fn()
                if 200 <= status < 300:
                    return dict(obj)
                if status in (401, 403, 404, 410):
                    self.note_once(f"the control plane refused outputs ({status}); not sending them")
                    return None
            except OSError:
                pass
            if time.time() + pause > min(deadline, self.deadline) or self.agent.signalled:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 15.0)

    def send_file(self, name: str, path: str, size: int, mtime: float, offset: int, deadline: float) -> bool:
        """Send one file from `offset`, then its sha256. True once the control plane has it home."""
        query = {"path": name, "size": size, "mtime": repr(mtime)}
        digest: typing.Any = None  # the sha256 of the file's first `offset` bytes
        pause = 1.0
        while True:
            try:
                if digest is None:
                    digest = hash_prefix(path, offset)
                if offset < size:
                    offset, digest = self.put_piece(name, path, query, offset, min(OUTPUT_PIECE, size - offset),
                                                    digest)
                    pause = 1.0
                    continue
                st = os.stat(path)
                if st.st_size != size or st.st_mtime != mtime:
                    self.agent.note(f"output {name!r} changed while it was sent; the next sync sends it again")
                    return False
                status, obj = self.call("POST", "done", dict(query, sha256=digest.hexdigest()))
                if status == 200:
                    return True
                if status == 422 and (obj.get("error") or {}).get("code") == "sha256_mismatch":
                    offset, digest = 0, None  # the control plane dropped its copy: send it all again
                    continue
                if status == 409 and isinstance(obj.get("received"), int):
                    offset, digest = obj["received"], None
                    continue
                raise Refused(str((obj.get("error") or {}).get("message") or f"HTTP {status}"))
            except OSError as exc:
                if not os.path.exists(path):
                    return False  # deleted while it was sent: the next sync knows
                if time.time() + pause > min(deadline, self.deadline) or self.agent.signalled:
                    self.note_once(f"output {name!r} not sent in time ({exc})")
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 15.0)
                # Ask where the control plane stands: an empty piece at our offset answers 409 with its size.
                try:
                    status, obj = self.call("PUT", "upload", dict(query, offset=offset))
                    if status == 409 and isinstance(obj.get("received"), int):
                        offset, digest = obj["received"], None
                    if status in (200, 409) and offset:
                        self.agent.note(f"resuming output {name!r} at byte {offset} of {size}")
                except OSError:
                    pass

    def put_piece(self, name: str, path: str, query: dict, offset: int, length: int,
                  digest: typing.Any) -> tuple:
        """PUT `length` bytes of the file from `offset`, hashing them on the way. (The offset the control plane
        is at, the sha256 up to it, or None when it must be computed again.)"""
        import http.client

        conn = self.connect()
        url = self.base + "upload?" + urllib.parse.urlencode(dict(query, offset=offset))
        running = digest.copy()
        # The piece is hashed in a second thread while the kernel sends it from the page cache (sendfile; plain
        # reads and sends over TLS): the pod's CPU hashes while the wire is busy. The file must not change
        # meanwhile, or the control plane's sha256 will not match and the file is sent again.
        hashed: list = []
        hasher = threading.Thread(target=hash_range, args=(path, offset, length, running, hashed), daemon=True)
        try:
            conn.putrequest("PUT", url, skip_accept_encoding=True)
            conn.putheader("Authorization", "Bearer " + self.token)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
            hasher.start()
            with open(path, "rb") as f:
                if length:
                    sent = conn.sock.sendfile(f, offset, length)
                    if sent != length:
                        raise OSError(f"{name} shrank while it was sent")
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.drop()
            raise OSError(f"{type(exc).__name__}: {exc}") from None
        finally:
            if hasher.ident is not None:
                hasher.join()
        if hashed != [length]:
            raise OSError(f"{name} changed while it was sent")
        try:
            obj = json.loads(raw or b"{}")
        except ValueError:
            obj = {}
        if resp.status == 200 and obj.get("received") == offset + length:
            return offset + length, running
        if resp.status == 409 and isinstance(obj.get("received"), int):
            return int(obj["received"]), None
        if resp.status in (400, 413, 422, 507):
            raise Refused(str((obj.get("error") or {}).get("message") or f"HTTP {resp.status}"))
        if resp.status in (401, 403, 404, 410):
            raise Refused(f"the control plane answered {resp.status}")
        raise OSError(f"HTTP {resp.status}")


# -- the agent ----------------------------------------------------------------------------------------

class Agent:
    def __init__(self, command: list, env: typing.Mapping[str, str] | None = None,
                 link: PullLink | None = None) -> None:
        env = os.environ if env is None else env
        self.command = command
        self.home = env.get("PODTUI_HOME") or os.path.join(os.path.expanduser("~"), "podtui")
        os.makedirs(self.home, exist_ok=True)
        self.link: typing.Any = link or PushLink(env["PODTUI_URL"], env["PODTUI_RUN_ID"], env["PODTUI_TOKEN"])
        self.keep_alive = float(env.get("PODTUI_KEEP_ALIVE_S") or 0)
        self.terminate_cmd = env.get("PODTUI_TERMINATE_CMD", "")
        self.runpod_api = env.get("PODTUI_RUNPOD_API_URL", "")
        self.runpod_pod = env.get("RUNPOD_POD_ID", "")
        self.runpod_key = env.get("RUNPOD_API_KEY", "")
        self.unreachable_limit = float(env.get("PODTUI_UNREACHABLE_LIMIT_S") or 12 * 3600)
        self.undelivered_keep = float(env.get("PODTUI_UNDELIVERED_KEEP_S") or 1800)
        self.started = time.time()
        runtime = float(env.get("PODTUI_MAX_RUNTIME_S") or 0)
        self.runtime_deadline = self.started + runtime if runtime > 0 else None
        self.plane_deadline: float | None = None
        self.stall_limit = float(env.get("PODTUI_STALL_TIMEOUT_S") or 0)
        # A connected control plane acts on the same limits first (and says why); the pod acts this much later.
        self.limit_grace = float(env.get("PODTUI_LIMIT_GRACE_S") or 0)
        self.last_line_at = time.time()
        self.grace = float(env.get("PODTUI_GRACE_S") or 20)
        self.metrics_file = env.get("PODTUI_METRICS_FILE") or os.path.join(self.home, "metrics.jsonl")
        self.outbox = Outbox(os.path.join(self.home, "outbox.spill"))
        self.reporter = Reporter(self, float(env.get("PODTUI_REPORT_INTERVAL_S") or 1.0))
        self.seq_lock = threading.Lock()
        self.node = node_rank_of(env)
        self.seq = self.node * NODE_SEQ_STRIDE
        self.tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
        self.reader = MetricReader(env.get("PODTUI_METRICS") or "auto", env.get("PODTUI_METRICS_RANKS") or "0")
        self.outputs = {"stdout": Output(), "stderr": Output()}
        self.output_lock = threading.Lock()
        self.live: list = []  # the progress rows being drawn now, as sent last
        self.live_sent: list | None = None
        self.live_woke = 0.0
        self.source_sent = ""
        self.file_state: dict = {}
        self.status: str | None = None
        self.progress: tuple | None = None
        self.child: subprocess.Popen | None = None
        self.stopped_by_control_plane = False
        self.stopped_by_pod = ""
        self.signalled = False
        self.stop_reason = ""
        # Outputs: $PODTUI_OUTPUT_DIR for the command, brought home at the end, on request and every N s.
        work = os.path.join(self.home, "work")
        rel = os.path.normpath(env.get("PODTUI_OUTPUTS") or "outputs").lstrip("/")
        self.output_dir = os.path.join(work, "outputs" if rel.startswith("..") or rel == "." else rel)
        self.sync_every = float(env.get("PODTUI_SYNC_OUTPUTS_S") or 0)
        self.want_outputs = threading.Event()
        self.outputs_done = threading.Event()
        """Pull mode: the control plane says the final sync is home (POST /v1/outputs/done)."""
        self.sender: OutputSender | None = None
        from_all = (env.get("PODTUI_OUTPUTS_FROM") or "0") == "all"
        several = _count_of(env.get("PODTUI_NODES") or env.get("NUM_NODES")) > 1
        self.output_prefix = f"node{self.node}/" if from_all and several else ""
        self.outputs_wanted = self.node == 0 or from_all  # outputs come from node 0 unless asked for all
        if link is None and self.outputs_wanted:
            self.sender = OutputSender(self, env["PODTUI_URL"], env["PODTUI_RUN_ID"], env["PODTUI_TOKEN"])

    # lines and metrics
    def line(self, stream: str, text: str, points: typing.Iterable | None = None) -> None:
        """One log line, and the metrics read from it (read here when not given)."""
        text = text.rstrip("\r\n")
        if text.startswith(MARKER):
            self.marker(text[len(MARKER):])
            return
        if points is None:
            points = () if stream == "system" else self.reader.line(text, None, stream, False, time.time())
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + " …[truncated by podtui: line over 16 KiB]"
        now = time.time()
        if stream != "system":  # the agent's own notes are no sign of life from the command
            self.last_line_at = now
        with self.seq_lock:
            seq = self.seq
            self.seq += 1
            self.tail.append(text)
            self.outbox.add("l", {"seq": seq, "ts": now, "stream": stream, "text": text})
            self.add_points(points, now)
        if not self.reporter.wake.is_set():  # a flood of lines sets it once, not under its lock each time
            self.reporter.wake.set()

    def add_points(self, points: typing.Iterable, now: float) -> None:
        if self.node:  # a run's metrics come from node 0 (its rank 0): the other nodes repeat or split them
            return
        for name, step, value in points:
            if 0 <= step < 2**63:
                self.outbox.add("m", {"name": name, "step": step, "value": json_value(value), "ts": now})

    def output(self, stream: str, data: bytes | None, now: float) -> None:
        """Bytes the command wrote (None: a pass of the clock, to settle finished bars and late dicts)."""
        reader = self.reader
        with self.output_lock:
            out = self.outputs[stream]
            if data is None:
                out.settle(now)
            elif data:
                out.feed(data, now)
            else:
                out.close(now)
            lines, states = out.take()
            for text, content, rank, progress in lines:
                self.line(stream, text, reader.line(content, rank, stream, progress, now))
            points: list = []
            for text, rank, key, after_clear in states:
                points += reader.state_of(text, key, rank, after_clear, now)
            points += reader.overdue(now)
            if points:
                self.last_line_at = now
                with self.seq_lock:
                    self.add_points(points, now)
                self.reporter.wake.set()
            live = [row[:1000] for o in self.outputs.values() for row in o.live()][-4:]
            if live != self.live:
                self.live = live
                self.last_line_at = now  # a bar that moves is a sign of life, lines or not
                if now - self.live_woke >= LIVE_ROW_GAP_S:  # a moving bar alone goes out a few times a second
                    self.live_woke = now
                    self.reporter.wake.set()

    def note(self, text: str) -> None:
        """A line of the agent's own, in the run's log."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.line("system", f"{stamp} [podtui-agent] {text}")

    def marker(self, text: str) -> None:
        parts = text.split()
        if len(parts) == 2 and parts[0] == "status" and parts[1] in ("downloading", "training"):
            self.status = parts[1]
            self.reporter.wake.set()
        elif len(parts) == 3 and parts[0] == "progress" and parts[1].isdigit() and parts[2].isdigit():
            self.progress = (int(parts[1]), int(parts[2]))

    def pump(self, pipe: typing.IO[bytes], stream: str) -> None:
        """Read a stream as it comes (a progress bar never ends its line). A bar redrawn thousands of times a
        second is read at most 50 times a second: only the last drawing of a read counts."""
        fd = pipe.fileno()
        failed = False
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                data = b""
            now = time.time()
            try:
                self.output(stream, data, now)
            except Exception as exc:  # never stop reading: a full pipe would hang the command
                if not failed:
                    failed = True
                    self.note(f"reading the {stream} stream failed ({exc!r}); its lines are kept as printed")
                for text in data.decode("utf-8", "replace").splitlines():
                    self.line(stream, text, ())
            if not data:
                break
            if len(data) > 512:
                time.sleep(0.02)
        pipe.close()

    def tail_metrics_file(self, done: threading.Event) -> None:
        offset, partial = 0, b""
        while True:
            finished = done.is_set()
            try:
                with open(self.metrics_file, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                    offset = f.tell()
            except OSError:
                data = b""
            partial += data
            *lines, partial = partial.split(b"\n")
            now = time.time()
            points: list = []
            for raw in lines:
                text = raw.decode("utf-8", "replace").strip()
                if text.startswith("{"):
                    points += parse_metrics(text, self.file_state)
            if points:
                self.reader.note("metrics file ($PODTUI_METRICS_FILE)")
                self.last_line_at = now
                with self.seq_lock:
                    self.add_points(points, now)
                self.reporter.wake.set()
            if finished:
                return
            done.wait(0.5)

    # life and death
    def gone(self, reason: str) -> None:
        """The control plane ended the run, or cannot be reached for too long: stop the command."""
        if self.stopped_by_control_plane:
            return
        self.stopped_by_control_plane = True
        self.stop_reason = reason
        self.stop_child()

    def stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except OSError:
            pass

        def kill_later() -> None:
            try:
                child.wait(self.grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except OSError:
                    pass

        threading.Thread(target=kill_later, daemon=True).start()

    def guard_reason(self, now: float) -> str | None:
        """Why the pod must end the command now on its own (it does not wait for the control plane, which
        may be a laptop that sleeps): the run's max runtime, its budget's deadline, or a stall."""
        now -= self.limit_grace
        if self.runtime_deadline is not None and now >= self.runtime_deadline:
            return "max runtime reached"
        if self.plane_deadline is not None and now >= self.plane_deadline:
            return "the run's time or budget limit reached"
        # Node k > 0 of a run (its ranks often print nothing) is never stalled alone: node 0 watches the run's
        # output here, and the control plane every node's.
        if self.stall_limit > 0 and not self.node and self.status == "training" and \
                now - self.last_line_at >= self.stall_limit:
            return f"stalled: no output for {int(now - self.last_line_at)} s"
        return None

    def watch(self, done: threading.Event) -> None:
        while not done.wait(1.0):
            for stream in self.outputs:
                self.output(stream, None, time.time())
            reason = self.guard_reason(time.time())
            if reason and not self.stopped_by_pod:
                self.stopped_by_pod = reason
                self.note(f"ending the command: {reason} (enforced by the pod)")
                self.stop_child()

    def on_signal(self, signum: int, frame: object) -> None:
        self.note(f"received signal {signum}; stopping the command (grace {self.grace:.0f} s)")
        self.signalled = True  # the pod is being stopped: the last report must go out within the grace
        self.stop_child()

    def end_pod_through_api(self) -> bool:
        """DELETE /v2/pods/$RUNPOD_POD_ID with the pod's own pod-scoped RUNPOD_API_KEY (RunPod REST v2);
        False when this is no RunPod pod or the call failed (then the terminate command is the fallback)."""
        api, pod, key = self.runpod_api, self.runpod_pod, self.runpod_key
        if not (api and pod and key):
            return False
        req = urllib.request.Request(api.rstrip("/") + "/v2/pods/" + urllib.parse.quote(pod, safe=""),
                                     method="DELETE", headers={"Authorization": "Bearer " + key})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # already gone
                return True
            print(f"podtui agent: RunPod answered {exc.code} to ending the pod", file=sys.stderr)
        except Exception as exc:
            print(f"podtui agent: ending the pod through RunPod's API failed ({exc})", file=sys.stderr)
        return False

    def terminate_pod(self) -> None:
        if not self.terminate_cmd and not self.runpod_api:
            return
        for attempt in range(5):
            if self.end_pod_through_api():
                return
            if self.terminate_cmd:
                result = subprocess.run(["bash", "-c", self.terminate_cmd], capture_output=True, text=True)
                if result.returncode == 0:
                    return
                print(f"podtui agent: ending the pod failed ({result.stderr.strip()}); retrying", file=sys.stderr)
            time.sleep(5 * (attempt + 1))

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        self.reporter.start()
        env = dict(os.environ, PYTHONUNBUFFERED="1", PODTUI_METRICS_FILE=self.metrics_file,
                   PODTUI_OUTPUT_DIR=self.output_dir)
        env.update(cluster_env(env))
        try:
            os.makedirs(self.output_dir, exist_ok=True)
        except OSError as exc:
            self.note(f"cannot create the outputs folder {self.output_dir}: {exc}")
        try:
            child = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        except OSError as exc:
            self.note(f"cannot start {self.command!r}: {exc}")
            return self.finish(127)
        self.child = child
        with open(os.path.join(self.home, "agent.json"), "w") as f:
            json.dump({"agent_pid": os.getpid(), "child_pgid": child.pid}, f)
        done = threading.Event()
        pumps = [threading.Thread(target=self.pump, args=(child.stdout, "stdout"), daemon=True),
                 threading.Thread(target=self.pump, args=(child.stderr, "stderr"), daemon=True),
                 threading.Thread(target=self.tail_metrics_file, args=(done,), daemon=True)]
        for t in pumps:
            t.start()
        threading.Thread(target=self.watch, args=(done,), daemon=True, name="watchdog").start()
        threading.Thread(target=self.sync_while_running, args=(done,), daemon=True, name="outputs").start()
        code = child.wait()
        for t in pumps[:2]:
            t.join(10)
        with self.output_lock, self.seq_lock:  # what the trainer printed last has no bar left to wait for
            self.add_points(self.reader.overdue(time.time(), 0.0), time.time())
            self.live = []
        done.set()
        pumps[2].join(5)
        return self.finish(code)

    def finish(self, code: int) -> int:
        self.reporter.stopping.set()
        self.reporter.wake.set()
        self.reporter.join(30)
        if self.stopped_by_control_plane:
            self.note(f"stopped: {self.stop_reason}")
            self.reporter.drain({}, time.time() + min(10.0, self.unreachable_limit))
            self.terminate_pod()
            return code or 1
        if self.stopped_by_pod:
            final = {"status": "failed", "exit_code": code if -255 <= code <= 255 and code else 1,
                     "stopped": self.stopped_by_pod[:300],
                     "error": f"exit code {code}; last lines:\n" + "\n".join(self.tail)}
        elif code == 0:
            final = {"status": "succeeded", "exit_code": 0}
            self.note("command succeeded")
        else:
            final = {"status": "failed", "exit_code": code if -255 <= code <= 255 else 1,
                     "error": f"exit code {code}; last lines:\n" + "\n".join(self.tail)}
            self.note(f"command failed with exit code {code}")
        self.status = None
        # Everything is delivered, then the pod ends; undelivered, it waits at most undelivered_keep for the
        # control plane (a laptop that sleeps) and ends all the same.
        # A pod past its own limit does not bill another half hour for a report: a minute at most.
        patience = min(10.0, self.grace) if self.signalled else self.undelivered_keep
        if self.signalled and isinstance(self.link, PullLink):
            self.link.timeout = min(self.link.timeout, 5.0)
        if self.stopped_by_pod:
            patience = min(patience, 60.0)
        ended = time.time()
        delivered = self.reporter.drain(final, ended + patience)
        # The keep-alive counts from the command's end, not after a long wait to deliver: a pod whose control
        # plane is away bills the longer of the two, never their sum.
        until = ended + self.keep_alive
        if self.keep_alive > 0 and not (self.stopped_by_control_plane or self.stopped_by_pod or self.signalled):
            if delivered and time.time() < until:
                self.bring_outputs_home(until)
            elif not delivered:
                print("podtui agent: the final report was not delivered; the outputs stay in the pod",
                      file=sys.stderr)
        self.terminate_pod()
        return code

    # outputs
    def sync_while_running(self, done: threading.Event) -> None:
        """Push mode: a sync every PODTUI_SYNC_OUTPUTS_S and whenever the control plane asks, while the command
        runs (the final one is in finish)."""
        if self.sender is None:
            return
        last = time.time()
        while not done.is_set():
            self.want_outputs.wait(1.0)
            due = self.sync_every > 0 and time.time() - last >= self.sync_every
            if done.is_set() or not (self.want_outputs.is_set() or due):
                continue
            self.want_outputs.clear()
            last = time.time()
            try:
                sent, failed = self.sender.sync(False, time.time() + 600, stop=done)
                if sent or failed:
                    self.note(f"outputs sync: {sent} file(s) sent" + (f", {failed} not" if failed else ""))
            except Exception as exc:  # a sync must never take the run down
                self.note(f"outputs sync failed: {exc}")

    def bring_outputs_home(self, until: float) -> None:
        """After the command: the final sync (push), or wait for the control plane's (pull); the keep-alive
        bounds it, and the pod ends as soon as it is complete."""
        files, refused = scan_outputs(self.output_dir)
        if not files and not refused:
            return  # nothing to bring home: the pod ends at once, as it always did
        if not getattr(self, "outputs_wanted", True):
            return  # node k > 0 of a run whose outputs come from node 0 only
        if self.sender is not None:
            self.sender.bound(until)  # a periodic pass under way ends by then (and starts no new file)
            try:
                sent, failed = self.sender.sync(True, until)
            except Exception as exc:
                self.note(f"final outputs sync failed: {exc}")
                return
            self.note(f"outputs home: {sent} file(s) sent" + (f"; {failed} not brought home" if failed else "")
                      + "; ending the pod")
        else:
            self.note(f"waiting at most {until - time.time():.0f} s (keep-alive) for the control plane to fetch "
                      "the outputs")
            while not self.outputs_done.wait(min(1.0, max(0.0, until - time.time()))):
                if self.signalled or time.time() >= until:  # a stop's SIGTERM ends the wait at once
                    break
            if self.outputs_done.is_set():
                self.note("the control plane has the outputs; ending the pod")
            else:
                self.note("the outputs were not all fetched (keep-alive over, or the pod is being stopped); "
                          "ending the pod")
        self.send_notes(min(until, time.time() + 10))

    def send_notes(self, deadline: float) -> None:
        """Deliver the lines still in the outbox (the reporter has stopped), until the deadline."""
        while len(self.outbox) and time.time() < deadline:
            self.reporter.flush_once()
            if self.reporter.failures:
                time.sleep(min(1.0, max(0.0, deadline - time.time())))


# -- pull mode: the control plane comes to the pod -------------------------------------------------

MAX_CHUNK = 32 * 1024 * 1024  # one PUT of an input; well inside the proxy's 100 s limit
MAX_JSON = 64 * 1024
MAX_WAIT = 25.0
SLOT = re.compile(r"^(script|bundle|data-[0-9]{1,6})$")


class PullLink:
    """Stands in for the control plane's URL when the control plane pulls: `post` hands a report over and
    blocks until the control plane has fetched, stored and acknowledged it (then returns its reply), or raises
    after `timeout` (the Reporter then keeps the items and tries again, as when a push fails)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.cond = threading.Condition()
        self.seq = 0
        self.pending: tuple | None = None
        self.acked = 0
        self.reply: dict = {}
        self.timeout = timeout

    def post(self, payload: dict) -> dict:
        body = json.dumps(payload, allow_nan=False)
        with self.cond:
            self.seq += 1
            number = self.seq
            self.pending = (number, body)
            self.cond.notify_all()
            end = time.time() + self.timeout
            while self.acked < number:
                left = end - time.time()
                if left <= 0:
                    raise TimeoutError(f"no control plane fetched the report in {self.timeout:.0f} s")
                self.cond.wait(left)
            return self.reply

    def take(self, wait: float) -> tuple | None:
        """The report waiting to be fetched, waiting up to `wait` seconds for one."""
        end = time.time() + wait
        with self.cond:
            while self.pending is None:
                left = end - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.pending

    def ack(self, number: int, reply: dict) -> bool:
        with self.cond:
            if self.pending is None or self.pending[0] != number:
                return False
            self.acked, self.reply, self.pending = number, reply, None
            self.cond.notify_all()
            return True


class BoundedServer(http.server.ThreadingHTTPServer):
    """At most MAX_CONNECTIONS requests at once: more are closed unanswered (the port is public)."""

    slots = threading.BoundedSemaphore(32)

    def process_request(self, request: typing.Any, client_address: typing.Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: typing.Any, client_address: typing.Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class PodPort:
    """What the control plane finds on the pod's port: inputs uploaded in chunks (resumable, sha256 checked),
    the start signal, the outbox (long poll) and its acknowledgements. Every request carries the run's pod
    token; bodies are bounded; files are named by fixed slots, never by a path from the network."""

    def __init__(self, home: str, token: str, link: PullLink) -> None:
        self.dir = os.path.join(home, "inputs")
        os.makedirs(self.dir, exist_ok=True)
        self.token = token.encode()
        self.link = link
        self.lock = threading.Lock()
        self.done: dict = {}
        self.started = threading.Event()
        self.last_contact = time.time()
        self.limit = int(os.environ.get("PODTUI_INPUTS_LIMIT") or 1 << 40)
        self.received = 0
        self.sent: dict = {}
        """(path, size, mtime) -> (bytes sent in order from the start, their sha256 object)."""
        self.hashes: dict = {}
        """(path, size, mtime) -> sha256 hex, once asked for."""
        self.listed: dict = {}
        """The outputs of the last listing: name -> (real path, size, mtime); only these are ever read."""
        # outputs (pull mode): the agent sets these to its own
        self.output_dir = ""
        self.outputs_done = threading.Event()

    def path(self, slot: str) -> str:
        return os.path.join(self.dir, slot)

    def size(self, slot: str) -> int:
        try:
            return os.path.getsize(self.path(slot))
        except OSError:
            return 0

    def state(self) -> dict:
        names = sorted(n for n in os.listdir(self.dir) if SLOT.match(n))
        return {"started": self.started.is_set(),
                "inputs": {n: {"size": self.size(n), "done": self.done.get(n, False)} for n in names}}

    def put(self, slot: str, offset: int, data: bytes) -> tuple:
        with self.lock:
            if self.done.get(slot):
                return 409, {"size": self.size(slot), "error": "already complete"}
            have = self.size(slot)
            if offset != have:
                return 409, {"size": have, "error": f"expected offset {have}"}
            if self.received + len(data) > self.limit:
                return 413, {"error": f"inputs over {self.limit} bytes"}
            with open(self.path(slot), "ab") as f:
                f.write(data)
            self.received += len(data)
            return 200, {"size": have + len(data)}

    def finish(self, slot: str, sha256: str, size: int) -> tuple:
        with self.lock:
            if self.done.get(slot):
                return 200, {"size": self.size(slot), "done": True}
            digest = hashlib.sha256()
            try:
                with open(self.path(slot), "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            except OSError:
                return 404, {"error": "nothing uploaded"}
            if self.size(slot) != size or digest.hexdigest() != sha256:
                os.unlink(self.path(slot))  # start over: a wrong byte anywhere cannot be found by offset
                return 422, {"error": "size or sha256 does not match; upload it again"}
            self.done[slot] = True
            return 200, {"size": size, "done": True}

    def list_outputs(self) -> dict:
        """The outputs folder now; remembered, so only files of a listing are ever read."""
        files, refused = scan_outputs(self.output_dir) if self.output_dir else ([], [])
        with self.lock:
            self.listed = {n: (p, s, m) for n, p, s, m in files}
        return {"files": [{"path": n, "size": s, "mtime": m} for n, _, s, m in files][:10000],
                "refused": [{"path": n, "why": w} for n, w in refused][:100]}

    def output_path(self, name: str, size: int, mtime: float) -> str | None:
        """The real path of a listed file, when it is still as listed."""
        with self.lock:
            found = self.listed.get(name)
        if found is None or found[1] != size or found[2] != mtime:
            return None
        try:
            st = os.stat(found[0])
        except OSError:
            return None
        return found[0] if st.st_size == size and st.st_mtime == mtime else None

    def output_sha256(self, path: str, size: int, mtime: float) -> str:
        """A file's sha256 (kept per version: the control plane may ask again after a restart): the hash of what
        was sent when the file went out whole and in order, else read from the file (a resumed transfer)."""
        key = (path, size, mtime)
        cache = self.hashes
        if key not in cache:
            with self.lock:
                at, digest = self.sent.pop(key, (0, None))
            whole = digest is not None and at == size
            cache[key] = (digest if whole else hash_prefix(path, size)).hexdigest()
        return str(cache[key])

    def sent_hash(self, key: tuple, offset: int) -> typing.Any:
        """A sha256 to feed the range of a file version sent from `offset`: the one of everything sent before it,
        in order from the start (a copy), or None when that is not what was sent (the pod reads the file to hash it
        instead: for a 10 GB checkpoint, a second read while the pod bills)."""
        with self.lock:
            at, digest = self.sent.get(key, (0, None))
        if offset == 0:
            return hashlib.sha256()
        return digest.copy() if digest is not None and at == offset else None

    def sent_to(self, key: tuple, offset: int, end: int, digest: typing.Any) -> None:
        """A range [offset, end) went out whole, fed to `digest`: it now covers the file up to `end` (a transfer
        started again from 0 starts it again)."""
        with self.lock:
            at, _ = self.sent.get(key, (0, None))
            if at == offset or offset == 0:
                if len(self.sent) >= 1000 and key not in self.sent:
                    self.sent.clear()  # bounded: versions abandoned mid-file
                self.sent[key] = (end, digest)

    def serve(self, port: int) -> http.server.ThreadingHTTPServer:
        pod = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 90  # a client that stops sending mid-request does not hold a thread forever

            def log_message(self, *args: object) -> None:  # the run's log has what matters; never the token
                pass

            def answer(self, code: int, obj: object = None) -> None:
                body = b"" if obj is None else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def authorized(self) -> bool:
                given = self.headers.get("Authorization", "")
                ok = given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), pod.token)
                if ok:
                    pod.last_contact = time.time()
                else:
                    self.close_connection = True
                    self.answer(401, {"error": "missing or wrong token"})
                return ok

            def body(self, limit: int) -> bytes | None:
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self.close_connection = True
                    self.answer(411, {"error": "Content-Length required"})
                    return None
                if length < 0 or length > limit:
                    self.close_connection = True
                    self.answer(413, {"error": f"body over {limit} bytes"})
                    return None
                return self.rfile.read(length)

            def route(self) -> tuple:
                url = urllib.parse.urlsplit(self.path)
                return url.path.strip("/").split("/"), dict(urllib.parse.parse_qsl(url.query))

            def do_GET(self) -> None:
                if not self.authorized():
                    return
                parts, query = self.route()
                if parts == ["v1", "state"]:
                    self.answer(200, pod.state())
                elif parts == ["v1", "outbox"]:
                    try:
                        wait = min(MAX_WAIT, max(0.0, float(query.get("wait", "0"))))
                    except ValueError:
                        wait = 0.0
                    pending = pod.link.take(wait)
                    if pending is None:
                        self.answer(204)
                    else:
                        self.answer(200, {"seq": pending[0], "report": json.loads(pending[1])})
                elif parts[:2] == ["v1", "outputs"] and len(parts) <= 3:
                    self.outputs(parts[2:], query)
                else:
                    self.answer(404, {"error": "no such route"})

            def outputs(self, rest: list, query: dict) -> None:
                """GET /v1/outputs (the listing), /v1/outputs/file?path=&size=&mtime=&offset=&length= (a range),
                /v1/outputs/sha256?path=&size=&mtime=. Only files of the last listing are read."""
                if not rest:
                    self.answer(200, pod.list_outputs())
                    return
                try:
                    name, size, mtime = query["path"], int(query["size"]), float(query["mtime"])
                    offset, length = int(query.get("offset", "0")), int(query.get("length", "0"))
                except (KeyError, ValueError):
                    self.answer(400, {"error": "path, size, mtime (and offset, length) are required"})
                    return
                path = pod.output_path(name, size, mtime)
                if path is None:
                    self.answer(409, {"error": "not in the listing, or changed since"})
                elif rest == ["sha256"]:
                    self.answer(200, {"sha256": pod.output_sha256(path, size, mtime), "size": size, "mtime": mtime})
                elif rest == ["file"] and 0 <= offset <= size and 0 <= length <= OUTPUT_PIECE:
                    self.send_range(path, offset, min(length, size - offset), (path, size, mtime))
                else:
                    limit = OUTPUT_PIECE >> 20
                    self.answer(400, {"error": f"want an offset within the file and a length up to {limit} MiB"})

            def send_range(self, path: str, offset: int, length: int, key: tuple) -> None:
                try:
                    f = open(path, "rb")  # noqa: SIM115 (closed by the with below; a failed open answers 409)
                except OSError:
                    self.answer(409, {"error": "the file is gone"})
                    return
                digest = pod.sent_hash(key, offset)
                if digest is not None and length == 0:
                    pod.sent_to(key, offset, offset, digest)
                with f:
                    f.seek(offset)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    left = length
                    while left > 0:
                        block = f.read(min(SEND_BLOCK, left))
                        if not block:  # it shrank: the control plane sees a short body and the hash will not match
                            self.close_connection = True
                            return
                        left -= len(block)
                        if digest is not None:
                            digest.update(block)
                            if left == 0:
                                # before the last bytes go: the next request may come on another connection as
                                # soon as they arrive. Should they not, the control plane asks from an offset short
                                # of this one, and the hash is read from the file instead.
                                pod.sent_to(key, offset, offset + length, digest)
                        self.wfile.write(block)

            def do_PUT(self) -> None:
                if not self.authorized():
                    return
                parts, query = self.route()
                if len(parts) != 3 or parts[:2] != ["v1", "inputs"] or not SLOT.match(parts[2]):
                    self.close_connection = True
                    self.answer(404, {"error": "no such input"})
                    return
                try:
                    offset = int(query.get("offset", "0"))
                except ValueError:
                    offset = -1
                data = self.body(MAX_CHUNK)
                if data is not None:
                    self.answer(*pod.put(parts[2], offset, data))

            def do_POST(self) -> None:
                if not self.authorized():
                    return
                parts, query = self.route()
                raw = self.body(MAX_JSON)
                if raw is None:
                    return
                if len(parts) == 4 and parts[:2] == ["v1", "inputs"] and SLOT.match(parts[2]) \
                        and parts[3] == "done":
                    try:
                        size = int(query.get("size", ""))
                    except ValueError:
                        self.answer(400, {"error": "size must be an integer"})
                        return
                    self.answer(*pod.finish(parts[2], query.get("sha256", ""), size))
                elif parts == ["v1", "start"]:
                    missing = [n for n in ("script",) if not pod.done.get(n)]
                    if missing:
                        self.answer(409, {"error": "inputs missing: " + ", ".join(missing)})
                        return
                    pod.started.set()
                    self.answer(200, {"started": True})
                elif parts == ["v1", "outputs", "done"]:
                    pod.outputs_done.set()
                    self.answer(200, {"done": True})
                elif parts == ["v1", "ack"]:
                    try:
                        obj = json.loads(raw)
                        number, reply = int(obj["seq"]), obj.get("reply") or {}
                    except (ValueError, KeyError, TypeError):
                        self.answer(400, {"error": "want {seq, reply}"})
                        return
                    if not isinstance(reply, dict):
                        reply = {}
                    self.answer(200 if pod.link.ack(number, reply) else 409, {"seq": number})
                else:
                    self.answer(404, {"error": "no such route"})

        server = BoundedServer((os.environ.get("PODTUI_POD_BIND") or "0.0.0.0", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True, name="pod-port").start()
        return server


def pull_main(env: typing.Mapping[str, str]) -> int:
    """Pull mode: serve the pod's port, wait for the control plane's inputs and its start, then run the start
    script under the agent as in push mode (reports leave through the port)."""
    home = env.get("PODTUI_HOME") or os.path.join(os.path.expanduser("~"), "podtui")
    os.makedirs(home, exist_ok=True)
    link = PullLink()
    port = PodPort(home, env["PODTUI_POD_TOKEN"], link)
    port.serve(int(env.get("PODTUI_POD_PORT") or 8419))
    agent = Agent(["bash", port.path("script")], env, link=link)
    port.output_dir, port.outputs_done = agent.output_dir, agent.outputs_done
    signal.signal(signal.SIGTERM, agent.on_signal)
    # No control plane came to start it (a laptop closed before the upload): the pod must not bill forever.
    # Counted from the control plane's last request, so a slow upload is not cut short.
    patience = float(env.get("PODTUI_BOOT_TIMEOUT_S") or 1800)
    while not port.started.wait(1.0):
        if agent.signalled:
            return 143
        if time.time() > port.last_contact + patience:
            print("podtui agent: no control plane started this pod in time; ending it", file=sys.stderr)
            agent.terminate_pod()
            return 1
    return agent.run()


def main(argv: list) -> int:
    if argv == ["pull"]:
        return pull_main(os.environ)
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        print("usage: agent.py run -- COMMAND [ARG ...] | agent.py pull", file=sys.stderr)
        return 2
    return Agent(argv[2:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
