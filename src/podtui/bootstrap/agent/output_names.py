"""Which names may be outputs: one pure check, made by the pod agent (names it sends), the control plane (names from
a pod) and the client (names from a control plane, before writing under --to). It lives in the agent package, which
imports nothing of podtui; the control plane and the client import it from here."""

from __future__ import annotations

MAX_NAME_BYTES = 1024
MAX_PART_BYTES = 255


def output_name_problem(name: str) -> str | None:
    """Why a file name from a pod cannot be an output (None when it can): it must be a relative path of plain
    parts inside the folder."""
    if not name:
        return "an empty name"
    if "\x00" in name:
        return "a NUL byte in the name"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a control character in the name"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "a name that is not UTF-8"
    if len(encoded) > MAX_NAME_BYTES:
        return f"a name over {MAX_NAME_BYTES} bytes"
    if name.startswith("/"):
        return "an absolute path"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "`..`, `.` or an empty part in the path (it would leave the outputs folder)"
    if any(len(p.encode("utf-8")) > MAX_PART_BYTES for p in parts):
        return f"a part of the path over {MAX_PART_BYTES} bytes"
    if parts[0] == ".partial":
        return "the reserved name .partial"
    return None


def printable(name: str) -> str:
    """A name as text any JSON parser and terminal takes (bytes that are not UTF-8 shown as escapes)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")[:300]
