"""Wording the CLI and the TUI both show: a run's status as the user reads it, a launch spec's problems in words,
a run's outputs and its wait for data in a line.

Core and light: no textual, and nothing heavy at import (the pydantic models only where a function needs them).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .fmt import format_bytes, format_duration

if TYPE_CHECKING:
    from pydantic import ValidationError

    from .models import Run, Volume
    from .stored_runs import StoredRun

POD_END_FAILED_LABEL = "pod end failed"
"""A run's status where its pod could not end itself: shown in red until podtui has ended it."""


def status_label(run: Run | StoredRun) -> str:
    """The status as the user reads it: a pod that could not end itself outranks how the run ended."""
    return POD_END_FAILED_LABEL if run.pod_end_failed else run.status.value


_SPEC_PATTERNS = {
    "name": "letters, digits, `.`, `_` and `-`, starting with a letter or digit",
    "image": "an image reference with no spaces, like runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
    "min_cuda_version": "a version like 12.8",
    "workdir": "an absolute path",
    "provider": "local or runpod",
    "env": "names of letters, digits and _ (not starting with a digit)",
    "data_center": "a RunPod data center id like EU-RO-1",
}
"""What a LaunchSpec (or VolumeCreate) field's pattern asks for, in words."""
_DURATION_FIELDS = {"max_runtime_s", "keep_alive_s", "sync_outputs_s", "min_gpu_util_s"}


def _plain(number: Any) -> str:
    """0 and 100000, not 0.0 and 100000.0."""
    return f"{number:g}" if isinstance(number, float) else str(number)


def spec_problems(exc: ValidationError, name_of: Callable[[str], str]) -> str:
    """A LaunchSpec's (or a VolumeCreate's) problems as a person reads them, each named by `name_of(field)` (a CLI
    option, a form's label): in words, where pydantic shows a regular expression, or a limit in seconds for a
    duration typed in days."""
    from .models.limits import MAX_DURATION_S  # the models are loaded already: `exc` is theirs

    problems = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        kind, ctx = err["type"], err.get("ctx") or {}
        if isinstance(err.get("input"), float) and not math.isfinite(err["input"]):
            said = "must be a number (not nan or inf)"
        elif kind == "string_pattern_mismatch":
            said = f"must be {_SPEC_PATTERNS.get(field, 'plain text without control characters')}"
        elif kind == "greater_than_equal":
            said = f"must be at least {_plain(ctx.get('ge'))}"
        elif kind == "greater_than":
            said = f"must be more than {_plain(ctx.get('gt'))}"
        elif kind == "less_than_equal" and field in _DURATION_FIELDS:
            said = f"must be at most {MAX_DURATION_S // 86400} days"
        elif kind == "less_than_equal":
            said = f"must be at most {_plain(ctx.get('le'))}"
        elif kind == "string_too_short":
            said = "must not be empty" if ctx.get("min_length") == 1 else \
                f"must be at least {ctx.get('min_length')} characters"
        elif kind == "string_too_long":
            said = f"must be at most {ctx.get('max_length')} characters"
        else:
            said = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{name_of(field)}: {said}")
    return "; ".join(dict.fromkeys(problems))


def outputs_line(page: Any, more_may_come: bool = True, now: float | None = None) -> str:
    """One line for a run's outputs: "outputs: 3 files, 1.2 GiB, home", or what still moves and until when;
    "none yet" while `more_may_come` (`Run.pod_in_use`), else "none"."""
    s = page.summary
    now = _time.time() if now is None else now
    text = f"outputs: {s.files_home} file{'s' if s.files_home != 1 else ''}, {format_bytes(s.bytes_home)}"
    if s.state == "home":
        return text + ", home"
    if s.state == "moving":
        text += f"; {s.files_moving} moving ({format_bytes(s.bytes_received)} of {format_bytes(s.bytes_moving)})"
    elif s.state == "none":
        text = "outputs: none yet" if more_may_come else "outputs: none"
    if s.pod_until:
        text += f"; the pod ends in {format_duration(max(0.0, s.pod_until - now))} at the latest (keep-alive)"
    return text


def volume_outputs_line(volume: Any) -> str:
    """Where a run's outputs are on its volume (`--outputs-on-volume`): "outputs on volume data: 2 files,
    1.2 GiB in s3://vol/podtui/outputs/RUN/ (/workspace/podtui/outputs/RUN/ in a pod)"."""
    n = len(volume.files)
    size = format_bytes(sum(f.size or 0 for f in volume.files))
    text = f"outputs on volume {volume.volume}: {n} file{'s' if n != 1 else ''}, {size} in {volume.location}"
    if volume.location != volume.path:
        text += f" ({volume.path} in a pod)"
    return text + (f"; {volume.note}" if volume.note else "")


def fields_named(message: str, name_of: Callable[[str], str]) -> str:
    """The control plane's refusal of a launch (`gpu_types: the local provider offers only …; …`) with each
    LaunchSpec field it names as `name_of(field)` says (a CLI option, a form's label), as `spec_problems` does."""
    from .models import LaunchSpec  # loaded already: a launch was asked for

    parts = []
    for part in message.split("; "):
        field, sep, rest = part.partition(": ")
        parts.append(f"{name_of(field)}: {rest}" if sep and field in LaunchSpec.model_fields else part)
    return "; ".join(parts)


def volume_losses(volume: Volume, runs: Iterable[Run]) -> str:
    """What deleting a volume takes with it, said before asking: the datasets cached on it, the outputs of runs
    written to it (--outputs-on-volume sent them nowhere else) and how to copy those first, and its bill."""
    said = []
    if volume.cached:
        said.append(f"The {len(volume.cached)} dataset(s) cached on it go too.")
    outputs = [r.id for r in runs if r.provider == volume.provider and r.spec.volume == volume.name
               and r.spec.outputs_on_volume]
    if outputs:
        said.append(f"So do the outputs of {len(outputs)} run(s) written to it, kept nowhere else ("
                    + ", ".join(outputs[:5]) + (", …" if len(outputs) > 5 else "")
                    + f"); `podtui outputs {outputs[0]} --to DIR` copies them here first.")
    if volume.provider == "runpod" and volume.price_per_month is not None:
        said.append(f"Its ${volume.price_per_month:.2f}/month billing ends.")
    return " ".join(said)


def data_wait_text(wait_s: float | None, wait_usd: float | None, still: bool = False) -> str:
    """A run's wait for its data: `1m05s ($0.12)`, `3s so far`, or `-`."""
    if wait_s is None:
        return "-"
    cost = f" (${wait_usd:.2f})" if wait_usd else ""
    return f"{format_duration(wait_s)}{cost}" + (" so far" if still else "")
