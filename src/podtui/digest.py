"""A file's sha256, read in 1 MiB blocks: datasets at registration, a pull-mode bundle before upload, an output
copied out by the client (the pod agent has its own copy: it is standard library only and travels alone)."""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

_BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content."""
    return sha256_of(path).hexdigest()


def sha256_of(path: str | os.PathLike[str], limit: int | None = None) -> Any:
    """The SHA-256 object of a file's first `limit` bytes (all of it when None), to go on updating."""
    digest = hashlib.sha256()
    left = math.inf if limit is None else limit
    with open(path, "rb") as f:
        while left > 0 and (block := f.read(int(min(_BLOCK, left)))):
            digest.update(block)
            left -= len(block)
    return digest
