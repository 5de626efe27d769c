"""A file's sha256, read in 1 MiB blocks: datasets at registration, a pull-mode bundle before upload, an output
copied out by the client (the pod agent has its own copy: it is standard library only and travels alone)."""

from __future__ import annotations

import hashlib
import os

_BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
