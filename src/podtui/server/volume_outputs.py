"""Outputs on a volume (`podtui launch --volume VOL --outputs-on-volume`): the command writes them straight to
`<mount>/podtui/outputs/<run id>/`, where they stay after the pod is gone; nothing moves through this machine.

This module says where they are and what is there (`podtui outputs RUN`, the run detail), and fetches them home
on request (`podtui outputs RUN --to DIR`, `POST .../outputs/fetch`) into the run's usual outputs folder, where
each gets its sha256 and is copied out like any output brought home:
- a local volume is a folder on this machine: its files are read from there;
- a RunPod network volume is read through RunPod's S3-compatible API (bucket = the volume's id, key = the path
  under the mount), with the S3 API key of `datasets push`; ranged GETs, so a fetch broken off resumes.
A file already home at the same size and modification time is not fetched again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..bootstrap.agent.output_names import output_name_problem
from ..bootstrap.agent.outputs import scan_outputs
from ..config import Settings
from ..fmt import format_bytes
from ..models import OutputFile, Run, Volume
from ..models.pages import VolumeOutputs
from ..store import NotFound, Store
from . import keys
from .job_lines import answer_job_lines
from .outputs import OutputRefused, Outputs
from .outputs_api import OUTPUTS, VOLUME_OUTPUTS
from .push import volume_s3_client
from .responses import ApiError
from .volumes import RUNPOD_MOUNT, VolumeService, local_root, volume_outputs_key

log = logging.getLogger(__name__)

BLOCK = 4 << 20
"""Bytes read at a time from a volume's file (local read or S3 body)."""
LIST_TTL_S = 10.0
"""How long a RunPod volume's listing is reused (the run detail asks every 2 s; each is an S3 LIST)."""
FETCH_LOCKS: dict[str, asyncio.Lock] = {}


class VolumeUnreadable(Exception):
    """The volume's outputs cannot be listed or read now; the message says why and what to do."""


@dataclass
class FetchProgress:
    """Bytes fetched home so far."""

    total: int = 0
    done: int = 0
    files: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


class VolumeOutputsService:
    """Where a run's outputs are on its volume, what is there, and fetching them home."""

    def __init__(self, settings: Settings, store: Store, volumes: VolumeService, outputs: Outputs) -> None:
        self.settings = settings
        self.store = store
        self.volumes = volumes
        self.outputs = outputs
        self._listed: dict[str, tuple[float, VolumeOutputs, Volume | None]] = {}

    async def _volume(self, run: Run) -> Volume | None:
        """The run's volume as it is now; None when it is gone."""
        name = run.spec.volume or ""
        if run.provider == "local":
            path = local_root(self.settings) / name
            return Volume(name=name, provider="local", id=name, path=str(path)) if path.is_dir() else None
        try:
            return await self.volumes.find(name, "runpod")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise VolumeUnreadable(exc.message) from None

    async def describe(self, run: Run, fresh: bool = False) -> VolumeOutputs:
        """Where the run's outputs are on its volume, and the files there now (a note when they cannot be listed)."""
        cached = self._listed.get(run.id)
        if cached is not None and not fresh and run.provider != "local" and time.monotonic() - cached[0] < LIST_TTL_S:
            return cached[1]
        page, _ = await self._describe(run)
        return page

    async def _describe(self, run: Run) -> tuple[VolumeOutputs, Volume | None]:
        key = volume_outputs_key(run.id)
        provider = "local" if run.provider == "local" else "runpod"
        name = run.spec.volume or ""
        mount = str(local_root(self.settings) / name) if provider == "local" else RUNPOD_MOUNT
        page = VolumeOutputs(volume=name, provider=provider, path=f"{mount}/{key}/", location=f"{mount}/{key}/")
        volume: Volume | None = None
        try:
            volume = await self._volume(run)
            if volume is None:
                page.note = f"volume {name} no longer exists: the outputs written there are gone with it"
            elif provider == "local":
                page.files = await asyncio.to_thread(_local_files, Path(mount) / key)
            else:
                page.location = f"s3://{volume.id}/{key}/"
                if not (self.settings.runpod_s3_access_key and self.settings.runpod_s3_secret):
                    page.note = ("listing and fetching them needs RunPod's S3 API key: set "
                                 "PODTUI_RUNPOD_S3_ACCESS_KEY and PODTUI_RUNPOD_S3_SECRET where the control plane "
                                 "runs (runpod.io: Settings > S3 API Keys); a pod mounting the volume sees them too")
                else:
                    page.files = await asyncio.to_thread(_s3_files, self.settings, volume, key)
        except VolumeUnreadable as exc:
            page.note = str(exc)
        if volume is not None and page.files and not page.note:
            page.note = f"they stay on the volume; `podtui outputs {run.id} --to DIR` fetches them here"
        self._listed[run.id] = (time.monotonic(), page, volume)
        return page, volume

    async def fetch_home(self, run: Run, progress: FetchProgress) -> FetchProgress:
        """Bring what is on the volume into the run's outputs folder (sha256 computed as it arrives); a file
        already home at the same size and mtime is skipped. VolumeUnreadable when nothing can be read."""
        lock = FETCH_LOCKS.setdefault(run.id, asyncio.Lock())
        async with lock:
            page, volume = await self._describe(run)
            if volume is None or (page.note and not page.files):
                raise VolumeUnreadable(page.note or f"volume {run.spec.volume} cannot be read")
            home = {f.path: f for f in await self.store.output_files(run.id)}
            todo = []
            for f in page.files:
                known = home.get(f.path)
                if known is not None and known.size == f.size and known.mtime == f.mtime and known.sha256:
                    progress.skipped += 1
                    continue
                todo.append(f)
            progress.total = sum(f.size or 0 for f in todo)
            key = volume_outputs_key(run.id)
            for f in todo:
                size, mtime = int(f.size or 0), float(f.mtime or 0.0)
                try:
                    offset = await self.outputs.begin(run.id, f.path, size, mtime)
                    progress.done += offset
                    chunks = self._chunks(volume, key, f.path, offset, size, progress)
                    await self.outputs.absorb(run.id, f.path, size, mtime, offset, chunks)
                    await self.outputs.complete(run.id, f.path, size, mtime, None)
                    progress.files += 1
                except (OutputRefused, VolumeUnreadable, OSError) as exc:
                    message = exc.message if isinstance(exc, OutputRefused) else str(exc)
                    progress.failed.append(f"{f.path}: {message}")
            self._listed.pop(run.id, None)
        return progress

    def _chunks(self, volume: Volume, key: str, name: str, offset: int, size: int,
                progress: FetchProgress) -> AsyncIterator[bytes]:
        if volume.provider == "local":
            path = local_root(self.settings) / volume.name / key / name
            read: Callable[[int], bytes] = _file_reader(path, offset)
        else:
            read = _s3_reader(self.settings, volume, f"{key}/{name}", offset, size)

        async def gen() -> AsyncIterator[bytes]:
            got = offset
            while got < size:
                try:
                    data = await asyncio.to_thread(read, min(BLOCK, size - got))
                except OSError as exc:
                    raise VolumeUnreadable(f"reading {name} from the volume failed: {exc}") from None
                if not data:
                    raise VolumeUnreadable(f"{name} on the volume ended at {got} of {size} bytes (it changed "
                                           "while being fetched?); fetch again")
                got += len(data)
                progress.done += len(data)
                yield data

        return gen()


