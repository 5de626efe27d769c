"""Renders the pod's boot command and its start script.

The boot command is the container's arguments (RunPod v2: `args`, "arguments passed to the container entrypoint"):

    bash -c source${IFS}<(echo${IFS}$PODTUI_BOOT|base64${IFS}-d)

Why this form:
- It holds no quote, backslash or space inside an argument, so every way of splitting a command line gives the
  same three words: RunPod's template docs show a shell-like parser (`bash -c '/start.sh'`), older paths split on
  whitespace, the spot path (GraphQL `dockerArgs`) inlines it into a query.
- On an image without an ENTRYPOINT (RunPod's own images have only `CMD /start.sh`) the arguments replace CMD.
  On an image whose ENTRYPOINT is a wrapper that runs its arguments (`exec "$@"`: NVIDIA's images, tini,
  docker-entrypoint.sh) the same words run after the wrapper. An ENTRYPOINT that ignores its arguments (a model
  server image) cannot run any boot: v2 has no field to replace an ENTRYPOINT, so the run fails at the boot
  timeout and the run detail shows the container's log.
- `source` runs the snippet in the container's first process itself (no pipeline child), and the snippet ends
  with `exec python3 agent.pyz`: the agent is PID 1, so a stop's or an interruption's SIGTERM reaches it and it
  sends its last report.

The snippet travels base64-encoded in the env var PODTUI_BOOT. It fetches the agent and the start script from the
control plane with the run's ingest token, then runs the start script under the agent.
"""

from __future__ import annotations

import base64
import shlex
import zlib
from typing import Any

from ..models import Dataset
from .remote_inputs import VOLUME_INPUTS, fetch_inputs, plan_value
from .zipapp import agent_zipapp

BOOT_COMMAND = "bash -c source${IFS}<(echo${IFS}$PODTUI_BOOT|base64${IFS}-d)"

BOOT_SNIPPET = r"""set -u
d="${PODTUI_HOME:-$HOME/podtui}"
mkdir -p "$d" && cd "$d"
if [ "${PODTUI_CONNECT:-push}" = pull ]; then
  # Pull mode: the agent travels in the env (zlib, base64); the control plane brings the rest to its port.
  python3 -c 'import base64,os,sys,zlib
open(sys.argv[1], "wb").write(zlib.decompress(base64.b64decode(os.environ["PODTUI_AGENT_Z"])))' "$d/agent.pyz"
  exec python3 "$d/agent.pyz" pull
fi
if ! python3 - "$d" <<'PY'
import json, os, sys, time, urllib.request
base = os.environ["PODTUI_URL"].rstrip("/") + "/api/v1/boot/" + os.environ["PODTUI_RUN_ID"] + "/"
for name, out in (("agent", "agent.pyz"), ("script", "start.sh")):
    for attempt in range(8):
        try:
            req = urllib.request.Request(base + name, headers={"Authorization": "Bearer " + os.environ["PODTUI_TOKEN"]})
            with urllib.request.urlopen(req, timeout=30) as r:
                data = r.read()
            break
        except Exception as e:
            # Only podtui's own refusal (a JSON error: the run ended, its container restarted, a wrong token)
            # ends the retries; a tunnel's or a firewall's 4xx page is retried like a network error.
            try:
                said = json.loads(e.read())["error"]["code"] if getattr(e, "code", 0) in (401, 403, 404, 410) else ""
            except Exception:
                said = ""
            if said:
                sys.exit("podtui boot: the control plane refused %s (%s)" % (name, said))
            print("podtui boot: fetching %s failed (%s); retrying" % (name, e), file=sys.stderr, flush=True)
            time.sleep(min(2 ** attempt, 30))
    else:
        sys.exit("podtui boot: cannot reach the control plane at %s" % os.environ["PODTUI_URL"])
    with open(os.path.join(sys.argv[1], out), "wb") as f:
        f.write(data)
PY
then
  echo "podtui boot: giving up; ending the pod so it does not bill" >&2
  if [ -n "${PODTUI_RUNPOD_API_URL:-}" ] && [ -n "${RUNPOD_POD_ID:-}" ] && [ -n "${RUNPOD_API_KEY:-}" ]; then
    # Only the pod's own end proves it ended (RunPod's 404 also means "not accessible to the caller"). This process
    # stays, idle, so RunPod never restarts the container into a second boot; it asks again with backoff and tells
    # the control plane at every ask.
    exec python3 - <<'PY'
import json, os, sys, time, urllib.error, urllib.request
api, pod, key = (os.environ[k] for k in ("PODTUI_RUNPOD_API_URL", "RUNPOD_POD_ID", "RUNPOD_API_KEY"))
proof = float(os.environ.get("PODTUI_END_PROOF_S") or 120)
first, asks = time.time(), 0
while True:
    try:
        req = urllib.request.Request(api.rstrip("/") + "/v2/pods/" + pod, method="DELETE",
                                     headers={"Authorization": "Bearer " + key})
        urllib.request.urlopen(req, timeout=30).read()
        said = "204"
    except urllib.error.HTTPError as e:
        said = str(e.code)
    except Exception as e:
        said = "no answer (%s)" % type(e).__name__
    asks += 1
    time.sleep(proof if asks == 1 else min(600.0, proof * 2 ** (asks - 1)))
    detail = ("the pod could not end itself after a failed boot; it bills until podtui ends it (RunPod answered %s "
              "to its DELETE, asked %d time(s), still running %d s after the first ask)"
              % (said, asks, time.time() - first))
    print("podtui boot: " + detail, file=sys.stderr, flush=True)
    if os.environ.get("PODTUI_URL") and os.environ.get("PODTUI_TOKEN"):
        try:
            req = urllib.request.Request(
                os.environ["PODTUI_URL"].rstrip("/") + "/api/v1/runs/" + os.environ["PODTUI_RUN_ID"] + "/report",
                data=json.dumps({"heartbeat_ts": time.time(), "pod_end_failed": detail}).encode(), method="POST",
                headers={"Authorization": "Bearer " + os.environ["PODTUI_TOKEN"],
                         "Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=20).read()
        except Exception as e:
            print("podtui boot: could not tell the control plane (%s)" % type(e).__name__, file=sys.stderr)
PY
  fi
  eval "${PODTUI_TERMINATE_CMD:-true}"
  exit 1
fi
exec python3 "$d/agent.pyz" run -- bash "$d/start.sh"
"""


