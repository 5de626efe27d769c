"""The pod's word on a dataset it fetched from its source: the sha256s computed at a first fetch (held to by
every later fetch), how many bytes moved, whether its cache already had the dataset."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..fmt import format_bytes
from ..models import Run
from ..store import Store
from . import auth, keys
from .responses import json_response, read_model
from .sources import is_remote, record_fetched


class DatasetFetched(BaseModel):
    """What a pod's fetcher reports once the dataset is in place."""

    model_config = ConfigDict(extra="ignore")
    sha256: dict[str, str] = Field(default_factory=dict, max_length=200_000)
    """sha256 per file path."""
    bytes_moved: int = Field(0, ge=0)
    cache_hit: bool = False
    seconds: float = Field(0.0, ge=0)
    key: str | None = Field(None, max_length=200)
    volume: str | None = Field(None, max_length=200)
    uploaded: bool = False
    """Pull mode: the control plane uploaded a local dataset into the volume's cache (or found it there)."""


async def dataset_fetched(request: web.Request) -> web.Response:
    """Record a pod's fetch of its run's remote dataset."""
    store = request.app[keys.STORE]
    run_id = request.match_info["run_id"]
    await auth.check_ingest(request, store, run_id)
    body = await read_model(request, DatasetFetched)
    return json_response({"recorded": await record_fetch(store, await store.get_run(run_id), body)})


async def record_fetch(store: Store, run: Run, body: DatasetFetched) -> int:
    """Record what a pod said once its dataset was in place (posted in push mode, read from its port in pull
    mode): a first fetch's sha256s, the volume's cache, the run event. How many sha256s were recorded."""
    run_id = run.id
    record = await store.find_dataset(run.dataset_id)
    recorded = 0
    if is_remote(record.dataset.kind):
        manifest = record_fetched(record.manifest, body.sha256)
        if manifest is not None:
            single = manifest[0].get("fetched_sha256") if record.dataset.kind == "url" else None
            await store.update_dataset_manifest(record.dataset.id, manifest, single)
            recorded = sum(1 for e in manifest if e.get("fetched_sha256")) - \
                sum(1 for e in record.manifest if e.get("fetched_sha256"))
    if body.volume and body.key and body.volume == run.spec.volume:
        await store.record_volume_dataset(run.provider, body.volume, body.key, record.dataset.id)
    where = f" on volume {body.volume}" if body.volume else ""
    if body.uploaded:
        said = (f"dataset {record.dataset.name} found whole in the cache{where}: 0 bytes uploaded" if body.cache_hit
                else f"dataset {record.dataset.name} uploaded into the cache{where}: "
                f"{format_bytes(body.bytes_moved)}; later runs there upload nothing")
    else:
        said = (f"dataset {record.dataset.name} found whole in the cache{where}: 0 bytes moved" if body.cache_hit
                else f"dataset {record.dataset.name} fetched from "
                f"{'its source' if is_remote(record.dataset.kind) else 'the control plane'}{where}: "
                f"{format_bytes(body.bytes_moved)} in "
                f"{body.seconds:.1f} s" + (f", sha256 recorded for {recorded} file(s)" if recorded else ""))
    await store.add_event(run_id, "dataset", said)
    return recorded
