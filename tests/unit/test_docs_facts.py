"""Numbers the docs state are the code's (architecture.md gave 30 min for the unreachable limit; the code: 12 h)."""

import re
from pathlib import Path

from podtui.config import Settings
from podtui.fmt import format_duration

ROOT = Path(__file__).resolve().parents[2]


def test_the_unreachable_limit_the_docs_give_is_the_default():
    default = Settings.model_fields["pod_unreachable_limit_s"].default
    assert default == 12 * 3600
    for doc in ("docs/architecture.md", "README.md"):
        text = (ROOT / doc).read_text()
        for m in re.finditer(r"UNREACHABLE_LIMIT_S`?\s*\(default ([^,)]+)", text):
            assert m.group(1).strip() in ("12 h", format_duration(default)), (doc, m.group(0))
