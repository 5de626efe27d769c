"""The start script's inputs for a dataset the pod fetches from its source (https, S3, the Hub) with fetch.py:
into a content-addressed cache, on the run's volume when it has one, so a later run there moves no byte."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

FETCH_INPUTS = r"""echo "##podtui status downloading"
log "fetching dataset $DATASET_NAME ($DATASET_SIZE bytes) from its source, $DATASET_SOURCE"
if [ -n "${PODTUI_VOLUME:-}" ]; then CACHE="$PODTUI_VOLUME/podtui/datasets"; else CACHE="$DATA/cache"; fi
cat > "$DIR/fetch.py" <<'PODTUI_FETCH_PY_END'
__FETCH_PY__
PODTUI_FETCH_PY_END
umask 077  # the plan may hold a Hub token; fetch.py deletes it once read
python3 -c 'import base64,sys;sys.stdout.buffer.write(base64.b64decode(sys.argv[1]))' "$FETCH_PLAN" \
  > "$DIR/fetch-plan.json"
umask 022
python3 "$DIR/fetch.py" "$DIR/fetch-plan.json" "$DIR/dataset-path" "$CACHE"
PODTUI_DATASET_PATH=$(cat "$DIR/dataset-path")
echo "##podtui progress $DATASET_SIZE $DATASET_SIZE"
log "dataset ready at $PODTUI_DATASET_PATH"
"""


def fetcher_source() -> str:
    """bootstrap/fetch.py, as the start script writes it on the pod."""
    text = (Path(__file__).parent / "fetch.py").read_text()
    if "PODTUI_FETCH_PY_END" in text:
        raise RuntimeError("fetch.py must not contain its heredoc's end marker")
    return text


def plan_value(plan: dict[str, Any]) -> str:
    """The plan as the start script carries it (base64 of its JSON: no quoting to get wrong)."""
    return base64.b64encode(json.dumps(plan, separators=(",", ":")).encode()).decode()


def fetch_inputs(bundle_block: str) -> str:
    """The inputs part of the start script: the fetch, then the code bundle as the connection mode brings it."""
    return FETCH_INPUTS.replace("__FETCH_PY__", fetcher_source().rstrip("\n")) + "\n" + bundle_block
