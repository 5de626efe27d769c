"""create_app: the control plane's aiohttp application, and ControlPlane, which runs it (embedded in the TUI's
loop, or headless for `podtui serve`) with AppRunner + TCPSite, never web.run_app."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from ..config import Settings, ensure_admin_token
from ..models import MAX_REPORT_BYTES
from ..providers.base import Provider
from ..store import DatasetRecord, NotFound, Store, StoreUnavailable
from . import auth, keys
from .access_log import AccessLogger
from .api import ROUTES
from .datasets import DatasetError, scan_dataset
from .demo import DEMO_NAME, write_demo_dataset
from .doctor import NONCES
from .events import FeedTail
from .guardrails import Limits
from .outputs import Outputs
from .outputs_api import OUTPUTS, SYNCER, VOLUME_OUTPUTS
from .outputs_sync import OutputsSyncer
from .puller import Puller
from .responses import ApiError, describe_validation, error_response
from .runs import RunService
from .supervisor import Supervisor
from .volume_outputs import VolumeOutputsService

log = logging.getLogger(__name__)

_AUTH_BY_PATH = {route.path: route.auth for route in ROUTES}


def _error_middleware() -> Any:
    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            route = request.match_info.route.resource
            template = route.canonical if route is not None else ""
            if _AUTH_BY_PATH.get(template) == auth.ADMIN:
                auth.check_admin(request, request.app[keys.ADMIN_TOKEN])
            response: web.StreamResponse = await handler(request)
            return response
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = exc.reason.lower().replace(" ", "_")
            message = {404: f"no route {request.method} {request.path}",
                       405: f"{request.method} is not allowed on {request.path}",
                       413: f"the body is larger than {MAX_REPORT_BYTES} bytes"}.get(exc.status, exc.reason)
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error_response(exc.status, code, message, allow)
        except StoreUnavailable as exc:
            log.warning("store unavailable: %s", exc)
            return error_response(503, "store_unavailable", f"{exc}; retry later", {"Retry-After": "5"})
        except NotFound as exc:
            return error_response(404, "not_found", str(exc))
        except ValidationError as exc:
            return error_response(422, "invalid", describe_validation(exc))
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return error_response(500, "internal", "internal error; the control plane's log file has details")

    return errors


def create_app(settings: Settings, store: Store, providers: dict[str, Provider],
               admin_token: str | None = None) -> web.Application:
    """The control plane app. Its supervisor starts and stops with the app."""
    app = web.Application(middlewares=[_error_middleware()], client_max_size=MAX_REPORT_BYTES)
    app[keys.SETTINGS] = settings
    app[keys.STORE] = store
    app[keys.ADMIN_TOKEN] = admin_token or ensure_admin_token(settings)
    runs = RunService(settings, store, providers)
    app[keys.RUNS] = runs
    supervisor = Supervisor(runs, store, settings.supervisor_interval_s, settings.token_cleanup_interval_s,
                            Limits.from_settings(settings))
    app[keys.SUPERVISOR] = supervisor
    puller = Puller(settings, store, runs)
    runs.puller = puller
    outputs = Outputs(settings, store)
    syncer = OutputsSyncer(store, outputs, runs, settings.upload_chunk_bytes)
    runs.outputs, runs.outputs_syncer = outputs, syncer
    app[OUTPUTS], app[SYNCER] = outputs, syncer
    app[VOLUME_OUTPUTS] = VolumeOutputsService(settings, store, runs.volumes, outputs)
    app[NONCES] = {}
    streams: set[asyncio.Task[Any]] = set()
    app[keys.STREAMS] = streams
    app[keys.FEED_TAIL] = FeedTail(store)

    async def end_streams(app: web.Application) -> None:
        for task in list(streams):
            task.cancel()

    app.on_shutdown.append(end_streams)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)

    async def lifecycle(app: web.Application) -> Any:
        await supervisor.start()
        await puller.resume()
        await syncer.resume()
        yield
        await syncer.stop()
        await puller.stop()
        await supervisor.stop()
        await runs.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def ensure_demo_dataset(settings: Settings, store: Store) -> None:
    """Register the demo dataset on first start (and again if its file was removed, changed or touched)."""
    path = settings.data_dir / "demo" / "demo.csv"
    try:
        record = await store.find_dataset(DEMO_NAME)
    except NotFound:
        record = None
    if record is not None and _unchanged(path, record):
        return  # as registered: no need to write it out again (20 ms of every start)
    # Written again (the same bytes) and registered again: a copy touched since would otherwise be refused when
    # served, its modification time no longer the registered one.
    path = write_demo_dataset(path)
    try:
        scanned = scan_dataset(str(path), DEMO_NAME, settings.dataset_size_limit, [])
    except DatasetError as exc:
        log.warning("demo dataset not registered: %s", exc)
        return
    await store.save_dataset(scanned.dataset, scanned.root, scanned.manifest)


def _unchanged(path: Path, record: DatasetRecord) -> bool:
    """Whether a registered file is still the one registered (path, size and modification time)."""
    try:
        st = path.stat()
    except OSError:
        return False
    entry = record.manifest[0] if len(record.manifest) == 1 else {}
    return (Path(record.dataset.path) == path.resolve() and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns)


def default_providers(settings: Settings) -> dict[str, Provider]:
    """The providers this configuration can use: always local; RunPod when a key is set."""
    from ..providers.local import LocalProvider

    providers: dict[str, Provider] = {
        "local": LocalProvider(settings.data_dir / "pods", price_per_hour=settings.local_price_per_hour)}
    if settings.runpod_api_key:
        from ..providers.runpod import RunPodProvider  # REST v2 over httpx; the SDK loads only for spot

        providers["runpod"] = RunPodProvider(settings.runpod_api_key, settings.runpod_api_url,
                                             proxy_url=settings.runpod_proxy_url)
    return providers


def tune_gc() -> None:
    """Leave what exists once serving starts out of every collection (it lives as long as the process).

    Each pod report allocates objects that live across awaits; the collector then walks the whole heap less
    often (podtui/__init__.py sets its thresholds)."""
    gc.freeze()


class ControlPlane:
    """Runs the app on a TCP site in the current loop."""

    def __init__(self, settings: Settings, providers: dict[str, Provider] | None = None) -> None:
        self.settings = settings
        self.providers = providers
        self.store: Store | None = None
        self.runner: web.AppRunner | None = None
        self.port = settings.port
        self.admin_token = ""

    @property
    def url(self) -> str:
        """The URL of the running control plane on this machine."""
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "") else self.settings.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Open the store, register the demo, bind the port (OSError when it is busy)."""
        settings = self.settings
        self.admin_token = ensure_admin_token(settings)
        self.store = await Store.open(settings.store_path)
        try:
            await ensure_demo_dataset(settings, self.store)
            providers = self.providers or default_providers(settings)
            app = create_app(settings, self.store, providers, self.admin_token)
            # Requests still running at shutdown get 3 s (a provider call can hang far longer).
            self.runner = web.AppRunner(app, access_log_class=AccessLogger, handle_signals=False,
                                        shutdown_timeout=3.0)
            await self.runner.setup()
            site = web.TCPSite(self.runner, settings.host, settings.port)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
            settings.port = self.port  # port 0 asked for any free port: pods must get the real one
        log.info("control plane listening on %s (pods use %s)", self.url, settings.pod_url)

    async def stop(self) -> None:
        """Stop serving and close the store (pods keep running; a restart finds them again)."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.store is not None:
            await self.store.close()
            self.store = None
