"""Who may call what: the admin token on the admin API, a run's ingest token on its pod routes."""

from __future__ import annotations

import hmac

from aiohttp import web

from ..store import Store
from ..tokens import token_matches
from .responses import ApiError

PUBLIC = "public"
POD = "pod"
ADMIN = "admin"


def bearer(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def check_admin(request: web.Request, admin_token: str) -> None:
    """401 unless the request carries the admin token."""
    token = bearer(request)
    if token is None:
        raise ApiError(401, "unauthorized", "this route needs the admin token as `Authorization: Bearer <token>` "
                       "(it is in the data dir's admin_token file)", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.encode(), admin_token.encode()):
        raise ApiError(401, "unauthorized", "the admin token is wrong", {"WWW-Authenticate": "Bearer"})


async def check_ingest(request: web.Request, store: Store, run_id: str) -> None:
    """401/403/404 unless the request carries this run's live ingest token."""
    token = bearer(request)
    if token is None:
        raise ApiError(401, "unauthorized", "pod routes need the run's ingest token as `Authorization: Bearer`")
    found = await store.ingest_token_hash(run_id)
    if found is None:
        raise ApiError(404, "run_not_found", f"no run {run_id}")
    stored_hash, revoked_at = found
    if not token_matches(token, stored_hash):
        raise ApiError(403, "forbidden", "this token does not belong to this run")
    if revoked_at is not None:
        raise ApiError(401, "token_revoked", "the run has ended and its ingest token was revoked")