def _local_files(folder: Path) -> list[OutputFile]:
    files, _refused = scan_outputs(str(folder)) if folder.is_dir() else ([], [])
    return [OutputFile(path=name, size=size, mtime=mtime) for name, _, size, mtime in files]


def _s3_problem(exc: Exception, volume: Volume) -> VolumeUnreadable:
    return VolumeUnreadable(f"RunPod's S3 API refused to read volume {volume.name}: {exc}; check "
                            "PODTUI_RUNPOD_S3_ACCESS_KEY / PODTUI_RUNPOD_S3_SECRET (RunPod's S3 API key, not the "
                            "API key)")


def _s3_files(settings: Settings, volume: Volume, key: str) -> list[OutputFile]:
    """The objects under the run's outputs prefix (paginated; names that could escape a folder are left out)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = volume_s3_client(settings, volume)
    files: list[OutputFile] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=volume.id, Prefix=f"{key}/"):
            for item in page.get("Contents") or []:
                name = str(item["Key"])[len(key) + 1:]
                if not name or name.endswith("/") or output_name_problem(name):
                    continue
                files.append(OutputFile(path=name, size=int(item["Size"]),
                                        mtime=float(item["LastModified"].timestamp())))
    except (BotoCoreError, ClientError) as exc:
        raise _s3_problem(exc, volume) from None
    return sorted(files, key=lambda f: f.path)


def _file_reader(path: Path, offset: int) -> Callable[[int], bytes]:
    state: dict[str, Any] = {"at": offset}

    def read(n: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(state["at"])
            data = f.read(n)
        state["at"] += len(data)
        return data

    return read


def _s3_reader(settings: Settings, volume: Volume, key: str, offset: int, size: int) -> Callable[[int], bytes]:
    """Reads of one object from `offset` on, through one ranged GET."""
    from botocore.exceptions import BotoCoreError, ClientError

    state: dict[str, Any] = {"body": None}

    def read(n: int) -> bytes:
        try:
            if state["body"] is None:
                client = volume_s3_client(settings, volume)
                answer = client.get_object(Bucket=volume.id, Key=key, Range=f"bytes={offset}-{size - 1}")
                state["body"] = answer["Body"]
            return bytes(state["body"].read(n))
        except (BotoCoreError, ClientError) as exc:
            raise _s3_problem(exc, volume) from None

    return read


# -- HTTP ---------------------------------------------------------------------------------------------------

async def fetch_outputs(request: web.Request) -> web.StreamResponse:
    """Fetch a run's outputs from its volume home; streams JSON lines: progress, then the result or an error."""
    try:
        run = await request.app[keys.STORE].get_run(request.match_info["run_id"])
    except NotFound as exc:
        raise ApiError(404, "run_not_found", str(exc)) from None
    if not run.spec.outputs_on_volume:
        raise ApiError(409, "not_on_volume", f"run {run.id} brings its outputs home by itself (no "
                       "--outputs-on-volume): `podtui outputs RUN` lists them")
    service = request.app[VOLUME_OUTPUTS]
    progress = FetchProgress()

    async def finish(_: None) -> dict[str, Any]:
        folder = request.app[OUTPUTS].run_dir(run.id)
        if progress.files:
            await request.app[keys.STORE].add_event(run.id, "outputs_home", f"outputs fetched from volume "
                                                    f"{run.spec.volume}: {progress.files} file(s), "
                                                    f"{format_bytes(progress.done)} in {folder}")
        return {"fetched": progress.files, "skipped": progress.skipped, "bytes": progress.done,
                "failed": progress.failed, "folder": str(folder)}

    # a client gone: the job is cancelled; what arrived stays in the partials, the next fetch resumes
    return await answer_job_lines(request, lambda: service.fetch_home(run, progress), progress, (VolumeUnreadable,),
                                  finish)
