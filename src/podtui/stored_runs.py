"""The runs as the store last held them, read straight from its SQLite file (read-only) for the dashboard's first
frame, before the control plane has started or answered. Standard library only: the pydantic models, aiohttp and
httpx load after that frame; the control plane's list of the runs replaces these as soon as it comes."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

LIVE = frozenset({"pending", "provisioning", "booting", "downloading", "training"})
"""`models.LIVE_STATUSES` by value (a test keeps them equal): runs whose pods may still bill."""

COLUMNS = ("id, name, provider, status, gpu_type, gpu_util, price_per_hour, created_at, started_at, ended_at, "
           "last_step, last_loss, last_loss_nan, progress")
LATER_COLUMNS = ", pod_end_failed, keep_alive_until"
"""Columns of later migrations: a store the control plane has not migrated yet is read without them."""


class StoredStatus(str):
    """A run status as stored: what the runs table reads of `models.RunStatus` (`value`, `is_live`)."""

    @property
    def value(self) -> str:
        return str(self)

    @property
    def is_live(self) -> bool:
        return self in LIVE


@dataclass(frozen=True)
class StoredProgress:
    """Bytes of the dataset a pod had downloaded."""

    bytes_done: int
    bytes_total: int


@dataclass
class StoredRun:
    """A run's row as the runs table shows it (the same names as `models.Run`'s fields)."""

    id: str
    name: str
    provider: str
    status: StoredStatus
    gpu_type: str | None
    gpu_util: float | None
    price_per_hour: float | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    last_step: int | None
    last_loss: float | None
    progress: StoredProgress | None = None
    live: list[str] = field(default_factory=list)
    pod_end_failed: str | None = None
    keep_alive_until: float | None = None

    def pod_in_use(self, now: float) -> bool:
        """Whether its pod may still bill, as `models.Run.pod_in_use` says: it lives, or stays to bring outputs home."""
        return self.status.is_live or (self.keep_alive_until is not None and self.keep_alive_until > now)

    def cost_at(self, now: float) -> float:
        """Cost so far, as `models.Run.cost_at` counts it."""
        if self.price_per_hour is None or self.started_at is None:
            return 0.0
        return max(0.0, (self.ended_at or now) - self.started_at) / 3600.0 * self.price_per_hour


def read_runs(path: Path) -> list[StoredRun]:
    """Every run in the store at `path`, newest first; none when there is no store yet or it cannot be read (the
    control plane's list comes a moment later all the same). Read-only: the control plane is the only writer."""
    if not path.is_file():
        return []
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            try:
                rows = db.execute(f"SELECT {COLUMNS}{LATER_COLUMNS} FROM runs ORDER BY created_at DESC").fetchall()
            except sqlite3.OperationalError:  # not migrated yet
                rows = db.execute(f"SELECT {COLUMNS} FROM runs ORDER BY created_at DESC").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:  # an older schema before its migration, a locked or broken file
        log.info("runs not read from the store at start (%s): they come from the control plane", exc)
        return []
    return [_run(row) for row in rows]


def _run(row: tuple[object, ...]) -> StoredRun:
    (rid, name, provider, status, gpu_type, gpu_util, price, created, started, ended, last_step, last_loss,
     last_loss_nan, progress) = row[:14]
    pod_end_failed = _str(row[14]) if len(row) > 14 else None
    keep_alive_until = _float(row[15]) if len(row) > 15 else None
    done_total = json.loads(progress) if isinstance(progress, str) else None
    return StoredRun(
        id=str(rid), name=str(name), provider=str(provider), status=StoredStatus(status), gpu_type=_str(gpu_type),
        gpu_util=_float(gpu_util), price_per_hour=_float(price), created_at=_float(created) or 0.0,
        started_at=_float(started), ended_at=_float(ended),
        last_step=last_step if isinstance(last_step, int) else None,
        last_loss=math.nan if last_loss_nan else _float(last_loss),
        progress=StoredProgress(int(done_total["bytes_done"]), int(done_total["bytes_total"]))
        if isinstance(done_total, dict) else None, pod_end_failed=pod_end_failed, keep_alive_until=keep_alive_until)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
