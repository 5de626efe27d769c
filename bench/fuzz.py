"""A longer schemathesis run than CI's (tests/server/test_fuzz.py): every check, fixed seed, more examples.

    python bench/fuzz.py [--examples 100] [--seconds 900]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import RecordingProvider, make_settings, start_plane
from tests.server.test_fuzz import schemathesis_args


async def main(examples: int, seconds: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="podtui-fuzz-"))
    plane = await start_plane(make_settings(work), {"local": RecordingProvider()})
    try:
        args = schemathesis_args(plane.url, plane.control.admin_token, examples, seconds,
                                 phases="examples,coverage,fuzzing,stateful")
        proc = await asyncio.create_subprocess_exec(*args, cwd=work)
        return await proc.wait()
    finally:
        await plane.http.aclose()
        await plane.control.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=900)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.examples, args.seconds)))
