"""The control plane's half of `podtui doctor`: checks only the server can make (store, datasets, provider key),
and a one-time nonce that proves a public URL reaches this very control plane."""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import time
from typing import TYPE_CHECKING, Any, Literal

import httpx
from aiohttp import web
from pydantic import BaseModel

from ..config import Settings
from ..models import DoctorCheck
from ..store import Store
from . import keys
from .datasets import first_change
from .responses import ApiError, json_response
from .sources import is_remote

if TYPE_CHECKING:
    from ..providers.runpod import RunPodProvider

NONCE_TTL_S = 120.0


class Nonce(BaseModel):
    """A one-time value the control plane will echo back once."""

    nonce: str


NONCES: web.AppKey[dict[str, float]] = web.AppKey("doctor_nonces")


async def check_store(store: Store) -> DoctorCheck:
    version = await store.schema_version()
    if version == store.latest_schema():
        return DoctorCheck(name="store", status="ok", message=f"schema {version} (latest) at {store.path}")
    return DoctorCheck(name="store", status="fail",
                 message=f"schema {version}, expected {store.latest_schema()}: restart the control plane to migrate")


def _unreadable(root: str, manifest: list[dict[str, Any]]) -> list[str]:
    """The dataset's files the control plane cannot read (blocking: up to 200,000 files, run it in a thread)."""
    return [f"{entry['path']} is not readable by the control plane (check its permissions)" for entry in manifest
            if not os.access(os.path.join(root, *entry["path"].split("/")), os.R_OK)]


async def check_datasets(store: Store, settings: Settings) -> list[DoctorCheck]:
    """One check per registered dataset. A changed or deleted one warns (launches with it are refused) and says
    the two ways out; an unreadable or oversized one fails."""
    checks = []
    for dataset in await store.list_datasets():
        name = f"dataset {dataset.name}"
        if is_remote(dataset.kind):  # its pods fetch it from its source and check it there
            pinned = f" at {dataset.revision[:12]}" if dataset.revision else ""
            checks.append(DoctorCheck(name=name, status="ok", message=f"{dataset.file_count} file(s) fetched by "
                                      f"the pods from {dataset.source}{pinned}"))
            continue
        record = await store.find_dataset(dataset.id)
        again = f"podtui datasets add {shlex.quote(dataset.path)} --name {dataset.name}"
        change = await asyncio.to_thread(first_change, record.root, record.manifest)
        if change is not None:
            checks.append(DoctorCheck(name=name, status="warn", message=(
                f"{change}; launches with it are refused until you register it again (`{again}`) or remove it "
                f"(`podtui datasets rm {dataset.name}`)")))
            continue
        problems = await asyncio.to_thread(_unreadable, record.root, record.manifest)
        if dataset.size_bytes > settings.dataset_size_limit:
            problems.append(f"{dataset.size_bytes} bytes, over the size limit {settings.dataset_size_limit}: raise "
                            "PODTUI_DATASET_SIZE_LIMIT")
        if problems:
            checks.append(DoctorCheck(name=name, status="fail", message="; ".join(problems[:3])))
        else:
            checks.append(DoctorCheck(name=name, status="ok",
                                      message=f"{dataset.file_count} file(s), readable, unchanged"))
    if not checks:
        checks.append(DoctorCheck(name="datasets", status="warn",
                                  message="none registered: `podtui datasets add PATH`"))
    return checks


def check_local_provider() -> DoctorCheck:
    missing = [tool for tool in ("bash", "python3", "tar", "base64") if shutil.which(tool) is None]
    if not (shutil.which("curl") or shutil.which("wget")):
        missing.append("curl or wget")
    if missing:
        return DoctorCheck(name="provider local", status="fail",
                           message=f"missing on this machine: {', '.join(missing)}")
    return DoctorCheck(name="provider local", status="ok", message="bash, python3, tar and curl/wget present")


