"""Outputs come home: files of a pod's $PODTUI_OUTPUT_DIR brought to `<data dir>/outputs/<run>/`.

One receiving side for both connection modes. A file moves into a partial file outside the run's folder
(`outputs/.partial/<run>/`), in pieces that can stop anywhere and resume from the partial's size; its sha256 is
computed as the bytes arrive (the prefix is hashed again from disk after a restart) and compared with the pod's.
Only then does it replace the version home, in one rename, and count as home. A sync moves only files whose size
or modification time differ from the version home.

- push: the pod offers its listing (`POST .../outputs/offer`), PUTs what it is told to send from the offset it
  is told, and finishes each file with its sha256 (`POST .../outputs/done`), with its run's ingest token;
- pull: the control plane lists the pod's outputs on its port, reads them in ranges and asks the pod for each
  file's sha256 (`OutputsService.pull_sync`).

Refusals (a name that escapes the folder, the per-run cap, a disk without room) are run events, said once; files
already home stay, and the run is never ended for them.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bootstrap.agent.output_names import output_name_problem
from ..config import Settings
from ..digest import sha256_of
from ..fmt import format_bytes
from ..models import OutputFile, OutputsPage, OutputsSummary, Run
from ..store import NotFound, Store

log = logging.getLogger(__name__)

MAX_FILES_PER_OFFER = 10_000
WRITE_BATCH = 4 << 20
"""Bytes gathered before one write + hash in a worker thread (the event loop keeps reading meanwhile)."""


class OutputRefused(Exception):
    """A file (or a piece of it) that cannot be taken: its HTTP status, a code and a message for the user."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


@dataclass
class _Hashing:
    """The sha256 of a partial file's first `size` bytes."""

    size: int
    digest: Any


def _write_all(fd: int, blocks: list[bytes]) -> None:
    """Write the blocks at the end of the partial: one writev, no joining copy."""
    written = os.writev(fd, blocks)
    if written < sum(len(b) for b in blocks):  # a short write (rare): finish it
        rest = memoryview(b"".join(blocks))[written:]
        while rest:
            rest = rest[os.write(fd, rest):]


def _hash_all(digest: Any, blocks: list[bytes]) -> None:
    for block in blocks:
        digest.update(block)


def free_bytes(path: Path) -> int:
    """Free bytes on the disk holding `path` (a test replaces it to stage a full disk)."""
    return shutil.disk_usage(path).free


