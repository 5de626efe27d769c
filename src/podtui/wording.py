"""Wording the CLI and the TUI both show: a run's status as the user reads it, a launch spec's problems in words.

Core and light: no textual, and nothing heavy at import (the pydantic models only where a function needs them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

    from .models import Run
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
}
"""What a LaunchSpec field's pattern asks for, in words."""
_DURATION_FIELDS = {"max_runtime_s", "keep_alive_s", "sync_outputs_s", "min_gpu_util_s"}


def _plain(number: Any) -> str:
    """0 and 100000, not 0.0 and 100000.0."""
    return f"{number:g}" if isinstance(number, float) else str(number)


def spec_problems(exc: ValidationError, name_of: Callable[[str], str]) -> str:
    """A LaunchSpec's problems as a person reads them, each named by `name_of(field)` (a CLI option, a form's
    label): in words, where pydantic shows a regular expression, or a limit in seconds for a duration typed in
    days."""
    from .models.limits import MAX_DURATION_S  # the models are loaded already: `exc` is theirs

    problems = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        kind, ctx = err["type"], err.get("ctx") or {}
        if kind == "string_pattern_mismatch":
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
