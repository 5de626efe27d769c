"""Async client of the control-plane API (httpx), used by the TUI and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from .bootstrap.agent.output_names import output_name_problem
from .digest import sha256_file
from .errors import ControlPlaneError, ControlPlaneUnreachable
from .feed import FeedEntry, parse_entry
from .live import Follow
from .models import (
    Dataset,
    GpuOffer,
    LaunchSpec,
    LogsPage,
    MetricsPage,
    OrphanPod,
    OutputFile,
    OutputsPage,
    PodLogs,
    Run,
    RunEvent,
    Volume,
    VolumeCreate,
)
from .plane_link import PlaneLink


class Client:
    """One control plane, one admin token."""

    def __init__(self, url: str, admin_token: str | None, timeout: float = 30.0, token_source: str = "") -> None:
        self.url = url.rstrip("/")
        self.token_source = token_source
        """Where the admin token came from (`--token`, the token file …): a refusal names it."""
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ControlPlaneError(f"{url[:200]!r} is not a control plane's URL: give one like http://127.0.0.1:8765 "
                                    "(--server or PODTUI_SERVER)")
        headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        # Certificates are checked for every https control plane. A plain-http one never speaks TLS (no redirects
        # are followed), so its client skips loading the system's CA store: 20 ms of the dashboard's start.
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout, trust_env=False,
                                       verify=scheme == "https")

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ControlPlaneUnreachable(self.url) from exc
        except httpx.RemoteProtocolError as exc:
            raise ControlPlaneError(f"{self.url} does not answer like a podtui control plane ({exc})") from exc
        except httpx.TransportError as exc:
            raise ControlPlaneError(f"talking to {self.url} failed: {exc!r}") from exc
        if response.status_code >= 400:
            raise _error_of(response, self.token_source)
        try:
            return response.json()
        except ValueError:
            raise ControlPlaneError(f"{self.url} answered something that is not JSON; is it a podtui control "
                                    "plane?", response.status_code) from None

    async def health(self) -> dict[str, Any]:
        """/healthz."""
        return dict(await self._call("GET", "/healthz"))

    async def datasets(self) -> list[Dataset]:
        """Registered datasets."""
        return [Dataset.model_validate(d) for d in await self._call("GET", "/api/v1/datasets")]

    async def add_dataset(self, path: str, name: str | None = None, source: str | None = None,
                          s3_endpoint_url: str | None = None) -> Dataset:
        """Register a dataset on the control plane's machine (`path`), or one its pods fetch (`source`)."""
        body: dict[str, str] = {"source": source} if source else {"path": path}
        if name:
            body["name"] = name
        if s3_endpoint_url:
            body["s3_endpoint_url"] = s3_endpoint_url
        return Dataset.model_validate(await self._call("POST", "/api/v1/datasets", json=body, timeout=None))

    async def remove_dataset(self, name: str) -> int:
        """Take a dataset's name out of the registry; how many versions of it were removed."""
        reply = await self._call("DELETE", f"/api/v1/datasets/{quote(name, safe='')}")
        return int(reply.get("removed_versions", 0))

    async def push_dataset(self, name: str, volume: str) -> AsyncIterator[dict[str, Any]]:
        """Push a local dataset onto a RunPod volume: yields progress ({done, total}), then {result} or {error}."""
        async for item in self._json_lines(f"/api/v1/datasets/{quote(name, safe='')}/push", {"volume": volume}):
            yield item

    async def fetch_volume_outputs(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        """Fetch the outputs a run wrote to its volume home: yields progress ({done, total}), then {result} or
        {error}."""
        async for item in self._json_lines(f"/api/v1/runs/{quote(run_id, safe='')}/outputs/fetch", {}):
            yield item

    async def _json_lines(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST, and the answer's JSON lines as they come."""
        try:
            async with self._http.stream("POST", path, json=body, timeout=None) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error_of(response, self.token_source)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ControlPlaneUnreachable(self.url) from exc
        except httpx.TransportError as exc:
            raise ControlPlaneError(f"talking to {self.url} failed: {exc!r}") from exc

    async def volumes(self, provider: str | None = None) -> list[Volume]:
        """Volumes (RunPod network volumes, local folders)."""
        params = {"provider": provider} if provider else {}
        return [Volume.model_validate(v) for v in await self._call("GET", "/api/v1/volumes", params=params)]

    async def create_volume(self, body: VolumeCreate) -> Volume:
        """Create a volume."""
        return Volume.model_validate(await self._call("POST", "/api/v1/volumes", timeout=None,
                                                      json=body.model_dump(mode="json", exclude_none=True)))

    async def remove_volume(self, name: str, provider: str | None = None) -> Volume:
        """Delete a volume and what is on it."""
        params = {"provider": provider} if provider else {}
        return Volume.model_validate(await self._call("DELETE", f"/api/v1/volumes/{quote(name, safe='')}",
                                                      params=params, timeout=None))

    async def gpus(self, provider: str | None = None, refresh: bool = False, cloud: str = "SECURE",
                   count: int = 1) -> list[GpuOffer]:
        """GPU offers, with the stock for this cloud type and GPU count."""
        params = {"provider": provider} if provider else {}
        if refresh:
            params["refresh"] = "1"
        if cloud != "SECURE" or count != 1:
            params.update(cloud=cloud, count=str(count))
        return [GpuOffer.model_validate(o) for o in await self._call("GET", "/api/v1/gpus", params=params)]

    async def orphans(self) -> list[OrphanPod]:
        """Pods no run knows."""
        return [OrphanPod.model_validate(o) for o in await self._call("GET", "/api/v1/pods/orphans")]

    async def terminate_orphan(self, provider: str, pod_id: str) -> None:
        """Terminate a pod no run knows."""
        await self._call("POST", f"/api/v1/pods/{provider}/{pod_id}/terminate", timeout=None)

    async def runs(self) -> list[Run]:
        """All runs, newest first."""
        return [Run.model_validate(r) for r in await self._call("GET", "/api/v1/runs")]

    async def run(self, run_id: str) -> Run:
        """One run."""
        return Run.model_validate(await self._call("GET", f"/api/v1/runs/{run_id}"))

    async def launch(self, spec: LaunchSpec) -> Run:
        """Launch a run."""
        body = spec.model_dump(mode="json", exclude_none=True)
        return Run.model_validate(await self._call("POST", "/api/v1/runs", json=body, timeout=None))

    async def data_estimate(self, spec: LaunchSpec) -> dict[str, Any]:
        """What getting a launch's dataset to its pod takes (`message` set when the user should hear it)."""
        body = spec.model_dump(mode="json", exclude_none=True)
        return dict(await self._call("POST", "/api/v1/data-estimate", json=body, timeout=None))

    async def terminate(self, run_id: str) -> Run:
        """Terminate a run's pod."""
        return Run.model_validate(await self._call("POST", f"/api/v1/runs/{run_id}/terminate", timeout=None))

    async def stop(self, run_id: str) -> Run:
        """Stop a run's pod."""
        return Run.model_validate(await self._call("POST", f"/api/v1/runs/{run_id}/stop", timeout=None))

    async def metrics(self, run_id: str, name: str | None = None, after_step: int | None = None,
                      max_points: int | None = None) -> MetricsPage:
        """A run's metrics by name."""
        params: dict[str, Any] = {}
        if name:
            params["name"] = name
        if after_step is not None:
            params["after_step"] = after_step
        if max_points is not None:
            params["max_points"] = max_points
        return MetricsPage.model_validate(await self._call("GET", f"/api/v1/runs/{run_id}/metrics", params=params))

    async def logs(self, run_id: str, after_seq: int = -1, limit: int = 1000, tail: bool = False,
                   before_seq: int | None = None) -> LogsPage:
        """A page of log lines (with before_seq: the `limit` lines just before it)."""
        params: dict[str, Any] = {"after_seq": after_seq, "limit": limit}
        if before_seq is not None:
            params["before_seq"] = before_seq
        if tail:
            params["tail"] = "1"
        return LogsPage.model_validate(await self._call("GET", f"/api/v1/runs/{run_id}/logs", params=params))

    async def pod_logs(self, run_id: str, tail: int = 50) -> PodLogs:
        """The tail of the run's pod's own logs at its provider."""
        data = await self._call("GET", f"/api/v1/runs/{run_id}/pod-logs", params={"tail": tail})
        return PodLogs.model_validate(data)

    async def run_events(self, run_id: str, after_id: int = 0) -> list[RunEvent]:
        """A run's events after an id."""
        data = await self._call("GET", f"/api/v1/runs/{run_id}/events", params={"after_id": after_id})
        return [RunEvent.model_validate(e) for e in data]

    async def outputs(self, run_id: str, fresh: bool = False) -> OutputsPage:
        """A run's outputs: the files home, what still moves, the summary (and those on its volume; `fresh`:
        listed now)."""
        return OutputsPage.model_validate(await self._call("GET", f"/api/v1/runs/{run_id}/outputs",
                                                           params={"fresh": "1"} if fresh else None))

    async def sync_outputs(self, run_id: str) -> dict[str, Any]:
        """Ask for a live run's outputs now."""
        return dict(await self._call("POST", f"/api/v1/runs/{run_id}/outputs/sync"))

    async def download_output(self, run_id: str, file: OutputFile, folder: Path,
                              progress: Callable[[int], None] | None = None) -> tuple[Path, bool]:
        """Copy one output file that is home into `folder` (under its own relative name): resumed from a
        `.part` file after an interruption, its sha256 checked before it takes its name. (path, copied): an
        identical file already there is not copied again."""
        problem = output_name_problem(file.path)
        if problem:
            raise ControlPlaneError(f"the control plane named an output {file.path[:200]!r}: {problem}; not written")
        dest = folder / file.path
        if dest.is_file() and dest.stat().st_size == file.size and \
                await asyncio.to_thread(sha256_file, dest) == file.sha256:
            return dest, False
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        for _attempt in range(2):
            have = part.stat().st_size if part.exists() else 0
            # A newer version may have replaced the file since the .part began: the sha256 check catches it.
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                async with self._http.stream("GET", f"/api/v1/runs/{run_id}/outputs/file",
                                             params={"path": file.path}, headers=headers,
                                             timeout=httpx.Timeout(60.0, read=300.0)) as response:
                    if response.status_code >= 400 and response.status_code != 416:
                        await response.aread()
                        raise _error_of(response, self.token_source)
                    if response.status_code == 416:  # the .part is whole already
                        await response.aread()
                    else:
                        with open(part, "ab" if response.status_code == 206 else "wb") as f:
                            async for chunk in response.aiter_bytes(1 << 20):
                                f.write(chunk)
                                if progress is not None:
                                    progress(len(chunk))
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise ControlPlaneUnreachable(self.url) from exc
            except httpx.TransportError as exc:
                raise ControlPlaneError(f"copying {file.path} stopped ({exc!r}); run it again to resume") from exc
            if await asyncio.to_thread(sha256_file, part) == file.sha256:
                os.replace(part, dest)
                return dest, True
            part.unlink(missing_ok=True)  # a different version was there: fetch it whole once more
        raise ControlPlaneError(f"{file.path} arrived with another sha256 than the control plane's; try again")

    async def events(self, after: int | None = None, run_id: str | None = None, follow: Follow | None = None,
                     retry_s: float = 2.0, link: PlaneLink | None = None,
                     on_link: Callable[[bool], None] | None = None) -> AsyncIterator[tuple[int, FeedEntry]]:
        """The live feed as (id, typed entry); reconnects with Last-Event-ID, so nothing is missed. With `follow`,
        only its runs come in full (metrics and log lines) and the rest as summaries; when it changes, the stream
        reconnects at once with the new subscription from the last entry yielded, so a newly followed run's points
        from then on come too. Kinds this version does not know (a newer control plane) are skipped.

        With `link`, connections are counted on it, reconnects back off by its delays (instead of `retry_s`), and
        `on_link(reachable)` is called when the control plane stops or starts answering again."""
        last = after
        while True:
            params = {"run": run_id} if run_id else {}
            changed = None
            if follow is not None:
                params["full"] = ",".join(sorted(follow.runs))
                changed = asyncio.ensure_future(follow.renewed().wait())
            items: asyncio.Queue[_FeedItem] = asyncio.Queue(256)  # bounded: a slow consumer slows the reading
            reader = asyncio.create_task(self._read_feed(last, params, items))
            resubscribe = False
            connected = False
            try:
                while True:
                    getter = asyncio.ensure_future(items.get())
                    await asyncio.wait([getter] if changed is None else [getter, changed],
                                       return_when=asyncio.FIRST_COMPLETED)
                    if changed is not None and changed.done():  # before anything more of the old subscription
                        getter.cancel()
                        resubscribe = True
                        break
                    item = getter.result()
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, _Connected):
                        connected = True
                        if link is not None and link.answered() and on_link is not None:
                            on_link(True)
                        continue
                    if item is None:
                        if link is not None:  # the stream ended, or never began
                            if connected:  # it worked until now: one quick retry before saying so
                                link.dropped(time.time())
                            elif link.failed(time.time()) and on_link is not None:
                                on_link(False)
                        break  # reconnect after a pause
                    event_id, entry = item
                    if entry is None:  # where a stream "from now" began
                        last = event_id if last is None else last
                        continue
                    last = event_id
                    yield event_id, entry
            finally:
                reader.cancel()
                if changed is not None:
                    changed.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if not resubscribe:
                await asyncio.sleep(retry_s if link is None else link.retry_delay())

    async def _read_feed(self, after: int | None, params: dict[str, str], items: asyncio.Queue[_FeedItem]) -> None:
        """One connection to the feed: its entries into `items`, then None when it ends or fails (an error answer
        goes in as the exception to raise)."""
        headers = {"Last-Event-ID": str(after)} if after is not None else {}
        try:
            async with self._http.stream("GET", "/api/v1/events", headers=headers, params=params,
                                         timeout=httpx.Timeout(30.0, read=FEED_SILENCE_S)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    await items.put(_error_of(response, self.token_source))
                    return
                await items.put(_CONNECTED)
                event_id, kind, data = None, "message", ""
                async for line in response.aiter_lines():
                    if line.startswith("id:"):
                        event_id = int(line[3:].strip())
                    elif line.startswith(": from "):
                        await items.put((int(line[7:]), None))
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line == "" and event_id is not None:
                        entry = parse_entry(kind, data or "{}")
                        if entry is not None:
                            await items.put((event_id, entry))
                        event_id, kind, data = None, "message", ""
        except (httpx.TransportError, httpx.RemoteProtocolError):
            pass
        await items.put(None)


class _Connected:
    """The feed's answer began (the control plane answers)."""


_CONNECTED = _Connected()
FEED_SILENCE_S = 60.0
"""A feed silent this long is taken for dead (the control plane sends a keep-alive every 15 s by default): a
control plane frozen or cut off behind a live TCP connection is noticed."""

_FeedItem = tuple[int, FeedEntry | None] | _Connected | BaseException | None
"""What one feed connection hands the reader: (id, entry), (start id, None), _CONNECTED, an error to raise, or
None (ended)."""


def _error_of(response: httpx.Response, token_source: str) -> ControlPlaneError:
    try:
        body = response.json()
        error = body["error"]
        message, code = str(error["message"]), str(error.get("code", ""))
    except (ValueError, KeyError, TypeError):
        message, code = f"HTTP {response.status_code}: {response.text[:200]}", ""
    if response.status_code == 401 and code == "unauthorized":  # said here, where the token came from is known
        where = "give its token with --token or PODTUI_ADMIN_TOKEN (it is in the admin_token file of its data dir)"
        if token_source.startswith("none"):
            message = f"this control plane needs its admin token: {token_source}; {where}"
        elif token_source:
            message = f"the admin token from {token_source} is not this control plane's; {where}"
        else:
            message += " (pass --token or set PODTUI_ADMIN_TOKEN when the control plane runs elsewhere)"
    return ControlPlaneError(message, response.status_code, code)
