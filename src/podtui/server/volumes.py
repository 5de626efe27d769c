"""Volumes: storage that outlives pods, where datasets are cached so a later run moves no byte.

- RunPod: network volumes (`/v2/network-volumes`), mounted at create (`mounts.network`), which places the pod in
  the volume's data center, Secure Cloud.
- Local provider: a folder `<data dir>/volumes/<name>/`, the same contract with no account.

Layout on a volume (both): `podtui/datasets/<key>/` (content-addressed, `.complete` last), `podtui/hf` (HF_HOME),
`podtui/outputs/<run id>/` (a run's outputs with --outputs-on-volume).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from ..config import Settings
from ..models import LaunchSpec, Run, Volume, VolumeCreate
from ..providers.base import PodRequest, Provider, ProviderError
from ..store import Store
from . import keys
from .responses import ApiError, json_response, read_model

RUNPOD_MOUNT = "/workspace"
"""Where a RunPod pod mounts its network volume (RunPod's images keep their work there)."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def runpod_price_per_month(size_gb: int | None) -> float | None:
    """RunPod's list price of a network volume: $0.07/GB a month for the first TB, $0.05 beyond (its docs)."""
    if size_gb is None:
        return None
    return round(min(size_gb, 1000) * 0.07 + max(0, size_gb - 1000) * 0.05, 2)


def volume_outputs_key(run_id: str) -> str:
    """Where a run's outputs go on its volume, relative to the mount (RunPod's S3 API: the key prefix)."""
    return f"podtui/outputs/{run_id}"


def local_root(settings: Settings) -> Path:
    """Where local volumes live."""
    return settings.data_dir / "volumes"


def _folder_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for filename in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, filename)).st_size
            except OSError:
                continue
    return total


