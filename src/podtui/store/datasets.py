"""The store's queries of datasets: names independent of content, their manifests, what volumes cache."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..models import Dataset
from .engine import Engine, NotFound, _exec

_DATASET_COLS = "id, name, path, kind, size_bytes, file_count, sha256, created_at, source, revision"


@dataclass
class DatasetRecord:
    """A dataset with what serving it needs: the real root and the files registered under it."""

    dataset: Dataset
    root: str
    manifest: list[dict[str, Any]]


def _row_to_dataset(row: Sequence[Any]) -> Dataset:
    rid, name, path, kind, size, count, sha, created, source, revision = row
    return Dataset(id=rid, name=name, path=path, kind=kind, size_bytes=size, file_count=count, sha256=sha,
                   created_at=created, source=source or path, revision=revision)


class DatasetQueries(Engine):
    """Datasets (a part of `Store`)."""

    async def save_dataset(self, dataset: Dataset, root: str, manifest: list[dict[str, Any]]) -> Dataset:
        """Insert a dataset, or re-point the same name with the same content (a removed one comes back). Other
        names, with the same content or not, are left alone."""

        def job(db: sqlite3.Connection) -> Dataset:
            _exec(db, """INSERT INTO datasets (id, name, path, root, kind, size_bytes, file_count, sha256,
                         manifest, created_at, source, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                         ON CONFLICT(id) DO UPDATE SET name = excluded.name, path = excluded.path,
                         root = excluded.root, manifest = excluded.manifest, created_at = excluded.created_at,
                         source = excluded.source, revision = excluded.revision, removed_at = NULL""",
                  (dataset.id, dataset.name, dataset.path, root, dataset.kind, dataset.size_bytes,
                   dataset.file_count, dataset.sha256, json.dumps(manifest), dataset.created_at,
                   dataset.source or dataset.path, dataset.revision))
            return dataset

        return await self._write(job)

    async def list_datasets(self) -> list[Dataset]:
        """Datasets, newest first; a name re-registered with new content shows its newest version only; removed
        ones are left out."""
        rows = await self._read(
            f"SELECT {_DATASET_COLS} FROM datasets d WHERE removed_at IS NULL AND created_at = "
            "(SELECT max(created_at) FROM datasets e WHERE e.name = d.name AND e.removed_at IS NULL) "
            "ORDER BY created_at DESC")
        return [_row_to_dataset(r) for r in rows]

    async def find_dataset(self, name_or_id: str) -> DatasetRecord:
        """A dataset by id (removed ones too: a run keeps its dataset), or by name (the newest of that name) or id
        prefix (8+ characters) among those not removed."""
        cols = f"{_DATASET_COLS}, root, manifest"
        width = len(_DATASET_COLS.split(","))
        rows = await self._read(f"SELECT {cols} FROM datasets WHERE id = ?", (name_or_id,))
        if not rows:
            rows = await self._read(f"SELECT {cols} FROM datasets WHERE name = ? AND removed_at IS NULL "
                                    "ORDER BY created_at DESC LIMIT 1", (name_or_id,))
        if not rows and len(name_or_id) >= 8 and all(c in "0123456789abcdef" for c in name_or_id):
            rows = await self._read(f"SELECT {cols} FROM datasets WHERE id LIKE ? AND removed_at IS NULL LIMIT 2",
                                    (name_or_id + "%",))
            if len(rows) > 1:
                raise NotFound(f"dataset id prefix {name_or_id!r} is ambiguous")
        if not rows:
            raise NotFound(f"no dataset named {name_or_id!r}; `podtui datasets` lists them")
        row = rows[0]
        return DatasetRecord(_row_to_dataset(row[:width]), root=row[width], manifest=json.loads(row[width + 1]))

    async def update_dataset_manifest(self, dataset_id: str, manifest: list[dict[str, Any]],
                                      sha256: str | None = None) -> None:
        """Keep what a pod learnt fetching a remote dataset (the sha256s of a first fetch)."""

        def job(db: sqlite3.Connection) -> None:
            _exec(db, "UPDATE datasets SET manifest = ?, sha256 = coalesce(?, sha256) WHERE id = ?",
                  (json.dumps(manifest), sha256, dataset_id))

        await self._write(job)

    async def start_data_wait(self, run_id: str, now: float) -> None:
        """The pod's wait for its data begins (pull mode: the control plane starts uploading its inputs)."""
        await self._write(lambda db: _exec(
            db, "UPDATE runs SET data_wait_from = coalesce(data_wait_from, ?) WHERE id = ?", (now, run_id)))

    async def record_volume_dataset(self, provider: str, volume: str, cache_key: str, dataset_id: str) -> None:
        """A pod found or put a dataset whole on a volume."""
        now = time.time()
        await self._write(lambda db: _exec(
            db, """INSERT INTO volume_datasets (provider, volume, cache_key, dataset_id, at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(provider, volume, cache_key) DO UPDATE SET dataset_id = excluded.dataset_id,
                   at = excluded.at""", (provider, volume, cache_key, dataset_id, now)))

    async def volume_datasets(self) -> list[tuple[str, str, str]]:
        """(provider, volume, dataset name) for every registered dataset known to be on a volume: the one a pod
        put there, and any other name with the same content."""
        rows = await self._read(
            "SELECT DISTINCT v.provider, v.volume, d.name FROM volume_datasets v "
            "JOIN datasets s ON s.id = v.dataset_id JOIN datasets d ON d.id = s.id OR "
            "(d.kind = s.kind AND d.sha256 = s.sha256 AND d.sha256 != '') WHERE d.removed_at IS NULL")
        return [(str(p), str(v), str(n)) for p, v, n in rows]

    async def forget_volume(self, provider: str, volume: str) -> None:
        """A volume was deleted: nothing is cached on it any more."""
        await self._write(lambda db: _exec(db, "DELETE FROM volume_datasets WHERE provider = ? AND volume = ?",
                                           (provider, volume)))

    async def remove_dataset(self, name: str) -> int:
        """Take a name out of the registry (every version of it); runs that used it keep their rows. The files
        are not touched. Raises NotFound for an unknown name; returns how many versions were removed."""

        def job(db: sqlite3.Connection) -> int:
            cur = db.execute("UPDATE datasets SET removed_at = ? WHERE name = ? AND removed_at IS NULL",
                             (time.time(), name))
            count = cur.rowcount
            cur.close()
            if not count:
                raise NotFound(f"no dataset named {name!r}; `podtui datasets` lists them")
            return int(count)

        return await self._write(job)
