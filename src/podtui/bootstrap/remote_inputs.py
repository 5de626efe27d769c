"""The start script's inputs for a dataset the pod fetches from its source (https, S3, the Hub) with fetch.py:
into a content-addressed cache, on the run's volume when it has one, so a later run there moves no byte; and, in
pull mode with a volume, a local dataset the control plane uploaded into that same cache (or found there)."""

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


VOLUME_INPUTS = r"""echo "##podtui status downloading"
# Pull mode with a volume: the dataset is in the volume's cache (the control plane asked the pod and uploaded
# nothing), or its files were uploaded onto the volume ($PODTUI_UPLOADS) and are renamed into the cache here.
printf '%s' "$CACHE_PLAN" | python3 -c 'import base64,sys;sys.stdout.buffer.write(base64.b64decode(sys.stdin.read()))' \
  > "$DIR/cache-plan.json"
python3 - "$DIR/cache-plan.json" "$DIR/dataset-path" "$DIR/dataset-fetched.json" <<'PODTUI_PLACE_PY_END'
import json, os, shutil, sys, time
plan_file, path_file, fetched_file = sys.argv[1:4]
with open(plan_file) as f:
    plan = json.load(f)
final = os.path.join(os.environ["PODTUI_VOLUME"], "podtui", "datasets", plan["key"])
uploads = os.environ.get("PODTUI_UPLOADS", "")
hit = os.path.isfile(os.path.join(final, ".complete"))
stamp = lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
if not hit:
    missing = [slot for slot, _ in plan["files"] if not os.path.isfile(os.path.join(uploads, slot))]
    if missing:
        sys.exit("%s [podtui] dataset %s: not in the volume's cache and not uploaded (%d file(s) missing: the cache "
                 "changed since the control plane looked); launch again" % (stamp(), plan["name"], len(missing)))
    partial = "%s.partial-%s" % (final, os.path.basename(uploads.rstrip("/")))
    shutil.rmtree(partial, ignore_errors=True)
    for slot, rel in plan["files"]:
        parts = rel.split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            sys.exit("unsafe path in the plan: %r" % rel)
        dest = os.path.join(partial, *parts)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(os.path.join(uploads, slot), dest)  # the same file system: a rename, no copy
    with open(os.path.join(partial, ".complete"), "w") as f:  # last: the folder is whole (each file's sha256 was
        json.dump({"sha256": plan["sha256"], "at": time.time(), "uploaded": True}, f)  # checked on arrival)
    try:
        os.rename(partial, final)
    except OSError:
        if not os.path.isfile(os.path.join(final, ".complete")):
            raise
        shutil.rmtree(partial, ignore_errors=True)  # another pod put the same key there first: use its copy
if uploads.startswith(os.path.join(os.environ["PODTUI_VOLUME"], "podtui", "uploads", "")):
    shutil.rmtree(uploads, ignore_errors=True)  # this pod's own upload folder (empty, or pieces not needed)
def untouched_for_a_day(path):  # a live upload or fetch writes all the time; a dead one's pieces bill on the volume
    newest = os.path.getmtime(path)
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                newest = max(newest, os.path.getmtime(os.path.join(folder, name)))
            except OSError:
                pass
    return newest < time.time() - 86400
listed = lambda folder: [os.path.join(folder, n) for n in os.listdir(folder)] if os.path.isdir(folder) else []
dead = [path for path in listed(os.path.join(os.environ["PODTUI_VOLUME"], "podtui", "uploads"))
        + [p for p in listed(os.path.dirname(final)) if ".partial-" in os.path.basename(p)]
        if os.path.isdir(path) and untouched_for_a_day(path)]
for path in dead:
    shutil.rmtree(path, ignore_errors=True)
swept = len(dead)
if swept:
    print("%s [podtui] removed %d upload folder(s) that runs which died mid-upload left on the volume (nothing "
          "written to them for a day)" % (stamp(), swept), flush=True)
print("%s [podtui] dataset %s %s" % (stamp(), plan["name"], "found whole in the volume's cache: 0 bytes uploaded"
                                      if hit else "uploaded into the volume's cache, sha256 checked"), flush=True)
with open(path_file, "w") as f:
    f.write(os.path.join(final, plan["single"]) if plan.get("single") else final)
with open(fetched_file, "w") as f:
    json.dump({"sha256": {}, "bytes_moved": 0 if hit else plan["size"], "cache_hit": hit, "key": plan["key"],
               "volume": plan.get("volume"), "uploaded": True}, f)
PODTUI_PLACE_PY_END
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


def fetch_inputs() -> str:
    """The dataset part of the start script's inputs: fetch.py written on the pod and run."""
    return FETCH_INPUTS.replace("__FETCH_PY__", fetcher_source().rstrip("\n"))
