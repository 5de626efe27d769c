"""HTTP routes of outputs: the pod's side in push mode (ingest token) and the admin side (list, download, sync).

Pod (push mode), `Authorization: Bearer <ingest token>`:
    POST /api/v1/runs/{id}/outputs/offer     {"files": [{path, size, mtime}], "refused": [{path, why}]}
                                              -> {"files": [{path, action: skip|send|refuse, offset?, reason?}]}
    PUT  /api/v1/runs/{id}/outputs/upload?path=&size=&mtime=&offset=   a piece (any length), appended at offset;
                                              409 {"received"} when the offset is not what arrived
    POST /api/v1/runs/{id}/outputs/done?path=&size=&mtime=&sha256=     the file is whole: checked, then home
    POST /api/v1/runs/{id}/outputs/synced    {"final": bool, "sent": n, "failed": n}   a sync pass ended
Admin:
    GET  /api/v1/runs/{id}/outputs            the files and a summary
    GET  /api/v1/runs/{id}/outputs/file?path= one file that is home (Range, If-Range; X-Podtui-Sha256)
    POST /api/v1/runs/{id}/outputs/sync       bring the outputs home now
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..fmt import format_bytes
from ..models import OutputsPage, Run
from ..store import NotFound, Store
from . import keys
from .auth import check_ingest
from .outputs import MAX_FILES_PER_OFFER, OutputRefused, Outputs
from .responses import ApiError, json_response, query_flag, read_body

OUTPUTS: web.AppKey[Outputs] = web.AppKey("outputs")
SYNCER: web.AppKey[Any] = web.AppKey("outputs_syncer")
VOLUME_OUTPUTS: web.AppKey[Any] = web.AppKey("volume_outputs")
"""VolumeOutputsService (server/volume_outputs.py): outputs written to a volume (--outputs-on-volume)."""
END_AFTER_FINAL_S = 30.0
"""After the final sync, how long the pod has to end itself before the supervisor ends it."""


def _error_with(exc: OutputRefused) -> web.Response:
    body = {"error": {"code": exc.code, "message": exc.message}, **exc.extra}
    return web.json_response(body, status=exc.status)


async def _pod_run(request: web.Request) -> tuple[Store, Outputs, Run]:
    store: Store = request.app[keys.STORE]
    run_id = request.match_info["run_id"]
    await check_ingest(request, store, run_id)
    return store, request.app[OUTPUTS], await store.get_run(run_id)


def _query_file(request: web.Request) -> tuple[str, int, float, int]:
    q = request.query
    name = q.get("path", "")
    try:
        size = int(q.get("size", ""))
        mtime = float(q.get("mtime", ""))
        offset = int(q.get("offset", "0"))
    except ValueError:
        raise ApiError(400, "invalid_query", "path, size (bytes), mtime (seconds) and offset are required "
                       "numbers") from None
    if not name or size < 0 or offset < 0 or not math.isfinite(mtime) or size > 2**62:
        raise ApiError(400, "invalid_query", "path, a size of 0 or more and a finite mtime are required")
    return name, size, mtime, offset


async def offer(request: web.Request) -> web.Response:
    """The pod's listing of its outputs folder; what to send of it."""
    _, outputs, run = await _pod_run(request)
    try:
        body = json.loads(await read_body(request))
        files = body.get("files") or []
        refused = body.get("refused") or []
        if not isinstance(files, list) or not isinstance(refused, list) or len(files) > MAX_FILES_PER_OFFER:
            raise ValueError
        listing = [{"path": str(f["path"]), "size": int(f["size"]), "mtime": float(f["mtime"])} for f in files]
        refusals = [r for r in refused if isinstance(r, dict)][:100]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ApiError(422, "invalid_offer", f"want {{files: [{{path, size, mtime}}] (at most "
                       f"{MAX_FILES_PER_OFFER}), refused: [{{path, why}}]}}") from None
    outputs.asked.discard(run.id)
    return json_response({"files": await outputs.plan(run.id, listing, refusals)})


async def upload(request: web.Request) -> web.Response:
    """A piece of an output file, streamed into its partial at the offset given."""
    _, outputs, run = await _pod_run(request)
    name, size, mtime, offset = _query_file(request)

    async def chunks() -> AsyncIterator[bytes]:
        async for data in request.content.iter_chunked(1 << 20):
            yield data

    try:
        received = await outputs.absorb(run.id, name, size, mtime, offset, chunks())
    except OutputRefused as exc:
        return _error_with(exc)
    return json_response({"received": received})


