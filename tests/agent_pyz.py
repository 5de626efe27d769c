"""The pod agent as pods run it: the zipapp that the control plane serves, built once per test process."""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from podtui.bootstrap.zipapp import agent_zipapp


@functools.cache
def agent_pyz() -> Path:
    """The path of the agent's zipapp (named by its content, so parallel test processes share it safely)."""
    data = agent_zipapp()
    path = Path(tempfile.gettempdir()) / f"podtui-agent-{hashlib.sha256(data).hexdigest()[:16]}.pyz"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, path)
    return path