def boot_env_value() -> str:
    """The base64 boot snippet (A-Z a-z 0-9 + / =: safe in an env var sent through GraphQL)."""
    return base64.b64encode(BOOT_SNIPPET.encode()).decode()


PUSH_DATASET = r"""echo "##podtui status downloading"
log "downloading dataset $DATASET_NAME ($DATASET_SIZE bytes) from $PODTUI_URL"
if [ "$DATASET_KIND" = file ]; then
  PODTUI_DATASET_PATH="$DATA/$DATASET_FILE"
  download "$DL_URL" "$PODTUI_DATASET_PATH" "$DATASET_SHA256" 0
else
  PODTUI_DATASET_PATH="$DATA/$DATASET_NAME"
  fetch "$DL_URL" "$DIR/manifest.txt" dl
  done_bytes=0
  while read -r sha size rel; do
    enc=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$rel")
    download "$DL_URL?path=$enc" "$PODTUI_DATASET_PATH/$rel" "$sha" "$done_bytes"
    done_bytes=$((done_bytes + size))
  done < "$DIR/manifest.txt"
fi
echo "##podtui progress $DATASET_SIZE $DATASET_SIZE"
log "dataset ready at $PODTUI_DATASET_PATH (sha256 checked)"

"""

PUSH_CODE = r"""if [ "$HAS_BUNDLE" = 1 ]; then
  log "fetching the code bundle"
  fetch "$PODTUI_URL/api/v1/boot/$PODTUI_RUN_ID/bundle" "$DIR/bundle.tar.gz" pod
  tar -xzf "$DIR/bundle.tar.gz" -C "$WORK"
fi
if [ "$HAS_RESUME" = 1 ]; then
  log "fetching the outputs of the earlier attempts (attempt ${PODTUI_ATTEMPT:-?} resumes from them)"
  fetch "$PODTUI_URL/api/v1/boot/$PODTUI_RUN_ID/resume" "$DIR/resume.tar" pod
  tar -xf "$DIR/resume.tar" -C "$PODTUI_RESUME_DIR"
  rm -f "$DIR/resume.tar"
fi
rm -f "$DIR/.curl-dl" "$DIR/.wget-dl"

"""

