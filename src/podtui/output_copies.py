"""`podtui outputs RUN --to DIR` remembers what it copied (`DIR/.podtui-copies.json`: each file's sha256 as copied),
so that a later copy never replaces a file the user changed since, nor one it did not put there, without --force."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from .digest import sha256_file

RECORD_NAME = ".podtui-copies.json"

CopyPlan = Literal["copy", "same", "changed", "foreign"]
"""copy: absent, or as we left it; same: already the run's version; changed: the user changed our copy since;
foreign: a file we never put there."""


def read_record(folder: Path) -> dict[str, str]:
    """What was copied into `folder` before: relative path -> sha256 as written (empty when none or unreadable)."""
    try:
        data = json.loads((folder / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def write_record(folder: Path, record: dict[str, str]) -> None:
    """Save the record (atomically: a cut write leaves the old one)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (RECORD_NAME + ".tmp")
    tmp.write_text(json.dumps({"files": dict(sorted(record.items()))}, indent=1) + "\n")
    os.replace(tmp, folder / RECORD_NAME)


def plan_copy(dest: Path, remote_sha: str, copied_sha: str | None) -> CopyPlan:
    """What copying a file whose version at home has `remote_sha` onto `dest` would do."""
    if not dest.exists():
        return "copy"
    here = sha256_file(dest) if dest.is_file() else ""
    if here == remote_sha:
        return "same"
    if copied_sha is None:
        return "foreign"
    return "copy" if here == copied_sha else "changed"
