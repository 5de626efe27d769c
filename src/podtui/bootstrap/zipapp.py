"""The pod agent as one file: a zipapp of the `bootstrap/agent` package, the same bytes for the same source.

Pods fetch it (push: GET /api/v1/boot/{run}/agent) or get it in their env (pull: PODTUI_AGENT_Z, zlib + base64) and
run `python3 agent.pyz run -- ...` / `python3 agent.pyz pull`. Inside, the package is `podtui_agent/` (its modules
import each other relatively, so the name is free) beside a `__main__.py` that calls its `main`. Every entry has a
fixed timestamp and fixed permissions, and the entries are sorted, so the bytes depend on the sources' text alone.

The modules travel without their comments and docstrings (`shipped_source`), on the same line numbers as in the
repository, so a traceback from a pod points at the right lines here: the env value stays well inside its budget
(RunPod documents no limit on an env value; a test holds it under 40,000 characters) as the agent grows.
"""

from __future__ import annotations

import functools
import io
import tokenize
import zipfile
from pathlib import Path

AGENT_DIR = Path(__file__).parent / "agent"
PACKAGE = "podtui_agent"
ENTRY = f"""import sys

from {PACKAGE}.__main__ import main

sys.exit(main(sys.argv[1:]))
"""
EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
MODE = 0o100644  # a regular file, rw-r--r--


def shipped_source(source: str) -> str:
    """A module's source without comments and docstrings (a statement that is a string alone, whatever its place),
    each line where it was: a removed docstring leaves `""` on its first line and empty lines after it."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    cuts = []
    previous = tokenize.NEWLINE
    for i, token in enumerate(tokens):
        if token.type == tokenize.COMMENT:
            cuts.append((token.start, token.end, token.string))
        elif token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            after = next(t for t in tokens[i + 1:] if t.type not in (tokenize.COMMENT, tokenize.NL))
            if after.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                cuts.append((token.start, token.end, token.string))
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token.type
    lines = source.splitlines(keepends=True)
    # Rows, and a docstring's first column (indentation), are what is used of the tokens' positions: Python 3.12.1
    # gives the end of a string with non-ASCII text in it in bytes, not characters.
    for (row, col), (end_row, _), text in reversed(cuts):
        if text.startswith("#"):  # a comment runs to the end of its line
            line = lines[row - 1].rstrip("\r\n")
            lines[row - 1] = line[:len(line) - len(text)].rstrip() + "\n"
        else:  # a docstring: nothing but a comment follows it on its last line
            lines[row - 1:end_row] = [lines[row - 1][:col] + '""\n'] + ["\n"] * (end_row - row)
    return "".join(lines)


def build_zipapp(source: Path = AGENT_DIR) -> bytes:
    """The zipapp of the agent package in `source` (its *.py files; nothing else, no caches)."""
    entries = {f"{PACKAGE}/{path.name}": shipped_source(path.read_text(encoding="utf-8")).encode()
               for path in source.glob("*.py")}
    entries["__main__.py"] = ENTRY.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.compress_type = zipfile.ZIP_STORED  # the env value compresses the whole (files share words)
            info.create_system = 3  # unix, wherever it is built: the permissions below are unix ones
            info.external_attr = MODE << 16
            archive.writestr(info, entries[name])
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def agent_zipapp() -> bytes:
    """The agent shipped to pods (built once per process: its sources do not change under a running server)."""
    return build_zipapp()