class VolumeService:
    """Lists, creates and removes volumes; resolves a launch's volume."""

    def __init__(self, settings: Settings, store: Store, providers: dict[str, Provider]) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers

    def _runpod(self) -> Any:
        provider = self.providers.get("runpod")
        if provider is None or not hasattr(provider, "volumes"):
            raise ApiError(409, "provider_unavailable", "RunPod network volumes need a RunPod key: set "
                           "RUNPOD_API_KEY where the control plane runs and restart it (local volumes: "
                           "--provider local)")
        return provider

    async def list(self, provider: str | None = None, name: str | None = None) -> list[Volume]:
        """Volumes of one provider, or of every provider configured; with `name`, only the one of that name (or
        RunPod id): a launch or a lookup then walks no other local volume's folder to size it."""
        found: list[Volume] = []
        if provider in (None, "local"):
            root = local_root(self.settings)
            if root.is_dir():
                for entry in sorted(root.iterdir()):
                    if entry.is_dir() and _NAME.match(entry.name) and name in (None, entry.name):
                        used = await asyncio.to_thread(_folder_bytes, entry)
                        found.append(Volume(name=entry.name, provider="local", id=entry.name, path=str(entry),
                                            used_bytes=used))
        if provider == "runpod" or (provider is None and "runpod" in self.providers):
            try:
                raw = await self._runpod().volumes.list()
            except ProviderError as exc:
                raise ApiError(502, "provider_error", str(exc)) from None
            for v in raw:
                if name is not None and name not in (v.get("name"), v.get("id")):
                    continue
                size = v.get("size") if isinstance(v.get("size"), int) else None
                found.append(Volume(name=str(v.get("name") or v.get("id")), provider="runpod", id=str(v["id"]),
                                    data_center=v.get("dataCenter"), size_gb=size, type=v.get("type"),
                                    price_per_month=runpod_price_per_month(size)))
        runs = await self.store.list_runs()
        now = time.time()
        cached = await self.store.volume_datasets()
        for volume in found:
            volume.in_use_by = [r.id for r in runs if r.spec.volume == volume.name and r.provider == volume.provider
                                and r.pod_in_use(now)]
            volume.cached = sorted({dataset for prov, vol, dataset in cached
                                    if prov == volume.provider and vol == volume.name})
        return found

    async def find(self, name: str, provider: str) -> Volume:
        """A volume by name (or RunPod id); 404 naming the command that lists them."""
        for volume in await self.list(provider, name):
            if name in (volume.name, volume.id):
                return volume
        hint = "podtui volumes create NAME" + (" --size GB --dc DC" if provider == "runpod" else " --provider local")
        raise ApiError(404, "volume_not_found", f"no {provider} volume named {name!r}; `podtui volumes` lists "
                       f"them, `{hint}` makes one")

    async def create(self, body: VolumeCreate) -> Volume:
        """Create a volume (RunPod: it bills until deleted)."""
        provider = body.provider or self.settings.default_provider
        if provider == "local":
            path = local_root(self.settings) / body.name
            if path.exists():
                raise ApiError(409, "volume_exists", f"a local volume named {body.name} exists ({path}): launch with "
                               f"--volume {body.name} to use it, or give the new one another name")
            (path / "podtui" / "datasets").mkdir(parents=True)
            return Volume(name=body.name, provider="local", id=body.name, path=str(path), used_bytes=0)
        runpod = self._runpod()
        if body.size_gb is None or not body.data_center:
            raise ApiError(422, "volume_spec", "a RunPod network volume needs --size GB (10-4096) and --dc DATA_CENTER "
                           "(e.g. EU-RO-1; pods using it run there, Secure Cloud)")
        if any(v.name == body.name for v in await self.list("runpod", body.name)):
            raise ApiError(409, "volume_exists", f"a RunPod network volume named {body.name} exists: launch with "
                           f"--volume {body.name} to use it, or give the new one another name")
        request: dict[str, Any] = {"name": body.name, "size": body.size_gb, "dataCenter": body.data_center}
        if body.type:
            request["type"] = body.type
        try:
            made = await runpod.volumes.create(request)
        except ProviderError as exc:  # RunPod's 4xx (a tier the data center lacks): the request, not RunPod
            status = 409 if 400 <= getattr(exc, "status", 500) < 500 else 502
            raise ApiError(status, "provider_error", f"RunPod did not create the volume: {exc}") from None
        size = made.get("size") if isinstance(made.get("size"), int) else body.size_gb
        return Volume(name=str(made.get("name") or body.name), provider="runpod", id=str(made["id"]),
                      data_center=made.get("dataCenter") or body.data_center, size_gb=size,
                      type=made.get("type") or body.type, price_per_month=runpod_price_per_month(size))

    async def remove(self, name: str, provider: str) -> Volume:
        """Delete a volume and what is on it; 409 while a pod uses it."""
        volume = await self.find(name, provider)
        if volume.in_use_by:
            raise ApiError(409, "volume_in_use", f"volume {name} is in use by run(s) {', '.join(volume.in_use_by)}; "
                           "terminate them first (`podtui terminate RUN`)")
        if provider == "local":
            await asyncio.to_thread(shutil.rmtree, local_root(self.settings) / volume.name)
        else:
            try:
                await self._runpod().volumes.delete(volume.id)
            except ProviderError as exc:
                raise ApiError(502, "provider_error", f"RunPod did not delete the volume: {exc}") from None
        await self.store.forget_volume(provider, volume.name)
        return volume

    # -- launches ------------------------------------------------------------------------------

    async def for_launch(self, spec: LaunchSpec, provider: str) -> Volume | None:
        """The launch's volume, checked before anything is created."""
        if not spec.volume:
            if spec.outputs_on_volume:
                raise ApiError(422, "outputs_on_volume", "outputs_on_volume: the outputs go to a volume, and none "
                               "was chosen; launch with --volume NAME too (`podtui volumes` lists them, `podtui "
                               "volumes create NAME` makes one)")
            return None
        volume = await self.find(spec.volume, provider)
        if provider == "runpod" and spec.cloud_type == "COMMUNITY":
            raise ApiError(422, "invalid_for_provider", f"cloud: volume {volume.name} is a network volume, Secure "
                           "Cloud only; launch with --cloud SECURE")
        if provider == "runpod" and spec.spot:
            raise ApiError(422, "invalid_for_provider", "spot: a network volume is attached through REST v2 "
                           "create, which spot pods (GraphQL) do not use; launch without --spot")
        if provider == "runpod" and volume.data_center:
            await self._check_gpus_there(spec, volume)
        return volume

    async def _check_gpus_there(self, spec: LaunchSpec, volume: Volume) -> None:
        """The pod can only run where its volume is: refuse when none of the GPU types is in stock there."""
        try:
            there = await self._runpod().volumes.gpus_in_data_center(volume.data_center)
        except ProviderError:
            return  # the create itself will say; the catalog is advice
        usable = [g for g in spec.gpu_types if there.get(g, "NONE") != "NONE"]
        if not usable:
            offered = ", ".join(g for g, level in sorted(there.items()) if level != "NONE") or "none now"
            raise ApiError(409, "no_gpu_in_volume_dc", f"volume {volume.name} is in {volume.data_center}, where "
                           f"none of {', '.join(spec.gpu_types)} is available now; GPU types in stock there: "
                           f"{offered}")

    def mount_path(self, volume: Volume) -> str:
        """Where the pod sees the volume."""
        if volume.provider == "local":
            return volume.path or ""
        return RUNPOD_MOUNT

    def attach(self, request: PodRequest, volume: Volume) -> None:
        """Mount the volume at create: RunPod `mounts.network` + the volume's data center, Secure Cloud."""
        if volume.provider != "runpod":
            return
        request.network_volume_id = volume.id
        request.volume_path = RUNPOD_MOUNT
        request.data_center_ids = [volume.data_center] if volume.data_center else []
        request.cloud_type = "SECURE"

    def env(self, volume: Volume, run: Run | None = None) -> dict[str, str]:
        """The pod's env for its volume: where it is, and HF_HOME inside it (models the trainer downloads are
        cached there too); with --outputs-on-volume, the outputs folder there (the agent's $PODTUI_OUTPUT_DIR)."""
        mount = self.mount_path(volume)
        env = {"PODTUI_VOLUME": mount, "PODTUI_VOLUME_NAME": volume.name, "HF_HOME": f"{mount}/podtui/hf"}
        if run is not None and run.spec.outputs_on_volume:
            env["PODTUI_VOLUME_OUTPUTS"] = f"{mount}/{volume_outputs_key(run.id)}"
        return env


# -- HTTP handlers ----------------------------------------------------------------------------------

def _service(request: web.Request) -> VolumeService:
    return request.app[keys.RUNS].volumes


def _provider_param(request: web.Request) -> str | None:
    provider = request.query.get("provider")
    if provider not in (None, "local", "runpod"):
        raise ApiError(400, "invalid_query", "provider must be local or runpod")
    return provider


async def list_volumes(request: web.Request) -> web.Response:
    """Volumes, with the runs using them and the datasets cached on them."""
    found = await _service(request).list(_provider_param(request))
    return json_response([v.model_dump(mode="json") for v in found])


async def create_volume(request: web.Request) -> web.Response:
    """Create a volume."""
    body = await read_model(request, VolumeCreate)
    return json_response(await _service(request).create(body), status=201)


async def remove_volume(request: web.Request) -> web.Response:
    """Delete a volume (refused while a pod uses it)."""
    service = _service(request)
    provider = _provider_param(request) or service.settings.default_provider
    return json_response(await service.remove(request.match_info["name"], provider))
