"""POST /api/v1/runs/{id}/report: a pod's batch of metrics, log lines, status, progress and heartbeat."""

from __future__ import annotations

from aiohttp import web

from ..models import Report
from ..report_rows import ReportBatch, parse_report_json
from ..store import NotFound, Store
from . import keys
from .auth import check_ingest
from .responses import ApiError, json_response, parse_model, read_body


async def report(request: web.Request) -> web.Response:
    """Store a report; resends change nothing. The reply tells the agent whether to stop."""
    store: Store = request.app[keys.STORE]
    run_id = request.match_info["run_id"]
    try:
        await check_ingest(request, store, run_id)
    except ApiError as exc:
        # A pod whose run ended (its token revoked) that could not end itself must still be heard: it bills
        # until the control plane ends it. Its own token, and nothing else from the report, is taken.
        if exc.code != "token_revoked":
            raise
        try:
            batch = parse_report(run_id, await read_body(request))
        except ApiError:
            raise exc from None  # a refused token is said first, whatever the body
        if not batch.pod_end_failed:
            raise
        await request.app[keys.RUNS].pod_could_not_end(run_id, batch.pod_end_failed)
        return json_response({"error": {"code": exc.code, "message": exc.message}}, 401)
    batch = parse_report(run_id, await read_body(request))
    try:
        reply = await request.app[keys.RUNS].take_report(run_id, batch)
    except NotFound:
        return json_response({"error": {"code": "run_not_found", "message": f"no run {run_id}"}}, 404)
    return json_response(reply)


def parse_report(run_id: str, body: bytes) -> ReportBatch:
    """A report's body as rows for the store: the fast path for what the agent sends, else the model, which
    explains what is wrong (ApiError 422)."""
    return parse_report_json(run_id, body) or ReportBatch.from_report(run_id, parse_model(body, Report))