PULL_DATASET = r"""echo "##podtui status downloading"
# Pull mode: the control plane uploaded every input into $DIR/inputs (sha256 checked by the agent on arrival).
log "placing the uploaded dataset $DATASET_NAME ($DATASET_SIZE bytes)"
while read -r slot rel; do
  mkdir -p "$(dirname "$DATA/$rel")"
  mv -f "$DIR/inputs/$slot" "$DATA/$rel"
done <<'FILES'
__FILES__
FILES
if [ "$DATASET_KIND" = file ]; then
  PODTUI_DATASET_PATH="$DATA/$DATASET_FILE"
else
  PODTUI_DATASET_PATH="$DATA/$DATASET_NAME"
fi
echo "##podtui progress $DATASET_SIZE $DATASET_SIZE"
log "dataset ready at $PODTUI_DATASET_PATH"
"""

PULL_CODE = r"""if [ "$HAS_BUNDLE" = 1 ]; then
  tar -xzf "$DIR/inputs/bundle" -C "$WORK"
  rm -f "$DIR/inputs/bundle"
fi
if [ "$HAS_RESUME" = 1 ]; then
  log "placing the outputs of the earlier attempts (attempt ${PODTUI_ATTEMPT:-?} resumes from them)"
  tar -xf "$DIR/inputs/resume" -C "$PODTUI_RESUME_DIR"
  rm -f "$DIR/inputs/resume"
fi
rm -f "$DIR/.curl-dl" "$DIR/.wget-dl"
"""

START_SCRIPT = r"""#!/usr/bin/env bash
# podtui start script for run __RUN_ID__, rendered by the control plane. Fails fast: any failing command
# ends the script with its line number, and the agent then reports the run failed and ends the pod.
set -euo pipefail
log() { printf '%s [podtui] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
trap 'rc=$?; log "FAILED at line $LINENO (exit $rc): $BASH_COMMAND"; exit $rc' ERR

__VARIABLES__
DIR="${PODTUI_HOME:-$HOME/podtui}"
DATA="$DIR/data"
WORK="$DIR/work"
PODTUI_RESUME_DIR="$DIR/resume"  # what earlier attempts brought home (empty on the first)
mkdir -p "$DATA" "$WORK" "$PODTUI_RESUME_DIR"
if [ -n "${PODTUI_TOKEN:-}" ]; then  # push mode: the pod downloads; pull mode: it was uploaded to
  umask 077
  # The credentials go to config files, never onto a command line (`ps` shows those).
  printf 'header = "Authorization: Bearer %s"\n' "$DL_TOKEN" > "$DIR/.curl-dl"
  printf 'header = "Authorization: Bearer %s"\n' "$PODTUI_TOKEN" > "$DIR/.curl-pod"
  printf 'header = Authorization: Bearer %s\n' "$DL_TOKEN" > "$DIR/.wget-dl"
  printf 'header = Authorization: Bearer %s\n' "$PODTUI_TOKEN" > "$DIR/.wget-pod"
  umask 022
fi

# RunPod images start sshd, nginx and jupyter from /start.sh, which our start command replaced.
if [ -z "${PODTUI_LOCAL:-}" ] && [ -n "${RUNPOD_POD_ID:-}" ] && [ -x /start.sh ]; then
  log "starting the image's own services (/start.sh) in the background"
  nohup /start.sh > /tmp/runpod-start.log 2>&1 &
fi

sha256_of() {
  if command -v sha256sum > /dev/null; then sha256sum "$1" | cut -d' ' -f1
  else python3 -c 'import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; fi
}

# fetch URL OUT CREDENTIAL: resumable download with curl -C - or wget -c, whichever the image has.
fetch() {
  if command -v curl > /dev/null; then
    curl -fsS --retry 3 --retry-delay 2 --connect-timeout 20 -C - -K "$DIR/.curl-$3" -o "$2" "$1"
  elif command -v wget > /dev/null; then
    WGETRC="$DIR/.wget-$3" wget -q -c --tries=3 --waitretry=2 --timeout=60 -O "$2" "$1"
  else
    log "neither curl nor wget is installed in this image"; return 1
  fi
}

progress() {  # prints download progress for the agent every second while a file grows
  local out=$1 base=$2
  while sleep 1; do
    local n=0
    [ -f "$out" ] && n=$(wc -c < "$out" | tr -d ' ')
    echo "##podtui progress $((base + n)) $DATASET_SIZE"
  done
}

download() {  # download URL OUT SHA SIZE_BEFORE: retries with resume, checks the sha256
  local url=$1 out=$2 sha=$3 base=$4 attempt
  mkdir -p "$(dirname "$out")"
  for attempt in 1 2 3 4 5; do
    progress "$out" "$base" & local ticker=$!
    if fetch "$url" "$out" dl; then
      kill "$ticker" 2> /dev/null || true
      if [ "$(sha256_of "$out")" = "$sha" ]; then return 0; fi
      log "sha256 of $out does not match; downloading it again"
      rm -f "$out"
    else
      kill "$ticker" 2> /dev/null || true
      log "download attempt $attempt of $out failed; resuming"
    fi
    sleep $((attempt * 2))
  done
  log "could not download $out after 5 attempts"
  return 1
}

__INPUTS__
cd "$WORK"
export PODTUI_DATASET_PATH PODTUI_RUN_ID PODTUI_RESUME_DIR
echo "##podtui status training"
log "training: $TRAIN_COMMAND"
bash -c "$TRAIN_COMMAND"
log "training command finished"
"""


