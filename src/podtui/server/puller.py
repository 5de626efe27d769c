"""Pull mode: the control plane goes to the pod (a laptop has no URL a pod could reach).

For each live pull-mode run the puller talks to the pod agent's port (local pods: 127.0.0.1; RunPod: its HTTPS
proxy, `https://<pod id>-<port>.proxy.runpod.net`), with the run's pod token on every request:
1. it waits for the port to answer (the image is pulled, the agent starts);
2. it uploads the start script, the dataset's files and the code bundle in chunks of at most
   `upload_chunk_bytes` (each well inside the proxy's 100 s), resuming from the size the pod reports after any
   failure; the pod checks each file's sha256 at the end; progress shows as a download would;
3. it tells the pod to start, then long-polls its outbox (at most 25 s a request), stores each report through
   the same path as a pushed one, and acknowledges it with the reply (stop, deadline). The pod keeps a report
   until it is acknowledged, so a control plane that sleeps, quits or is killed loses nothing: the next poll
   catches up. A restarted control plane resumes every live pull-mode run.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from ..bootstrap.script import render_start_script
from ..config import Settings, ensure_secret
from ..digest import sha256_file
from ..models import DownloadProgress, Report, Run, RunStatus
from ..report_rows import ReportBatch
from ..store import DatasetRecord, NotFound, Store
from .dataset_fetched import DatasetFetched, record_fetch
from .datasets import DatasetError, resolve_served_file
from .ingest import parse_report
from .responses import ApiError
from .runs import RunService
from .sources import cache_key, fetch_plan, is_remote

log = logging.getLogger(__name__)

POLL_WAIT_S = 25.0
PROXY_ANSWER_S = 90.0
"""The longest any request through RunPod's proxy waits (the proxy itself gives up at 100 s with a 524)."""
ASK_AGAIN_S = 1.0
RETRY_S = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0)
NODE_CACHE_WAIT_S = 120.0  # after node 0's start: its start script renames its upload into the shared cache
NODE_0_UPLOADS_S = 3.0  # how often node k > 0 looks whether node 0's upload is done


class RunEnded(Exception):
    """The run ended while its pod was being waited for: nothing more to send it."""


class PodUnreachable(RuntimeError):
    """The pod's port did not answer usably (still booting, the proxy's 502/524, a reset)."""


def pod_token(secret: bytes, run_id: str) -> str:
    """The token a pull-mode pod accepts: derived from the control plane's secret, so nothing is stored."""
    return hmac.new(secret, f"pod:{run_id}".encode(), hashlib.sha256).hexdigest()


@dataclass
class Upload:
    """One input for the pod: a slot name and a file on this machine (or bytes)."""

    slot: str
    size: int
    sha256: str
    path: str | None = None
    data: bytes | None = None


class PodLink:
    """HTTP to one pod's port."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 60.0) -> None:
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                      timeout=httpx.Timeout(timeout_s, connect=10.0), trust_env=False)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PodUnreachable(f"{type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise PodUnreachable(f"the pod refused the token ({response.status_code})")
        if response.status_code >= 500 or (response.status_code == 404 and "json" not in
                                           response.headers.get("content-type", "")):
            raise PodUnreachable(f"HTTP {response.status_code} before the pod's agent answered")
        return response

    async def call_until_done(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call whose work on the pod may outlast RunPod's proxy (it ends a request at 100 s): the pod answers
        202 while it works, and the call is made again until it answers otherwise."""
        while True:
            response = await self.call(method, path, timeout=PROXY_ANSWER_S, **kwargs)
            if response.status_code != 202:
                return response
            await asyncio.sleep(ASK_AGAIN_S)

    async def state(self) -> dict[str, Any]:
        return dict((await self.call("GET", "/v1/state")).json())


