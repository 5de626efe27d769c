"""podtui pod agent: runs inside the pod with the Python standard library only (any image has it).

    python3 agent.pyz run -- bash start.sh      (push mode: it posts to the control plane)
    python3 agent.pyz pull                      (pull mode: the control plane comes to its port)

It runs the command, reads its stdout/stderr as a terminal would show them (a progress bar redrawn with \r or
\b is one live row, stored once when finished; escape codes are drawn, not kept), streams the lines as numbered
log lines, extracts metrics from what the command prints (JSON lines, `key=value` lines with a step, Hugging Face
Trainer dicts, tqdm/Lightning and Keras progress bars; launchers' rank prefixes stripped) and from an optional
metrics file, and posts them with a heartbeat to the control plane as soon as it has them and no report is in
flight (at most 20 reports a second, fewer when the control plane says it is busy; a heartbeat every
PODTUI_REPORT_INTERVAL_S when idle). When the control plane does not
answer it keeps everything (memory, then a spill file) and resends in order with backoff; the control plane
de-duplicates. When the command ends it reports `succeeded` or `failed` and ends the pod (after the keep-alive
window on success), so a failed run stops billing at once.

Environment: PODTUI_URL, PODTUI_RUN_ID, PODTUI_TOKEN (the run's ingest token), PODTUI_HOME (its folder),
PODTUI_KEEP_ALIVE_S, PODTUI_RUNPOD_API_URL (a RunPod pod asks to end itself with DELETE /v2/pods/$RUNPOD_POD_ID
and its own pod-scoped RUNPOD_API_KEY, then stays up, idle, until it ends: only its own end proves it, and past
PODTUI_END_PROOF_S (default 120) it tells the control plane `pod_end_failed` and asks again with backoff),
PODTUI_TERMINATE_CMD (how another provider's pod ends itself; never used on RunPod; empty = exit),
PODTUI_UNREACHABLE_LIMIT_S (while the command runs, default 12 h), PODTUI_UNDELIVERED_KEEP_S (after it ends, how
long undelivered reports keep the pod, default 30 min), PODTUI_MAX_RUNTIME_S and PODTUI_STALL_TIMEOUT_S (the pod
enforces them itself, and the deadline the control plane sends in its replies: the budget; PODTUI_LIMIT_GRACE_S
later than the control plane would), PODTUI_METRICS_FILE, PODTUI_METRICS (auto | json | off: what is read
from the output), PODTUI_METRICS_RANKS (0 | all), PODTUI_REPORT_INTERVAL_S, PODTUI_GRACE_S.

A package of one idea per module (patterns, terminal, metrics, outbox, links, report, outputs, output_names,
reading, pod_end, nodes, supervisor, pod_port, __main__), shipped to pods as one deterministic zipapp
(bootstrap/zipapp.py): pods fetch it (push) or get it in their env (pull). Its modules import the standard library
and each other only, and run on Python 3.8.
"""