class Outputs:
    """Receives output files for every run, in either mode."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.root = settings.data_dir / "outputs"
        self._hashing: dict[tuple[str, str], _Hashing] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._said: set[tuple[str, str]] = set()
        self.asked: set[str] = set()
        """Push-mode runs someone asked to sync now: the pod's next report reply says so."""

    # -- places ---------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        """Where a run's outputs land."""
        return self.root / run_id

    def partial(self, run_id: str, name: str) -> Path:
        """The partial file of a name on its way (outside the run's folder, so a copy never takes one)."""
        return self.root / ".partial" / run_id / hashlib.sha256(name.encode()).hexdigest()[:40]

    def target(self, run_id: str, name: str) -> Path:
        """Where a file lands; OutputRefused for a name that would leave the run's folder."""
        problem = output_name_problem(name)
        if problem:
            raise OutputRefused(422, "bad_output_name", f"output {name[:200]!r} refused: {problem}")
        base = self.run_dir(run_id)
        path = base / name
        real = os.path.realpath(path.parent)
        if real != os.path.realpath(base) and not real.startswith(os.path.realpath(base) + os.sep):
            raise OutputRefused(422, "bad_output_name", f"output {name[:200]!r} refused: it leaves the folder")
        return path

    async def say_once(self, run_id: str, kind: str, message: str) -> None:
        """A run event, once per distinct message (a pod retrying does not flood the run's events)."""
        if (run_id, message) in self._said:
            return
        self._said.add((run_id, message))
        log.info("run %s: %s", run_id, message)
        await self.store.add_event(run_id, kind, message[:1000])

    def _lock(self, run_id: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((run_id, name), asyncio.Lock())

    # -- receiving -------------------------------------------------------------------------------

    async def plan(self, run_id: str, files: list[dict[str, Any]],
                   refused: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """What to do with each file of a pod's listing: skip (the same version is home), send (from an offset)
        or refuse (with the reason, also a run event)."""
        for item in refused or []:
            await self.say_once(run_id, "output_refused",
                                f"output {str(item.get('path', ''))[:200]!r} refused by the pod: "
                                f"{str(item.get('why', ''))[:200]}")
        home = {f.path: f for f in await self.store.output_files(run_id)}
        home_bytes = sum(f.size or 0 for f in home.values())  # read once: the listing changes no file home
        answers: list[dict[str, Any]] = []
        for item in files:
            name, size, mtime = str(item["path"]), int(item["size"]), float(item["mtime"])
            known = home.get(name)
            if known is not None and known.size == size and known.mtime == mtime and known.moving_size is None:
                answers.append({"path": name, "action": "skip"})
                continue
            try:
                others = home_bytes - (known.size or 0 if known is not None else 0)
                offset = await self.begin(run_id, name, size, mtime, others)
            except OutputRefused as exc:
                answers.append({"path": name, "action": "refuse", "reason": exc.message})
                continue
            answers.append({"path": name, "action": "send", "offset": offset})
        return answers

    async def _room_for(self, run_id: str, name: str, size: int, offset: int, others: int | None) -> None:
        """The per-run cap and the disk's free space, checked before each file (and each piece). `others`: the
        bytes home of the run's other files, when the caller knows them."""
        limit = self.settings.outputs_limit
        if others is None:
            others = sum(f.size or 0 for f in await self.store.output_files(run_id) if f.path != name)
        if others + size > limit:
            message = (f"outputs cap reached: {name!r} ({format_bytes(size)}) is not brought home; the run's "
                       f"outputs may take {format_bytes(limit)} (PODTUI_OUTPUTS_LIMIT) and "
                       f"{format_bytes(others)} are home. The files already home stay; the run goes on.")
            await self.say_once(run_id, "outputs_full", message)
            raise OutputRefused(507, "outputs_cap", message)
        self.root.mkdir(parents=True, exist_ok=True)
        free = await asyncio.to_thread(free_bytes, self.root)
        needed = size - offset + self.settings.outputs_reserve_bytes
        if free < needed:
            message = (f"disk full: {name!r} ({format_bytes(size)}) is not brought home; {self.root} has "
                       f"{format_bytes(free)} free and podtui keeps {format_bytes(self.settings.outputs_reserve_bytes)}"
                       " spare. Free some space; the files already home stay, the run goes on and the next sync "
                       "tries again.")
            await self.say_once(run_id, "outputs_full", message)
            raise OutputRefused(507, "disk_full", message)

    async def begin(self, run_id: str, name: str, size: int, mtime: float, others: int | None = None) -> int:
        """Get ready for a version of a file (size, mtime); the offset to send from (what a partial holds).
        `others`: the bytes home of the run's other files, when the caller knows them (else they are read)."""
        self.target(run_id, name)
        if size < 0:
            raise OutputRefused(400, "bad_size", "size must be 0 or more")
        async with self._lock(run_id, name):
            partial = self.partial(run_id, name)
            before = await self.store.output_moving(run_id, name, size, mtime)
            have = partial.stat().st_size if partial.exists() else 0
            if before != (size, mtime) or have > size:
                partial.unlink(missing_ok=True)  # another version was on its way: it starts over
                self._hashing.pop((run_id, name), None)
                have = 0
            try:
                await self._room_for(run_id, name, size, have, others)
            except OutputRefused:
                await self.store.output_not_moving(run_id, name)
                raise
            return have

    async def absorb(self, run_id: str, name: str, size: int, mtime: float, offset: int,
                     chunks: AsyncIterator[bytes]) -> int:
        """Append the bytes of `chunks` to a file's partial at `offset`; returns the bytes it then has. 409
        (with `received`) when the offset is not what the partial holds."""
        await self.begin(run_id, name, size, mtime)
        key = (run_id, name)
        async with self._lock(run_id, name):
            partial = self.partial(run_id, name)
            partial.parent.mkdir(parents=True, exist_ok=True)
            have = partial.stat().st_size if partial.exists() else 0
            if offset != have:
                raise OutputRefused(409, "wrong_offset", f"expected offset {have}", received=have)
            hashing = self._hashing.get(key)
            if hashing is None or hashing.size != have:
                hashing = _Hashing(have, await asyncio.to_thread(sha256_of, partial, have) if have else
                                   hashlib.sha256())
                self._hashing[key] = hashing
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            # Reading the request and writing + hashing overlap: a writer task takes batches from a short queue
            # (the reader waits when it is full), so the socket is not left idle while a batch is hashed.
            queue: asyncio.Queue[list[bytes]] = asyncio.Queue(maxsize=4)
            failure: list[OSError] = []
            digest = hashing

            async def write_batches() -> None:
                try:
                    while blocks := await queue.get():
                        if failure:
                            continue
                        try:
                            # The write and the hash of a batch run side by side (both leave the GIL).
                            await asyncio.gather(asyncio.to_thread(_write_all, fd, blocks),
                                                 asyncio.to_thread(_hash_all, digest.digest, blocks))
                            digest.size += sum(len(b) for b in blocks)
                        except OSError as exc:
                            failure.append(exc)
                finally:
                    os.close(fd)

            writer = asyncio.create_task(write_batches())
            accepted = hashing.size
            pending: list[bytes] = []
            pending_size = 0
            try:
                async for data in chunks:
                    if failure:
                        break
                    if accepted + len(data) > size:
                        raise OutputRefused(400, "too_long", f"more bytes than the {size} announced for {name!r}")
                    accepted += len(data)
                    pending.append(data)
                    pending_size += len(data)
                    if pending_size >= WRITE_BATCH or len(pending) >= 512:
                        await queue.put(pending)
                        pending, pending_size = [], 0
            finally:
                # What arrived before a cut stays: the next attempt resumes after it.
                if pending:
                    await queue.put(pending)
                await queue.put([])
                await asyncio.shield(writer)
            if failure:
                await self._write_failed(run_id, name, size, failure[0])
            return hashing.size

    async def _write_failed(self, run_id: str, name: str, size: int, exc: OSError) -> None:
        self.partial(run_id, name).unlink(missing_ok=True)
        self._hashing.pop((run_id, name), None)
        await self.store.output_not_moving(run_id, name)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            message = (f"disk full while receiving {name!r} ({format_bytes(size)}): its partial copy was removed. "
                       "The files already home stay; the run goes on; the next sync tries again.")
            await self.say_once(run_id, "outputs_full", message)
            raise OutputRefused(507, "disk_full", message) from None
        message = f"cannot write output {name!r}: {exc.strerror or exc}"
        await self.say_once(run_id, "output_failed", message)
        raise OutputRefused(507, "write_failed", message) from None

    async def complete(self, run_id: str, name: str, size: int, mtime: float, sha256: str | None) -> OutputFile:
        """The pod sent the last byte: check the sha256, then put the file in place; 422 on a mismatch (the
        partial is dropped: a wrong byte cannot be found by offset). None: no sha256 to check against (a file
        fetched from a volume), the one computed here is recorded."""
        target = self.target(run_id, name)
        key = (run_id, name)
        async with self._lock(run_id, name):
            partial = self.partial(run_id, name)
            if size == 0 and not partial.exists():  # an empty file: no piece came to make its partial
                partial.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(partial, os.O_WRONLY | os.O_CREAT, 0o600))
            have = partial.stat().st_size if partial.exists() else 0
            if have != size:
                raise OutputRefused(409, "incomplete", f"{name!r} has {have} of {size} bytes", received=have)
            hashing = self._hashing.get(key)
            if hashing is None or hashing.size != size:
                hashing = _Hashing(size, await asyncio.to_thread(sha256_of, partial, size))
            got = hashing.digest.hexdigest()
            self._hashing.pop(key, None)
            if sha256 is not None and got != sha256.lower():
                partial.unlink(missing_ok=True)
                await self.store.output_not_moving(run_id, name)
                await self.store.add_event(run_id, "output_mismatch", f"{name!r} arrived with another sha256 than "
                                           "the pod's; it is sent again from the start")
                raise OutputRefused(422, "sha256_mismatch", f"sha256 of {name!r} does not match; send it again")
            try:
                await asyncio.to_thread(_place, partial, target)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                await self.store.output_not_moving(run_id, name)
                message = f"output {name!r} cannot be placed: {exc.strerror or exc} (a file and a folder share a name?)"
                await self.say_once(run_id, "output_refused", message)
                raise OutputRefused(409, "cannot_place", message) from None
            await self.store.output_home(run_id, name, size, mtime, got)
            self._locks.pop(key, None)
            return OutputFile(path=name, size=size, sha256=got, mtime=mtime, home_at=time.time())

    # -- reading ---------------------------------------------------------------------------------

    async def page(self, run: Run) -> OutputsPage:
        """A run's outputs and their summary."""
        files = await self.store.output_files(run.id)
        for f in files:
            if f.moving_size is not None:
                partial = self.partial(run.id, f.path)
                f.received = partial.stat().st_size if partial.exists() else 0
        last, final = await self.store.output_sync(run.id)
        home = [f for f in files if f.size is not None]
        moving = [f for f in files if f.moving_size is not None]
        if moving:
            state = "moving"
        elif final:
            state = "home"
        elif last or home:
            state = "synced"
        else:
            state = "none"
        summary = OutputsSummary(
            files_home=len(home), bytes_home=sum(f.size or 0 for f in home), files_moving=len(moving),
            bytes_moving=sum(f.moving_size or 0 for f in moving), bytes_received=sum(f.received for f in moving),
            state=state, last_sync_at=last, final_at=final,
            pod_until=run.keep_alive_until if run.status.is_final and not final else None)
        return OutputsPage(run_id=run.id, folder=str(self.run_dir(run.id)), files=files, summary=summary)

    async def home_file(self, run_id: str, name: str) -> tuple[Path, OutputFile]:
        """A file that is home (for a client's download); NotFound otherwise."""
        path = self.target(run_id, name)
        for f in await self.store.output_files(run_id):
            if f.path == name and f.size is not None and path.is_file():
                return path, f
        raise NotFound(f"{name!r} is not among this run's outputs that are home")


def _place(partial: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, target)