def render_start_script(*, run_id: str, dataset: Dataset, dataset_file: str, download_token: str,
                        pod_url: str, command: str, has_bundle: bool,
                        pulled_files: list[tuple[str, str]] | None = None, has_resume: bool = False,
                        fetch_plan: dict[str, Any] | None = None,
                        cache_plan: dict[str, Any] | None = None) -> str:
    """The start script for one run (served to its pod only, over its ingest token; or, in pull mode, uploaded
    to its port with `pulled_files` = [(input slot, path under the data folder)]). With `fetch_plan` the pod
    fetches the dataset from its source itself (remote_inputs.py); with `cache_plan` (pull mode, a volume) a
    local dataset is in the volume's cache or uploaded into it."""
    variables = {
        "DL_TOKEN": download_token,
        "DL_URL": f"{pod_url}/api/datasets/download",
        "DATASET_NAME": dataset.name,
        "DATASET_KIND": dataset.kind,
        "DATASET_FILE": dataset_file,
        "DATASET_SHA256": dataset.sha256,
        "DATASET_SIZE": str(dataset.size_bytes),
        "HAS_BUNDLE": "1" if has_bundle else "0",
        "HAS_RESUME": "1" if has_resume else "0",
        "TRAIN_COMMAND": command,
    }
    if fetch_plan is not None:
        variables.update(FETCH_PLAN=plan_value(fetch_plan), DATASET_SOURCE=dataset.source or dataset.path)
    if cache_plan is not None:
        variables["CACHE_PLAN"] = plan_value(cache_plan)
    lines = "\n".join(f"{key}={shlex.quote(value)}" for key, value in variables.items())
    code = PUSH_CODE if pulled_files is None and cache_plan is None else PULL_CODE  # as the mode brings it
    if cache_plan is not None:
        dataset_part = VOLUME_INPUTS + "\n"
    elif fetch_plan is not None:  # the dataset comes from its source
        dataset_part = fetch_inputs() + "\n"
    elif pulled_files is None:
        dataset_part = PUSH_DATASET
    else:
        for _, rel in pulled_files:
            if "\n" in rel or rel.startswith("/") or ".." in rel.split("/"):
                raise ValueError(f"unsafe dataset path {rel!r}")
        listing = "\n".join(f"{slot} {rel}" for slot, rel in pulled_files)
        dataset_part = PULL_DATASET.replace("__FILES__", listing)
    inputs = dataset_part + code
    return (START_SCRIPT.replace("__RUN_ID__", run_id).replace("__INPUTS__", inputs)
            .replace("__VARIABLES__", lines))


def agent_source() -> bytes:
    """The pod agent, served to pods as one file: the zipapp of the agent package (`zipapp.py`)."""
    return agent_zipapp()


def agent_env_value() -> str:
    """The agent for a pull-mode pod's env: zlib + base64 (about 30 KB; a test holds it under 40,000 characters:
    RunPod documents no limit on an env value, Linux takes 128 KiB per string)."""
    return base64.b64encode(zlib.compress(agent_source(), 9)).decode()
