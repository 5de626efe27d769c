"""`podtui datasets push NAME --volume VOL`: a local dataset copied onto a RunPod network volume through RunPod's
S3-compatible API (bucket = the volume's id, key = the path under its mount), with no pod billing meanwhile.

It lands where a pod's fetcher looks: `podtui/datasets/<key>/` with `.complete` written last, so the next run
with `--volume VOL` finds it whole and moves no byte. Files already there with the same size and sha256 (in
their metadata) are skipped, so a push broken off resumes file by file; large files go up in multipart parts.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..config import Settings
from ..models import DatasetPush, Volume
from ..store import DatasetRecord, NotFound
from . import keys
from .datasets import DatasetError, resolve_served_file
from .job_lines import answer_job_lines
from .responses import ApiError, read_model
from .sources import cache_key, is_remote

PART_BYTES = 8 * 1024 * 1024
"""Multipart part size (RunPod asks for multipart above 500 MB), 10 parts at a time: boto3's own defaults. 64 MiB
parts 4 at a time went 0.65x (median) `upload_file` to the same endpoint in bench/push.py (likely fewer bytes in
flight and a long last wave); a retry of a small part is cheap, and boto3 grows the parts of a file that would
need more than 10,000."""
CONCURRENCY = 10


@dataclass
class PushProgress:
    """Bytes sent so far, shared between the upload thread and the streaming answer."""

    total: int
    done: int = 0
    skipped: int = 0
    cancelled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n
        if self.cancelled:
            raise RuntimeError("the push was cancelled")


def s3_endpoint(settings: Settings, volume: Volume) -> str:
    """RunPod's S3 endpoint for the volume's data center."""
    return settings.runpod_s3_url.replace("{dc}", (volume.data_center or "").lower())


def volume_s3_client(settings: Settings, volume: Volume) -> Any:
    """A boto3 S3 client of RunPod's S3 API for the volume's data center (RunPod's S3 API key)."""
    import boto3  # deferred: ~0.3 s
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=s3_endpoint(settings, volume), aws_access_key_id=settings.runpod_s3_access_key,
        aws_secret_access_key=settings.runpod_s3_secret, region_name=(volume.data_center or "us-east-1").lower(),
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 8, "mode": "standard"}))  # RunPod advises retrying its 502s


def push_blocking(record: DatasetRecord, volume: Volume, settings: Settings, progress: PushProgress) -> dict[str, Any]:
    """Upload the dataset's files, then `.complete`; returns what was done (blocking: run it in a thread)."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    dataset = record.dataset
    client = volume_s3_client(settings, volume)
    transfer = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES,
                              max_concurrency=CONCURRENCY)
    key = cache_key(dataset, "")
    prefix = f"podtui/datasets/{key}"
    try:
        try:
            client.head_object(Bucket=volume.id, Key=f"{prefix}/.complete")
            progress.skipped = progress.total
            return {"key": key, "uploaded_bytes": 0, "skipped_bytes": progress.total, "already_there": True}
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        digests = {}
        for entry in record.manifest:
            path = resolve_served_file(record.root, entry)
            target = f"{prefix}/{entry['path']}"
            digests[entry["path"]] = entry["sha256"]
            try:
                head = client.head_object(Bucket=volume.id, Key=target)
                if head.get("ContentLength") == entry["size"] and \
                        head.get("Metadata", {}).get("sha256") == entry["sha256"]:
                    progress.skipped += int(entry["size"])
                    progress.add(int(entry["size"]))
                    continue
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
            client.upload_file(path, volume.id, target, ExtraArgs={"Metadata": {"sha256": entry["sha256"]}},
                               Config=transfer, Callback=progress.add)
        # last: the folder is whole (a pod never uses a key without it)
        client.put_object(Bucket=volume.id, Key=f"{prefix}/.complete",
                          Body=json.dumps({"sha256": digests, "pushed": True}).encode())
    except (BotoCoreError, ClientError) as exc:
        raise DatasetError(f"RunPod's S3 API at {s3_endpoint(settings, volume)} refused the push: {exc}; check "
                           "PODTUI_RUNPOD_S3_ACCESS_KEY / PODTUI_RUNPOD_S3_SECRET (RunPod's S3 API key, not the "
                           "API key)") from None
    return {"key": key, "uploaded_bytes": progress.done - progress.skipped, "skipped_bytes": progress.skipped,
            "already_there": False}


async def push_dataset(request: web.Request) -> web.StreamResponse:
    """Push a local dataset onto a RunPod volume; the answer streams JSON lines: progress, then the result."""
    runs = request.app[keys.RUNS]
    store = request.app[keys.STORE]
    settings = request.app[keys.SETTINGS]
    name, volume_name = request.match_info["name"], (await read_model(request, DatasetPush)).volume
    try:
        record = await store.find_dataset(name)
    except NotFound as exc:
        raise ApiError(404, "dataset_not_found", str(exc)) from None
    if is_remote(record.dataset.kind):
        raise ApiError(422, "not_local", f"dataset {name} is fetched by pods from its source at data-center speed; "
                       f"launch with --volume {volume_name}: the first run caches it there")
    volume = await runs.volumes.find(volume_name, "runpod")
    if not (settings.runpod_s3_access_key and settings.runpod_s3_secret):
        raise ApiError(409, "no_s3_key", "pushing needs RunPod's S3 API key: set PODTUI_RUNPOD_S3_ACCESS_KEY "
                       "(user_…) and PODTUI_RUNPOD_S3_SECRET (rps_…) where the control plane runs (runpod.io: "
                       "Settings > S3 API Keys) and restart it")
    progress = PushProgress(total=record.dataset.size_bytes)

    async def finish(result: dict[str, Any]) -> dict[str, Any]:
        await store.record_volume_dataset("runpod", volume.name, result["key"], record.dataset.id)
        return result

    def stop() -> None:
        progress.cancelled = True  # a client gone: the upload thread stops at its next piece

    # OSError: a file that vanished or could not be read while it went up
    return await answer_job_lines(request, lambda: asyncio.to_thread(push_blocking, record, volume, settings,
                                                                     progress),
                                  progress, (DatasetError, OSError), finish, stop)
