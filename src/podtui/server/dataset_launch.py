"""A launch's dataset, checked before any pod is made: a local dataset changed or gone since it was registered
is refused (a pod would bill while its download fails), or, when the user says so, registered again as it is."""

from __future__ import annotations

import asyncio
import shlex

from ..config import Settings
from ..models import LaunchSpec
from ..store import DatasetRecord, Store
from .datasets import DatasetError, first_change, scan_dataset
from .responses import ApiError
from .sources import is_remote


async def dataset_for_launch(store: Store, settings: Settings, record: DatasetRecord,
                             spec: LaunchSpec) -> tuple[DatasetRecord, str | None]:
    """The dataset the run gets, and a note for its events when it was registered again; ApiError 409
    `dataset_changed` naming the file and what to do when its files are not as registered."""
    dataset = record.dataset
    if is_remote(dataset.kind):  # the pod fetches it and checks it against its source
        return record, None
    change = await asyncio.to_thread(first_change, record.root, record.manifest)
    if change is None:
        return record, None
    again = f"podtui datasets add {shlex.quote(dataset.path)} --name {dataset.name}"
    if not spec.dataset_changed_ok:
        raise ApiError(409, "dataset_changed",
                       f"dataset {dataset.name} changed since it was registered: {change}. Nothing was launched. "
                       f"Register it again (`{again}`), or launch with --dataset-changed-ok to use it as it "
                       "is now.")
    try:
        scanned = await asyncio.to_thread(scan_dataset, dataset.path, dataset.name, settings.dataset_size_limit,
                                          settings.dataset_roots)
    except DatasetError as exc:
        raise ApiError(409, "dataset_changed",
                       f"dataset {dataset.name} changed since it was registered ({change}) and cannot be used as "
                       f"it is now: {exc}. Nothing was launched; `podtui datasets rm {dataset.name}` removes "
                       "it.") from None
    saved = await store.save_dataset(scanned.dataset, scanned.root, scanned.manifest)
    note = (f"dataset {dataset.name} changed since it was registered ({change}); registered again as it is now "
            f"({saved.file_count} file(s), sha256 {saved.sha256[:12]})")
    return DatasetRecord(saved, scanned.root, scanned.manifest), note


def room_problem(record: DatasetRecord, spec: LaunchSpec, provider: str) -> str | None:
    """Why a RunPod pod's container disk cannot hold the launch's dataset (with no volume), or None. A pod that
    fills its disk fails while it bills; a volume holds any size its owner bought."""
    if provider != "runpod" or spec.volume:
        return None
    room = spec.container_disk_gb * 1000**3 * 0.9  # RunPod sizes disks in GB; leave room for the image's files
    size = record.dataset.size_bytes
    if size <= room:
        return None
    return (f"dataset {record.dataset.name} holds {size / 1000**3:.1f} GB, more than the pod's "
            f"{spec.container_disk_gb} GB container disk can take: launch with --volume VOL (a network volume "
            f"big enough; `podtui volumes create NAME --size GB --dc DC`)")