async def done(request: web.Request) -> web.Response:
    """The last byte of a file arrived: its sha256 is checked and it goes home."""
    _, outputs, run = await _pod_run(request)
    name, size, mtime, _ = _query_file(request)
    sha256 = request.query.get("sha256", "")
    if len(sha256) != 64:
        raise ApiError(400, "invalid_query", "sha256 must be 64 hex digits")
    try:
        home = await outputs.complete(run.id, name, size, mtime, sha256)
    except OutputRefused as exc:
        return _error_with(exc)
    return json_response({"path": home.path, "home": True, "sha256": home.sha256})


async def synced(request: web.Request) -> web.Response:
    """A sync pass of the pod ended (final: the one after the command ended)."""
    store, outputs, run = await _pod_run(request)
    try:
        body = json.loads(await read_body(request) or b"{}")
        final, failed = bool(body.get("final")), int(body.get("failed") or 0)
    except (ValueError, TypeError, AttributeError):
        raise ApiError(422, "invalid_body", "want {final, sent, failed}") from None
    await sync_ended(store, outputs, run, final, failed)
    return json_response({"ok": True})


async def sync_ended(store: Store, outputs: Outputs, run: Run, final: bool, failed: int) -> None:
    """Record a sync that ended; after the final one the pod may end (it does so itself; the supervisor ends it
    shortly after if it does not)."""
    await store.set_output_sync(run.id, synced=True, final=final and not failed)
    if not final:
        return
    fresh = await store.get_run(run.id)  # as the sync left it
    page = await outputs.page(fresh)
    s = page.summary
    if failed:
        await store.add_event(run.id, "outputs_incomplete", f"final sync ended with {failed} file(s) not home; "
                              f"{s.files_home} file(s), {format_bytes(s.bytes_home)} are home")
    else:
        await store.add_event(run.id, "outputs_home", f"outputs home: {s.files_home} file(s), "
                              f"{format_bytes(s.bytes_home)} in {page.folder}")
    if fresh.status.is_final and fresh.keep_alive_until:
        until = min(fresh.keep_alive_until, time.time() + END_AFTER_FINAL_S)
        await store.update_run(run.id, keep_alive_until=until)


# -- admin --------------------------------------------------------------------------------------------------

async def _admin_run(request: web.Request) -> Run:
    try:
        return await request.app[keys.STORE].get_run(request.match_info["run_id"])
    except NotFound as exc:
        raise ApiError(404, "run_not_found", str(exc)) from None


async def list_outputs(request: web.Request) -> web.Response:
    """A run's outputs: name, size, sha256, time, and what still moves."""
    run = await _admin_run(request)
    fresh = query_flag(request, "fresh")
    page: OutputsPage = await request.app[OUTPUTS].page(run)
    if run.spec.outputs_on_volume and run.spec.volume:
        page.volume = await request.app[VOLUME_OUTPUTS].describe(run, fresh=fresh)
    return json_response(page)


async def output_file(request: web.Request) -> web.StreamResponse:
    """One output file that is home, as a ranged, resumable download."""
    run = await _admin_run(request)
    name = request.query.get("path", "")
    try:
        path, info = await request.app[OUTPUTS].home_file(run.id, name)
    except OutputRefused as exc:
        raise ApiError(400, exc.code, exc.message) from None
    except NotFound as exc:
        raise ApiError(404, "not_home", str(exc)) from None
    return web.FileResponse(path, headers={"X-Podtui-Sha256": info.sha256 or "", "Cache-Control": "no-store",
                                           "Content-Type": "application/octet-stream"})


async def sync_now(request: web.Request) -> web.Response:
    """Ask for the outputs now: a push-mode pod hears it in its next report's reply; a pull-mode pod's files
    are fetched at once."""
    run = await _admin_run(request)
    if run.spec.outputs_on_volume:
        raise ApiError(409, "outputs_on_volume", f"run {run.id} writes its outputs to volume {run.spec.volume}, "
                       f"where they stay: `podtui outputs {run.id}` lists them, `podtui outputs {run.id} --to DIR` "
                       "fetches them")
    if not run.status.is_live or not run.pod_id:
        raise ApiError(409, "run_not_live", f"run {run.id} has no running command ({run.status.value}): its "
                       f"outputs move by themselves when the command ends; `podtui outputs {run.id}` lists them")
    request.app[SYNCER].ask(run)
    return json_response({"run_id": run.id, "asked": True, "connect": run.connect}, status=202)
