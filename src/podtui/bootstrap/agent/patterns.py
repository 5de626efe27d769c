"""What one printed line says, as pure functions: the metrics it carries (JSON objects, Hugging Face Trainer
dicts, `key=value` lines), the progress bar it may be a drawing of (tqdm, Lightning, Keras), and the line as it is
stored (`shorten`)."""

from __future__ import annotations

import ast
import json
import re

MAX_LINE = 16 * 1024
STEP_KEYS = ("step", "global_step", "iteration", "iter", "it")


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


KEEP = MAX_LINE // 2 - 64  # characters kept at each end of a line over MAX_LINE
_CUT = "KiB cut]…"


def shorten(text: str, cut: int = 0) -> str:
    """A printed line as one stored line: a line over MAX_LINE keeps its head and its end, with how much was
    cut between ("…[N KiB cut]…"); `cut` is what was cut from its middle already (bytes, UTF-8)."""
    if len(text) <= MAX_LINE and not cut:
        return text
    if len(text) > 2 * KEEP:
        cut += len(text[KEEP:len(text) - KEEP].encode("utf-8", "replace"))
        text = text[:KEEP] + text[len(text) - KEEP:]
    return f"{text[:KEEP]}…[{max(1, round(cut / 1024))} {_CUT}{text[KEEP:]}"


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


def _pair_values(text: str) -> dict | None:
    """The `name=value` / `name: value` pairs of a line that has no step of its own (two at least), else None."""
    values: dict = {}
    for key, raw in _PAIR.findall(text):
        if key.lower() in STEP_KEYS:
            return None
        values.setdefault(key, _to_float(raw))
    return values if len(values) >= 2 else None
