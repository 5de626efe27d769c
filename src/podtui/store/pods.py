"""The store's queries of pods: every pod podtui made, remembered the moment it exists, until it is gone."""

from __future__ import annotations

import time

from .engine import Engine, _exec


class PodQueries(Engine):
    """Pods (a part of `Store`)."""

    async def record_pod(self, provider: str, pod_id: str, run_id: str, gpu_type: str | None,
                         price_per_hour: float | None, status: str) -> None:
        """Remember a pod the moment it exists, so no restart can forget it."""
        now = time.time()
        await self._write(lambda db: _exec(
            db, """INSERT INTO pods (provider, pod_id, run_id, gpu_type, price_per_hour, status, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(provider, pod_id) DO UPDATE SET status = excluded.status""",
            (provider, pod_id, run_id, gpu_type, price_per_hour, status, now)))

    async def set_pod_status(self, provider: str, pod_id: str, status: str) -> None:
        """Update a pod's last known status (`gone` once terminated)."""
        now = time.time()
        await self._write(lambda db: _exec(
            db, "UPDATE pods SET status = ?, ended_at = CASE WHEN ? = 'gone' THEN ? ELSE ended_at END "
                "WHERE provider = ? AND pod_id = ?", (status, status, now, provider, pod_id)))

    async def pods_not_gone(self) -> list[tuple[str, str, str]]:
        """(provider, pod id, run id) of every pod not known to be gone."""
        rows = await self._read("SELECT provider, pod_id, run_id FROM pods WHERE status != 'gone'")
        return [(r[0], r[1], r[2]) for r in rows]

    async def known_pod_ids(self, provider: str) -> set[str]:
        """Every pod id this store has ever recorded for a provider."""
        rows = await self._read("SELECT pod_id FROM pods WHERE provider = ?", (provider,))
        return {r[0] for r in rows}
