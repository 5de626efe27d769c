"""POST /api/v1/runs/{id}/report: a pod's batch of metrics, log lines, status, progress and heartbeat."""

from __future__ import annotations

import time

from aiohttp import web

from ..models import Report, ReportReply, RunStatus
from ..report_rows import ReportBatch, parse_report_json
from ..store import NotFound, Store
from . import keys
from .auth import check_ingest
from .responses import json_response, parse_model, read_body
from .runs import RunService


async def report(request: web.Request) -> web.Response:
    """Store a report; resends change nothing. The reply tells the agent whether to stop."""
    store: Store = request.app[keys.STORE]
    run_id = request.match_info["run_id"]
    await check_ingest(request, store, run_id)
    body = await read_body(request)
    try:
        reply = await ingest_report(store, request.app[keys.RUNS], run_id, body)
    except NotFound:
        return json_response({"error": {"code": "run_not_found", "message": f"no run {run_id}"}}, 404)
    return json_response(reply)


async def ingest_report(store: Store, runs: RunService, run_id: str, body: bytes) -> ReportReply:
    """A pod's report, pushed to /report or pulled from the pod: stored, and the reply the pod acts on.
    ApiError (422) for a report that is not one; NotFound for an unknown run."""
    batch = parse_report_json(run_id, body) or ReportBatch.from_report(run_id, parse_model(body, Report))
    result = await store.apply_report(run_id, batch, time.time())
    status = result.status
    if batch.status in ("succeeded", "failed") and status.is_live:
        run = await runs.pod_reported_end(await store.get_run(run_id), RunStatus(batch.status), batch.exit_code,
                                          batch.error, batch.stopped)
        status = run.status
    # After its command ended the pod may live to bring its outputs home (succeeded or failed) until then.
    in_keep_alive = status in (RunStatus.succeeded, RunStatus.failed) and result.keep_alive_until is not None
    stop = status.is_final and not in_keep_alive and batch.status not in ("succeeded", "failed")
    deadline = await runs.pod_deadline(run_id) if status.is_live else None
    asked = runs.outputs is not None and run_id in runs.outputs.asked
    return ReportReply(accepted_metrics=result.accepted_metrics, accepted_logs=result.accepted_logs,
                       run_status=status, stop=stop, sync_outputs=asked,
                       deadline_in_s=None if deadline is None else round(deadline - time.time(), 1))
