"""Helpers for end-to-end runs: what the demo trainer printed, and process checks."""

from __future__ import annotations

import json
import re
from typing import Any

STEP_LINE = re.compile(r"^step=(\d+) loss=(\S+) lr=(\S+)$")


def printed_metrics(lines: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """The metrics the demo trainer printed, read from the stored log lines without the agent's parser."""
    out: dict[tuple[str, int], float] = {}
    for line in lines:
        text = line["text"]
        m = STEP_LINE.match(text)
        if m:
            step = int(m.group(1))
            out[("loss", step)] = float(m.group(2))
            out[("lr", step)] = float(m.group(3))
        elif text.startswith('{"step"'):
            obj = json.loads(text)
            out[("eval_loss", obj["step"])] = obj["eval_loss"]
    return out


def stored_metrics(page: dict[str, Any]) -> dict[tuple[str, int], float]:
    return {(name, step): value for name, series in page["series"].items()
            for step, value in zip(series["steps"], series["values"], strict=True)}


from podtui.providers.local import group_alive  # noqa: E402,F401  (re-exported for the tests)
