"""The store's queries of download tokens: only their hashes, bound to a dataset and a run, expiring."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from .engine import Engine, _exec, _one


@dataclass
class TokenCheck:
    """The outcome of presenting a download token."""

    ok: bool
    reason: str = ""
    dataset_id: str = ""
    run_id: str = ""


class TokenQueries(Engine):
    """Download tokens (a part of `Store`)."""

    async def add_download_token(self, token_hash: str, dataset_id: str, run_id: str, expires_at: float) -> None:
        """Store a new download token's hash (never the token)."""
        now = time.time()
        await self._write(lambda db: _exec(
            db, "INSERT INTO download_tokens (hash, dataset_id, run_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (token_hash, dataset_id, run_id, now, expires_at)))

    async def use_download_token(self, token_hash: str, now: float) -> TokenCheck:
        """Check a download token and count the use; first use is recorded."""

        def job(db: sqlite3.Connection) -> TokenCheck:
            row = _one(db, "SELECT dataset_id, run_id, expires_at, revoked_at FROM download_tokens WHERE hash = ?",
                       (token_hash,))
            if row is None:
                return TokenCheck(False, "unknown")
            dataset_id, run_id, expires_at, revoked_at = row
            if revoked_at is not None:
                return TokenCheck(False, "revoked", dataset_id, run_id)
            if expires_at <= now:
                return TokenCheck(False, "expired", dataset_id, run_id)
            _exec(db, "UPDATE download_tokens SET uses = uses + 1, first_used_at = coalesce(first_used_at, ?) "
                      "WHERE hash = ?", (now, token_hash))
            return TokenCheck(True, "", dataset_id, run_id)

        return await self._write(job)

    async def download_token_stats(self, run_id: str) -> list[dict[str, Any]]:
        """Uses, first use, expiry and revocation of a run's download tokens (no hashes)."""
        rows = await self._read(
            "SELECT dataset_id, created_at, expires_at, first_used_at, uses, revoked_at FROM download_tokens "
            "WHERE run_id = ? ORDER BY created_at", (run_id,))
        keys = ("dataset_id", "created_at", "expires_at", "first_used_at", "uses", "revoked_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def delete_expired_tokens(self, now: float) -> int:
        """Delete download tokens past their expiry; returns how many."""

        def job(db: sqlite3.Connection) -> int:
            cur = db.execute("DELETE FROM download_tokens WHERE expires_at <= ?", (now,))
            try:
                return cur.rowcount
            finally:
                cur.close()

        return await self._write(job)
