"""schemathesis against the live control plane's own OpenAPI description: every check, a fixed seed, a time
budget (90 s: CI's whole run must stay under 15 minutes). The provider records instead of creating pods.
bench/fuzz.py runs the same, longer.

The event stream (/api/v1/events) is excluded: it never ends by design (tests/server/test_events.py covers it).
"""

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from tests.support import RecordingProvider, make_settings, start_plane

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")


def schemathesis_args(url: str, token: str, examples: int, seconds: int,
                      phases: str = "examples,coverage,fuzzing") -> list[str]:
    """CI runs the phases a seed makes repeatable; the stateful phase follows the server's random ids and tokens,
    so it runs in bench/fuzz.py (phases="examples,coverage,fuzzing,stateful")."""
    return [SCHEMATHESIS, "run", f"{url}/api/v1/openapi.json", "--checks", "all", "--seed", "1", "--phases", phases,
            "-n", str(examples), "--max-time", str(seconds), "--request-timeout", "10",
            "--exclude-path", "/api/v1/events", "-H", f"Authorization: Bearer {token}", "--no-color"]


@pytest.mark.timeout(240)
async def test_schemathesis_finds_nothing(tmp_path):
    if not Path(SCHEMATHESIS).exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    plane = await start_plane(make_settings(tmp_path), {"local": RecordingProvider()})
    try:
        proc = await asyncio.create_subprocess_exec(
            *schemathesis_args(plane.url, plane.control.admin_token, 8, 90), cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
    finally:
        await plane.http.aclose()
        await plane.control.stop()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