class Puller:
    """Follows every live pull-mode run: uploads, start, outbox."""

    def __init__(self, settings: Settings, store: Store, runs: RunService) -> None:
        self.settings = settings
        self.store = store
        self.runs = runs
        self.secret = ensure_secret(settings, "pod_secret").encode()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._fetched: set[str] = set()
        """Runs whose pod's word on their dataset was read (dataset-fetched.json through the port)."""
        self._started: set[tuple[str, int]] = set()
        """Nodes k > 0 this control plane started (node 0's start is the run's `pod_started` event)."""

    def token(self, run_id: str) -> str:
        """The pod token of a run (never logged or shown)."""
        return pod_token(self.secret, run_id)

    def follow(self, run_id: str, nodes: int = 1) -> None:
        """Start following a run (once): each of its nodes through its own port."""
        for node in range(nodes):
            key = run_id if node == 0 else f"{run_id}/{node}"
            task = self._tasks.get(key)
            if task is None or task.done():
                self._tasks[key] = asyncio.create_task(self._follow(run_id, node), name=f"pull-{key}")

    async def resume(self) -> None:
        """After a restart: follow every live pull-mode run that has a pod."""
        for run in await self.store.list_runs(live_only=True):
            if run.connect == "pull" and run.pod_id:
                self.follow(run.id, run.spec.nodes)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def url_of(self, run: Run, node: int = 0) -> str | None:
        """Where a run's pod (of several: node `node`'s) listens; None while unknown."""
        provider = self.runs.providers.get(run.provider)
        endpoint = getattr(provider, "pod_endpoint", None)
        pod_id = run.pod_id
        if run.spec.nodes > 1:  # a member's own port (the supervisor's first pass names the members)
            pod_id = next((n.pod_id for n in run.nodes if n.rank == node), None)
        if endpoint is None or not pod_id or not run.pod_port:
            return None
        url: str = endpoint(pod_id, run.pod_port)
        return url

    async def _follow(self, run_id: str, node: int = 0) -> None:
        failures = 0
        said: set[str] = set()

        async def tell(kind: str, message: str) -> None:  # once per distinct message: retries do not flood
            if message not in said:
                said.add(message)
                await self.store.add_event(run_id, kind, message[:500])

        while True:
            try:
                run = await self.store.get_run(run_id)
            except NotFound:
                return
            if not self._worth_pulling(run):
                return
            url = self.url_of(run, node)
            if url is None:
                if run.spec.nodes > 1 and run.pod_id:  # the members are named on the supervisor's next pass
                    await asyncio.sleep(RETRY_S[0])
                    continue
                return
            link = PodLink(url, self.token(run_id))
            who = f"node {node}'s pod" if node else "the pod"
            try:
                state = await link.state()
                if not state.get("started"):
                    if (await self.store.has_event(run_id, "pod_started", since=run.started_at) if node == 0
                            else (run_id, node) in self._started):  # this pod's start (an attempt's)
                        # The agent lost its state: the container restarted (RunPod restarts a container whose
                        # process exited). Starting again would train from scratch under the same numbers.
                        self.runs.container_restarted(run)
                        return
                    await tell("pull", f"{who} answers on its port; uploading inputs")
                    if node == 0:
                        await self.store.start_data_wait(run_id, time.time())  # the pod bills while this uploads
                    await self._upload_inputs(run, link, state, node)
                    await link.call("POST", "/v1/start", content=b"{}")
                    if node:
                        self._started.add((run_id, node))
                        await self.store.add_event(run_id, "node_started", f"node {node}: inputs uploaded and "
                                                   "checked; the pod starts")
                    else:
                        await self.store.add_event(run_id, "pod_started", "inputs uploaded and checked; the pod "
                                                   "starts")
                failures = 0
                if await self._pull_reports(run_id, link, node):
                    failures = 0
            except PodUnreachable as exc:
                run = await self.store.get_run(run_id)
                if not self._worth_pulling(run):  # the pod ended with its run: nothing to wait for
                    return
                await tell("pull", f"waiting for {who}'s agent to answer on its port ({exc})")
                log.debug("run %s: pod not reachable: %s", run_id, exc)
            except RunEnded:
                return
            except DatasetError as exc:  # the dataset changed or vanished here: the pod cannot get it
                await self.store.add_event(run_id, "pull_failed", str(exc))
                self.runs.terminate_soon(run_id, f"cannot upload the dataset: {exc}", RunStatus.failed)
                return
            except (ApiError, OSError, ValueError, KeyError, TypeError) as exc:
                message = exc.message if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
                log.warning("run %s: pulling failed: %s", run_id, message)
                await tell("pull_failed", message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("run %s: pulling failed", run_id)
            finally:
                await link.close()
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    def _worth_pulling(self, run: Run) -> bool:
        """A live run, or a finished one whose pod is kept alive (it still sends heartbeats)."""
        return run.pod_in_use(time.time())

    async def _pull_reports(self, run_id: str, link: PodLink, node: int = 0) -> bool:
        """Pull, store and acknowledge reports until the run is over (True) or the pod stops answering."""
        while True:
            response = await link.call("GET", "/v1/outbox", params={"wait": POLL_WAIT_S},
                                       timeout=POLL_WAIT_S + 30)
            if response.status_code == 204:
                run = await self.store.get_run(run_id)
                if not self._worth_pulling(run):
                    return True
                continue
            got = response.json()
            number, report = int(got["seq"]), got["report"]
            if node == 0 and report.get("status") in ("training", "succeeded", "failed") and \
                    run_id not in self._fetched:  # the dataset is in place: what the pod said of it, before the run
                await self._read_fetched(run_id, link)  # may end with this report
            try:
                reply = await self.runs.take_report(run_id, parse_report(run_id, json.dumps(report).encode()))
                answer = reply.model_dump(mode="json")
            except ApiError as exc:
                # A batch the store refuses would block every report after it. Keep what decides the run (status,
                # exit code, error, heartbeat), say what was dropped, and acknowledge.
                log.warning("run %s: pulled report refused: %s", run_id, exc.message)
                await self.store.add_event(run_id, "report_refused", f"a report from the pod was refused and "
                                           f"its lines and metrics dropped: {exc.message[:300]}")
                kept = {k: v for k, v in report.items() if k in ("status", "exit_code", "error", "heartbeat_ts")}
                try:
                    batch = parse_report(run_id, json.dumps(kept).encode())
                    answer = (await self.runs.take_report(run_id, batch)).model_dump(mode="json")
                except ApiError:
                    answer = {"error": exc.message}
            await link.call("POST", "/v1/ack", json={"seq": number, "reply": answer})

    async def _read_fetched(self, run_id: str, link: PodLink) -> None:
        """What the pod's start script or fetcher said once the dataset was in place (the sha256s of an https
        file's first fetch, held to by later fetches; the volume's cache): recorded as a pushed one is."""
        answer = await link.call("GET", "/v1/fetched")
        if answer.status_code != 200:
            log.info("run %s: the pod said nothing about its dataset (%s)", run_id, answer.status_code)
            return
        self._fetched.add(run_id)
        try:
            body = DatasetFetched.model_validate(answer.json())
        except ValueError as exc:
            log.warning("run %s: the pod's word on its dataset is unreadable: %s", run_id, exc)
            return
        await record_fetch(self.store, await self.store.get_run(run_id), body)

    # -- inputs ------------------------------------------------------------------------------------

    async def inputs(self, run: Run, link: PodLink | None = None, node: int = 0) -> list[Upload]:
        """What the pod needs: the start script, the dataset's files, the code bundle. With a volume, a local
        dataset goes through the volume's cache: nothing of it when the pod finds it there (`GET /v1/cache/<key>`),
        else its files, which the start script renames into the cache for the next run."""
        record = await self.store.find_dataset(run.dataset_id)
        plan = cache_plan = None
        if is_remote(record.dataset.kind):  # the pod fetches it from its source: nothing of it goes through here
            plan = await asyncio.to_thread(fetch_plan, record.dataset, record.root, record.manifest, self.settings)
            if run.spec.volume:
                plan["volume"] = run.spec.volume
        elif run.spec.volume and link is not None:
            cache_plan = await self._cache_plan(run, record, link, node)
        files = [] if plan else [(f"data-{i}", entry) for i, entry in enumerate(record.manifest)]
        if cache_plan is not None and cache_plan["cached"]:
            files = []
        if plan or cache_plan is not None:
            placed = []
        elif record.dataset.kind == "file":
            placed = [(files[0][0], record.manifest[0]["path"])]
        else:
            placed = [(slot, f"{record.dataset.name}/{entry['path']}") for slot, entry in files]
        script = render_start_script(
            run_id=run.id, dataset=record.dataset, dataset_file=record.manifest[0]["path"], download_token="",
            pod_url="", command=run.spec.command or "", has_bundle=bool(run.spec.workdir),
            pulled_files=placed, has_resume=self.runs.retries.resume_archive(run.id).is_file(),
            fetch_plan=plan, cache_plan=cache_plan).encode()
        uploads = [Upload("script", len(script), hashlib.sha256(script).hexdigest(), data=script)]
        for slot, entry in files:
            path = await asyncio.to_thread(resolve_served_file, record.root, entry)
            uploads.append(Upload(slot, int(entry["size"]), str(entry["sha256"]), path=path))
        bundle = self.runs.bundle_path(run.id)
        if run.spec.workdir and bundle.is_file():
            uploads.append(Upload("bundle", bundle.stat().st_size,
                                  await asyncio.to_thread(sha256_file, bundle), path=str(bundle)))
        resume = self.runs.retries.resume_archive(run.id)
        if resume.is_file():  # what earlier attempts brought home (--retries)
            uploads.append(Upload("resume", resume.stat().st_size,
                                  await asyncio.to_thread(sha256_file, resume), path=str(resume)))
        return uploads

    async def _cache_plan(self, run: Run, record: DatasetRecord, link: PodLink, node: int = 0) -> dict[str, Any]:
        """Ask the pod whether its volume's cache has the dataset; the plan the start script places it by."""
        key = cache_key(record.dataset, "")
        found = await self._ask_cache(link, key)
        if not found.get("cached") and node:
            found = await self._node_0s_copy(run, link, key, node) or found
        single = record.manifest[0]["path"] if record.dataset.kind == "file" else None
        return {"name": record.dataset.name, "key": key, "single": single, "volume": run.spec.volume,
                "cached": bool(found.get("cached")), "size": record.dataset.size_bytes,
                "files": [[f"data-{i}", e["path"]] for i, e in enumerate(record.manifest)],
                "sha256": {e["path"]: e["sha256"] for e in record.manifest}}

    @staticmethod
    async def _ask_cache(link: PodLink, key: str) -> dict[str, Any]:
        answer = await link.call("GET", f"/v1/cache/{key}")
        found: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
        if not found.get("volume"):
            raise ValueError(f"the pod has no volume mounted (it answered {answer.status_code} about its cache)")
        return found

    async def _node_0s_copy(self, run: Run, link: PodLink, key: str, node: int) -> dict[str, Any] | None:
        """Node k > 0 mounts node 0's volume: rather than send the dataset through this machine's uplink once per
        node while every pod bills, wait for node 0's upload (its start script renames it into the cache) and
        find it there. None when it does not show within NODE_CACHE_WAIT_S of node 0's start: node k gets its
        own upload then."""
        await self.store.add_event(run.id, "pull", f"node {node} waits for node 0's upload into the volume's cache")
        shown_by = None
        while True:
            fresh = await self.store.get_run(run.id)
            if not self._worth_pulling(fresh):
                raise RunEnded(run.id)
            if shown_by is None and await self.store.has_event(run.id, "pod_started", since=fresh.started_at):
                shown_by = time.monotonic() + NODE_CACHE_WAIT_S
            if shown_by is None:  # node 0 still uploads (minutes, for a large dataset): look now and then
                await asyncio.sleep(NODE_0_UPLOADS_S)
                continue
            found = await self._ask_cache(link, key)
            if found.get("cached"):
                return found
            if time.monotonic() > shown_by:
                await self.store.add_event(run.id, "pull", f"node 0's copy did not show in node {node}'s cache "
                                           f"within {NODE_CACHE_WAIT_S:.0f} s; uploading the dataset to it")
                return None
            await asyncio.sleep(ASK_AGAIN_S)

    async def _upload_inputs(self, run: Run, link: PodLink, state: dict[str, Any], node: int = 0) -> None:
        uploads = await self.inputs(run, link, node)
        total = sum(u.size for u in uploads if u.slot != "script")
        have = state.get("inputs") or {}
        done_bytes = 0
        for upload in uploads:
            known = have.get(upload.slot) or {}
            if known.get("done"):
                done_bytes += upload.size if upload.slot != "script" else 0
                continue
            offset = int(known.get("size") or 0)
            if offset > upload.size:
                offset = 0
            async for sent in send_input(link, upload, offset, self.settings.upload_chunk_bytes):
                if upload.slot != "script" and not node:  # the run's download bar is node 0's
                    await self._progress(run.id, done_bytes + sent, total)
            answer = await link.call_until_done("POST", f"/v1/inputs/{upload.slot}/done", content=b"{}",
                                                params={"sha256": upload.sha256, "size": upload.size})
            if answer.status_code != 200:
                raise ValueError(f"the pod refused {upload.slot} after upload ({answer.status_code}: "
                                 f"{answer.text[:200]}); sending it again")
            done_bytes += upload.size if upload.slot != "script" else 0

    async def _progress(self, run_id: str, done: int, total: int) -> None:
        report = Report(status="downloading", progress=DownloadProgress(bytes_done=done, bytes_total=total),
                        heartbeat_ts=time.time())
        await self.store.apply_report(run_id, ReportBatch.from_report(run_id, report), time.time())


async def send_input(link: PodLink, upload: Upload, offset: int, chunk: int) -> AsyncIterator[int]:
    """PUT a file into a pod's slot from `offset` in pieces of at most `chunk` bytes, yielding the size the pod
    has; after a 409 it continues from the size the pod reports."""
    if upload.size == 0:  # an empty file still has to exist on the pod
        await link.call("PUT", f"/v1/inputs/{upload.slot}", params={"offset": 0}, content=b"")
    while offset < upload.size:
        data = await asyncio.to_thread(_read, upload, offset, chunk)
        response = await link.call("PUT", f"/v1/inputs/{upload.slot}", params={"offset": offset}, content=data)
        if response.status_code == 409:
            offset = int(response.json().get("size", 0))
            continue
        if response.status_code != 200:
            raise ValueError(f"the pod refused a piece of {upload.slot} ({response.status_code})")
        offset = int(response.json()["size"])
        yield offset


def _read(upload: Upload, offset: int, size: int) -> bytes:
    if upload.data is not None:
        return upload.data[offset:offset + size]
    assert upload.path is not None
    with open(upload.path, "rb") as f:
        f.seek(offset)
        return f.read(size)


