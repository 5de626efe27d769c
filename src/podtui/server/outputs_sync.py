"""When outputs move, and pull mode's side of moving them.

Push mode: the pod's agent syncs by itself (every `--sync-outputs`, at the end); a sync asked for here rides on
the reply to its next report (`sync_outputs`). Pull mode: one task per run fetches through the pod's port: on
request, every `--sync-outputs`, and once the command has ended (the final sync), after which it tells the pod
its outputs are home (`POST /v1/outputs/done`) so it ends itself at once instead of at the keep-alive bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from ..models import Run
from ..store import NotFound, Store
from .outputs import OutputRefused, Outputs
from .outputs_api import sync_ended
from .puller import PodLink, PodUnreachable
from .retries import sync_every

log = logging.getLogger(__name__)

WATCH_S = 1.0


class OutputsSyncer:
    """Asks push-mode pods for their outputs and fetches pull-mode pods' outputs."""

    def __init__(self, store: Store, outputs: Outputs, runs: Any, chunk_bytes: int) -> None:
        self.store = store
        self.outputs = outputs
        self.runs = runs
        self.chunk_bytes = chunk_bytes
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}

    def ask(self, run: Run) -> None:
        """Bring a live run's outputs home now."""
        if run.connect == "pull":
            self._wake.setdefault(run.id, asyncio.Event()).set()
            self.follow(run.id)
        else:
            self.outputs.asked.add(run.id)

    def follow(self, run_id: str) -> None:
        """Follow a pull-mode run (once): syncs while it runs and the final one."""
        task = self._tasks.get(run_id)
        if task is None or task.done():
            self._tasks[run_id] = asyncio.create_task(self._follow(run_id), name=f"outputs-{run_id}")

    async def resume(self) -> None:
        """After a restart: pull-mode runs still running, or ended with their final sync not done."""
        for run in await self.store.list_runs():
            if run.connect != "pull" or not run.pod_id:
                continue
            if run.pod_in_use(time.time()):
                self.follow(run.id)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def link(self, run: Run) -> PodLink | None:
        url = self.runs.puller.url_of(run) if self.runs.puller is not None else None
        return None if url is None else PodLink(url, self.runs.puller.token(run.id))

    async def _follow(self, run_id: str) -> None:
        wake = self._wake.setdefault(run_id, asyncio.Event())
        last = time.time()
        while True:
            try:
                run = await self.store.get_run(run_id)
            except NotFound:
                return
            if run.spec.outputs_on_volume:
                return  # they stay on the volume: nothing comes through this machine unless fetched
            if run.status.is_final:
                await self._final(run)
                return
            every = sync_every(run)
            due = bool(every) and time.time() - last >= (every or 0)
            if wake.is_set() or due:
                wake.clear()
                last = time.time()
                if run.pod_id and await self.store.has_event(run_id, "pod_started", since=run.started_at):
                    await self._sync_quietly(run, final=False)
            try:
                await asyncio.wait_for(wake.wait(), WATCH_S)
            except TimeoutError:
                pass

    async def _final(self, run: Run) -> None:
        """The command ended: fetch until the outputs are home or the keep-alive bound passes."""
        pause = 1.0
        while True:
            run = await self.store.get_run(run.id)
            if not run.keep_alive_until or time.time() >= run.keep_alive_until:
                return  # no window (terminated, keep-alive 0) or it is over: the supervisor ends the pod
            if (await self.store.output_sync(run.id))[1]:
                return
            outcome = await self._sync_quietly(run, final=True)
            if outcome is not None:
                _sent, failed = outcome
                link = self.link(run)
                if link is not None:
                    try:
                        await link.call("POST", "/v1/outputs/done", content=b"{}")
                    except PodUnreachable:
                        pass  # the supervisor ends the pod all the same
                    finally:
                        await link.close()
                await sync_ended(self.store, self.outputs, run, True, failed)
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 15.0)

    async def _sync_quietly(self, run: Run, final: bool) -> tuple[int, int] | None:
        """One pull sync; None when the pod could not be reached (tried again later)."""
        link = self.link(run)
        if link is None:
            return None
        try:
            sent, failed = await self.pull_sync(run, link)
        except PodUnreachable as exc:
            log.info("run %s: outputs not reachable now: %s", run.id, exc)
            return None
        except (httpx.HTTPError, ValueError, KeyError, TypeError, OSError) as exc:
            log.warning("run %s: outputs sync failed: %s", run.id, exc)
            return None
        finally:
            await link.close()
        if not final:
            await self.store.set_output_sync(run.id, synced=True)
        return sent, failed

    async def pull_sync(self, run: Run, link: PodLink) -> tuple[int, int]:
        """List the pod's outputs, fetch what is new or changed in ranges, check each file's sha256 with the
        pod's. (files sent, files not home)."""
        listing = (await link.call("GET", "/v1/outputs")).json()
        plan = await self.outputs.plan(run.id, listing.get("files") or [], listing.get("refused") or [])
        sizes = {f["path"]: (int(f["size"]), float(f["mtime"])) for f in listing.get("files") or []}
        sent = failed = 0
        for item in plan:
            if item["action"] == "refuse":
                failed += 1
            if item["action"] != "send":
                continue
            name = item["path"]
            size, mtime = sizes[name]
            if await self._fetch(run, link, name, size, mtime, int(item["offset"])):
                sent += 1
            else:
                failed += 1
        return sent, failed

    async def _fetch(self, run: Run, link: PodLink, name: str, size: int, mtime: float, offset: int) -> bool:
        params: dict[str, Any] = {"path": name, "size": size, "mtime": repr(mtime)}
        try:
            while offset < size:
                length = min(self.chunk_bytes, size - offset)
                async with link.http.stream("GET", "/v1/outputs/file",
                                            params={**params, "offset": offset, "length": length}) as response:
                    if response.status_code in (404, 409):  # changed or gone since the listing: next sync
                        await response.aread()
                        await self.store.output_not_moving(run.id, name)
                        return False
                    if response.status_code != 200:
                        raise PodUnreachable(f"HTTP {response.status_code} reading {name!r}")
                    offset = await self.outputs.absorb(run.id, name, size, mtime, offset, response.aiter_bytes())
            answer = await link.call_until_done("GET", "/v1/outputs/sha256", params=params)
            if answer.status_code != 200:
                await self.store.output_not_moving(run.id, name)
                return False
            await self.outputs.complete(run.id, name, size, mtime, str(answer.json()["sha256"]))
            return True
        except OutputRefused:
            return False
        except httpx.HTTPError as exc:
            raise PodUnreachable(type(exc).__name__) from None