async def check_runpod(settings: Settings) -> list[DoctorCheck]:
    """The key against REST v2 (200 / 401 / 403), the rate limits RunPod reports, and whether GraphQL (spot
    pods only) still answers."""
    key = settings.runpod_api_key
    if not key:
        status: Literal["ok", "warn", "fail"] = "fail" if settings.default_provider == "runpod" else "ok"
        return [DoctorCheck(name="provider runpod", status=status,
                      message="no RunPod key (RUNPOD_API_KEY): only the local provider is available")]
    from ..providers.runpod import RunPodProvider

    provider = RunPodProvider(key, settings.runpod_api_url, timeout_s=15)
    try:
        ok, message = await provider.check_key()
        checks = [DoctorCheck(name="provider runpod", status="ok" if ok else "fail",
                        message=f"{message} ({settings.runpod_api_url}/v2)")]
        if ok:
            checks.append(DoctorCheck(name="runpod spot", **await _graphql_answers(settings, key)))
            checks.append(await _ssh_keys(provider))
            checks.append(DoctorCheck(name="runpod pod end", status="ok", message=POD_END))
    finally:
        await provider.close()
    return checks


POD_END = ("while podtui is not running, a pod ends itself at its own limits (max runtime, budget, stall; 12 h "
           "without its control plane; 30 min after its command ends) by asking RunPod with its own pod-scoped key; "
           "only its own end proves it, so a pod that RunPod does not end stays up, idle (never training again), "
           "and says `pod_end_failed` until a podtui ends it with your key: keep `podtui serve` running on a server "
           "to end such a pod at once")


async def _ssh_keys(provider: RunPodProvider) -> DoctorCheck:
    """Whether --ssh would give SSH: RunPod provisions the account's registered keys only."""
    from ..providers.base import ProviderError
    from ..providers.runpod import NO_SSH_KEYS

    try:
        registered = await provider.ssh_keys()
    except ProviderError as exc:
        return DoctorCheck(name="runpod ssh keys", status="warn", message=f"cannot read the account's SSH keys: {exc}")
    if not registered:
        return DoctorCheck(name="runpod ssh keys", status="warn", message=f"--ssh: {NO_SSH_KEYS}")
    return DoctorCheck(name="runpod ssh keys", status="ok",
                       message=f"{len(registered)} SSH public key(s) registered: --ssh gives SSH")


async def _graphql_answers(settings: Settings, key: str) -> dict[str, str]:
    """Whether RunPod's GraphQL API answers this key (the runpod SDK's request, sent with httpx)."""
    base = os.environ.get("RUNPOD_API_BASE_URL") or settings.runpod_api_url
    retiring = "spot pods depend on RunPod's GraphQL API, which RunPod retires in early 2027"
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            response = await client.post(f"{base}/graphql", json={"query": "query myself { myself { id } }"},
                                         headers={"Authorization": f"Bearer {key}"})
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"status": "warn", "message": f"GraphQL did not answer ({type(exc).__name__}): spot launches will "
                f"fail; on-demand pods use REST v2 and are not affected. {retiring}"}
    if response.status_code != 200 or not isinstance(body, dict) or body.get("errors") or "data" not in body:
        return {"status": "warn", "message": f"GraphQL answered HTTP {response.status_code}: spot launches will "
                f"fail; on-demand pods are not affected. {retiring}"}
    return {"status": "ok", "message": f"GraphQL answers: spot launches work for now; {retiring}"}


async def doctor_checks(request: web.Request) -> web.Response:
    """Server-side checks."""
    store = request.app[keys.STORE]
    settings = request.app[keys.SETTINGS]
    checks = [await check_store(store), *await check_datasets(store, settings), check_local_provider(),
              *await check_runpod(settings)]
    return json_response([c.model_dump() for c in checks])


async def mint_nonce(request: web.Request) -> web.Response:
    """A one-time value, echoed back once by /api/v1/doctor/echo/{nonce} within two minutes."""
    nonces = request.app[NONCES]
    now = time.time()
    for old in [n for n, t in nonces.items() if t < now]:
        del nonces[old]
    nonce = secrets.token_urlsafe(16)
    nonces[nonce] = now + NONCE_TTL_S
    return json_response(Nonce(nonce=nonce), status=201)


async def echo_nonce(request: web.Request) -> web.Response:
    """Echo a nonce this control plane minted (once): proves a URL reaches this control plane."""
    nonce = request.match_info["nonce"]
    expires = request.app[NONCES].pop(nonce, None)
    if expires is None or expires < time.time():
        raise ApiError(404, "unknown_nonce", "this control plane did not mint that nonce (or it was used)")
    return json_response(Nonce(nonce=nonce))
