"""Handlers of the admin API and the pod boot routes, and the route table the app and OpenAPI share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from .. import __version__
from ..bootstrap.script import agent_source, render_start_script
from ..downsample import downsample_minmax
from ..models import (
    Dataset,
    DatasetCreate,
    DatasetPush,
    DoctorCheck,
    GpuOffer,
    Health,
    LaunchSpec,
    LogsPage,
    MetricSeries,
    MetricsPage,
    OrphanPod,
    OutputsPage,
    PodLogLine,
    PodLogs,
    Report,
    ReportReply,
    Run,
    RunEvent,
    RunStatus,
    Volume,
    VolumeCreate,
)
from ..providers.base import ProviderError
from ..store import NotFound, Store
from . import (
    auth,
    dataset_fetched,
    doctor,
    downloads,
    events,
    ingest,
    keys,
    outputs_api,
    push,
    uplink,
    volume_outputs,
    volumes,
)
from .datasets import DatasetError, scan_dataset
from .demo import DEMO_NAME
from .responses import ApiError, json_response, query_flag, query_int, read_model
from .runs import RunService
from .sources import fetch_plan, is_remote, local_fetch_plan, scan_source

INT64_MAX = 2**63 - 1


def _store(request: web.Request) -> Store:
    return request.app[keys.STORE]


def _runs(request: web.Request) -> RunService:
    return request.app[keys.RUNS]


async def _run_or_404(request: web.Request) -> Run:
    try:
        return await _store(request).get_run(request.match_info["run_id"])
    except NotFound as exc:
        raise ApiError(404, "run_not_found", str(exc)) from None


async def healthz(request: web.Request) -> web.Response:
    """Liveness, no auth."""
    return json_response(Health(status="ok", version=__version__))


async def list_datasets(request: web.Request) -> web.Response:
    """Registered datasets, with the volumes each is cached on."""
    store = _store(request)
    found = await store.list_datasets()
    for provider, volume, name in await store.volume_datasets():
        for dataset in found:
            if dataset.name == name:
                dataset.cached_on.append(volume if provider == "runpod" else f"{volume} (local)")
    return json_response([d.model_dump(mode="json") for d in found])


async def add_dataset(request: web.Request) -> web.Response:
    """Register a file or directory (hashing it can take a while for large datasets)."""
    body = await read_model(request, DatasetCreate)
    _not_the_demo(body.name or "")  # before a scan; a name taken from the folder's is checked after it
    settings = request.app[keys.SETTINGS]
    if body.source is not None:  # fetched by the pods from its source: listed here, never downloaded here
        try:
            scanned = await asyncio.to_thread(scan_source, body.source, body.name, settings, body.s3_endpoint_url)
        except DatasetError as exc:
            raise ApiError(getattr(exc, "status", 409), "invalid_source", str(exc)) from None
        _not_the_demo(scanned.dataset.name)
        dataset = await _store(request).save_dataset(scanned.dataset, scanned.root, scanned.manifest)
        return json_response(dataset, status=201)
    try:
        scanned = await asyncio.to_thread(scan_dataset, body.path or "", body.name, settings.dataset_size_limit,
                                          settings.dataset_roots)
    except DatasetError as exc:
        # 404: nothing there; 409: what is there cannot be a dataset (links out, too large, outside the roots)
        status = 404 if "does not exist" in str(exc) else 409
        raise ApiError(status, "invalid_dataset", str(exc)) from None
    _not_the_demo(scanned.dataset.name)
    dataset = await _store(request).save_dataset(scanned.dataset, scanned.root, scanned.manifest)
    return json_response(dataset, status=201)


def _not_the_demo(name: str, removing: bool = False) -> None:
    """`demo` is the built-in dataset its trainer reads (`launch --dataset demo` always works): the API never
    replaces or removes it."""
    if name == DEMO_NAME:
        said = "cannot be removed" if removing else "keeps its name: give yours another one (--name NAME)"
        raise ApiError(409, "reserved_name", f"{DEMO_NAME} is podtui's built-in dataset (the demo's trainer reads "
                       f"it) and {said}")


async def remove_dataset(request: web.Request) -> web.Response:
    """Take a dataset's name out of the registry; its files stay, runs that used it keep showing it."""
    name = request.match_info["name"]
    _not_the_demo(name, removing=True)
    try:
        versions = await _store(request).remove_dataset(name)
    except NotFound as exc:
        raise ApiError(404, "dataset_not_found", str(exc)) from None
    return json_response({"name": name, "removed_versions": versions})


async def list_gpus(request: web.Request) -> web.Response:
    """GPU offers of one provider (?provider=) or of all configured ones."""
    runs = _runs(request)
    wanted = request.query.get("provider")
    if wanted is not None and wanted not in ("local", "runpod"):
        raise ApiError(400, "invalid_query", "provider must be local or runpod")
    refresh = query_flag(request, "refresh")
    cloud = request.query.get("cloud", "SECURE")
    if cloud not in ("SECURE", "COMMUNITY", "ALL"):
        raise ApiError(400, "invalid_query", "cloud must be SECURE, COMMUNITY or ALL")
    count = query_int(request, "count", 1, 1, 8) or 1
    names = [wanted] if wanted else list(runs.providers)
    offers: list[GpuOffer] = []
    for name in names:
        try:
            offers += await runs.provider(name).list_offers(refresh=refresh, cloud=cloud, count=count)
        except ProviderError as exc:
            raise ApiError(502, "provider_error", f"{name}: {exc}") from None
    return json_response([o.model_dump(mode="json") for o in offers])


async def list_orphans(request: web.Request) -> web.Response:
    """Pods with podtui's name prefix that no run of this store knows: they bill unseen."""
    runs = _runs(request)
    store = _store(request)
    orphans: list[OrphanPod] = []
    for name, provider in runs.providers.items():
        try:
            pods = await provider.list_pods()
        except ProviderError as exc:
            raise ApiError(502, "provider_error", f"{name}: {exc}") from None
        known = await store.known_pod_ids(name)
        orphans += [OrphanPod(provider=name, pod_id=p.pod_id, name=p.name, phase=p.phase,
                              price_per_hour=p.price_per_hour) for p in pods if p.pod_id not in known]
    return json_response([o.model_dump(mode="json") for o in orphans])


async def terminate_orphan(request: web.Request) -> web.Response:
    """Terminate a pod that no run knows (a run's pod is ended through its run)."""
    runs = _runs(request)
    provider_name, pod_id = request.match_info["provider"], request.match_info["pod_id"]
    provider = runs.provider(provider_name)
    if pod_id in await _store(request).known_pod_ids(provider_name):
        raise ApiError(409, "not_orphan", f"pod {pod_id} belongs to a run: terminate the run instead")
    try:
        await provider.terminate_pod(pod_id)
    except ProviderError as exc:
        raise ApiError(502, "terminate_failed", f"terminating pod {pod_id} failed: {exc}") from None
    return json_response({"provider": provider_name, "pod_id": pod_id, "terminated": True})


async def list_runs(request: web.Request) -> web.Response:
    """Every run, newest first."""
    return json_response([r.model_dump(mode="json") for r in await _store(request).list_runs()])


async def launch_run(request: web.Request) -> web.Response:
    """Create a run; its pod is provisioned in the background (watch /events or the run's events)."""
    spec = await read_model(request, LaunchSpec)
    run = await _runs(request).launch(spec)
    return json_response(run, status=201)


async def get_run(request: web.Request) -> web.Response:
    """One run."""
    return json_response(await _run_or_404(request))


async def terminate_run(request: web.Request) -> web.Response:
    """Terminate the run's pod now."""
    run = await _run_or_404(request)
    return json_response(await _runs(request).terminate(run.id, "terminated by the user"))


async def stop_run(request: web.Request) -> web.Response:
    """Stop the run's pod (GPU billing ends; the provider may keep its disk)."""
    run = await _run_or_404(request)
    runs = _runs(request)
    if not run.status.is_live:
        raise ApiError(409, "run_ended", f"run {run.name} has ended ({run.status.value}): there is no run to stop; "
                       "terminate ends its pod if one is still there (e.g. bringing outputs home)")
    # The run ends first: the agent's report of its command killed by the stop must not make it "failed".
    await _store(request).finish_run(run.id, RunStatus.terminated, "stopped by the user")
    if run.pod_id:
        try:
            await runs.provider(run.provider).stop_pod(run.pod_id)
        except ProviderError as exc:
            raise ApiError(502, "stop_failed", f"stopping pod {run.pod_id} failed: {exc}") from None
    return json_response(await runs.terminate(run.id, "stopped by the user", RunStatus.terminated))


async def run_metrics(request: web.Request) -> web.Response:
    """A run's metrics; with max_points each series is reduced to min/max per bucket (spikes kept)."""
    run = await _run_or_404(request)
    name = request.query.get("name") or None
    after_step = query_int(request, "after_step", None, -1, INT64_MAX)
    max_points = query_int(request, "max_points", None, 2, 1_000_000)
    rows = await _store(request).metric_rows(run.id, name, after_step)
    series: dict[str, MetricSeries] = {}
    for metric, points in rows.items():
        downsampled = False
        if max_points is not None and len(points) > max_points:
            keep = downsample_minmax([p[1] for p in points], max_points)
            points = [points[i] for i in keep]
            downsampled = True
        series[metric] = MetricSeries(steps=[p[0] for p in points], values=[p[1] for p in points],
                                      ts=[p[2] for p in points], downsampled=downsampled,
                                      attempts=[p[3] for p in points])
    return json_response(MetricsPage(run_id=run.id, series=series))


async def run_logs(request: web.Request) -> web.Response:
    """A page of log lines after a seq (?tail=1 for the last ones)."""
    run = await _run_or_404(request)
    after_seq = query_int(request, "after_seq", -1, -1, INT64_MAX)
    limit = query_int(request, "limit", 1000, 1, 10_000)
    before_seq = query_int(request, "before_seq", None, 0, INT64_MAX)
    tail = query_flag(request, "tail") or before_seq is not None
    assert after_seq is not None and limit is not None
    lines = await _store(request).log_lines(run.id, after_seq, limit, tail=tail, before_seq=before_seq)
    next_after = lines[-1].seq if lines else (after_seq if after_seq >= 0 else None)
    return json_response(LogsPage(run_id=run.id, lines=lines, next_after_seq=next_after))


async def run_pod_logs(request: web.Request) -> web.Response:
    """The tail of the run's pod's logs at the provider (image pull, a crash before the agent started)."""
    run = await _run_or_404(request)
    tail = query_int(request, "tail", 50, 1, 500) or 50
    provider = _runs(request).providers.get(run.provider)
    read = getattr(provider, "pod_logs", None)
    if not run.pod_id or read is None:
        note = "no pod yet" if not run.pod_id else f"the {run.provider} provider keeps no pod logs"
        return json_response(PodLogs(run_id=run.id, pod_id=run.pod_id, note=note))
    try:
        lines = await read(run.pod_id, tail)
    except ProviderError as exc:
        return json_response(PodLogs(run_id=run.id, pod_id=run.pod_id, note=f"cannot read the pod's logs: {exc}"))
    return json_response(PodLogs(run_id=run.id, pod_id=run.pod_id, lines=[PodLogLine(**line) for line in lines]))


async def run_events(request: web.Request) -> web.Response:
    """A run's events (launch attempts, status changes, guardrails), oldest first."""
    run = await _run_or_404(request)
    after = query_int(request, "after_id", 0, 0, INT64_MAX) or 0
    found = await _store(request).list_events(run.id, after)
    return json_response([e.model_dump(mode="json") for e in found])


# -- pod boot routes (ingest token) -------------------------------------------------------------------

async def boot_script(request: web.Request) -> web.Response:
    """The run's start script, with a fresh download token (so a slow boot never outlives its token)."""
    store = _store(request)
    run_id = request.match_info["run_id"]
    await auth.check_ingest(request, store, run_id)
    run = await store.get_run(run_id)
    if run.status.is_final:
        raise ApiError(410, "run_ended", f"run {run_id} has ended ({run.status.value})")
    if run.status in (RunStatus.downloading, RunStatus.training) and \
            await store.count_events(run.id, "boot") >= run.spec.nodes:
        # The container started again on the same pod (RunPod restarts a container whose main process exits):
        # booting again would train from scratch, bill twice, and its log lines would reuse stored numbers.
        # (A run of N nodes boots N times: a node may boot after another has started downloading.)
        _runs(request).container_restarted(run)
        raise ApiError(410, "container_restarted", f"run {run_id} already started; its container restarted")
    record = await store.find_dataset(run.dataset_id)
    settings = request.app[keys.SETTINGS]
    token = await downloads.issue_download_token(store, record.dataset.id, run.id, settings.download_token_ttl_s)
    plan = None
    if is_remote(record.dataset.kind):  # the pod fetches it from its source (fresh presigned URLs now)
        try:
            plan = await asyncio.to_thread(fetch_plan, record.dataset, record.root, record.manifest, settings)
        except DatasetError as exc:
            raise ApiError(503, "dataset_source", str(exc)) from None
    elif run.spec.volume:  # a local dataset goes into the volume's cache once; later runs there find it
        plan = local_fetch_plan(record.dataset, record.manifest, settings.pod_url, token)
    if plan is not None and run.spec.volume:
        plan["volume"] = run.spec.volume
    script = render_start_script(
        run_id=run.id, dataset=record.dataset, dataset_file=record.manifest[0]["path"], download_token=token,
        pod_url=settings.pod_url, command=run.spec.command or "", has_bundle=bool(run.spec.workdir),
        has_resume=_runs(request).retries.resume_archive(run.id).is_file(), fetch_plan=plan)
    await store.update_run(run.id, only_if_live=True, event=("boot", "the pod fetched its start script"))
    return web.Response(text=script, content_type="text/x-shellscript", headers={"Cache-Control": "no-store"})


async def boot_agent(request: web.Request) -> web.Response:
    """The pod agent (one Python file, standard library only)."""
    await auth.check_ingest(request, _store(request), request.match_info["run_id"])
    return web.Response(body=agent_source(), content_type="application/zip")


async def boot_bundle(request: web.Request) -> web.StreamResponse:
    """The run's code bundle (a tar.gz of its workdir)."""
    run_id = request.match_info["run_id"]
    await auth.check_ingest(request, _store(request), run_id)
    path = _runs(request).bundle_path(run_id)
    if not path.is_file():
        raise ApiError(404, "no_bundle", "this run has no code bundle")
    return web.FileResponse(path, headers={"Content-Type": "application/gzip"})


async def boot_resume(request: web.Request) -> web.StreamResponse:
    """The outputs earlier attempts brought home (a tar), for a new pod to resume from (Range: resumable)."""
    run_id = request.match_info["run_id"]
    await auth.check_ingest(request, _store(request), run_id)
    path = _runs(request).retries.resume_archive(run_id)
    if not path.is_file():
        raise ApiError(404, "no_resume", "this run has no outputs to resume from")
    return web.FileResponse(path, headers={"Content-Type": "application/x-tar"})


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of every route."""
    from .openapi import build_openapi

    return json_response(build_openapi(ROUTES))


# -- the route table ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """A query parameter, for the OpenAPI description."""

    name: str
    kind: str = "string"
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Route:
    """One route: handler, who may call it, and its shapes (for OpenAPI)."""

    method: str
    path: str
    handler: Any
    auth: str
    summary: str
    body: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    params: tuple[Param, ...] = field(default_factory=tuple)
    content_type: str = "application/json"


RUN = "/api/v1/runs/{run_id}"
FLAG = ("0", "1", "true", "false", "yes", "no")
ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz, auth.PUBLIC, "Liveness", response=Health),
    Route("GET", "/api/v1/openapi.json", openapi_json, auth.PUBLIC, "This OpenAPI description", response=dict),
    Route("GET", "/api/v1/datasets", list_datasets, auth.ADMIN, "List datasets", response=list[Dataset]),
    Route("POST", "/api/v1/datasets", add_dataset, auth.ADMIN, "Register a dataset", body=DatasetCreate,
          response=Dataset, status=201),
    Route("DELETE", "/api/v1/datasets/{name}", remove_dataset, auth.ADMIN,
          "Remove a dataset's name from the registry (its files are not touched)", response=dict),
    Route("POST", "/api/v1/datasets/{name}/push", push.push_dataset, auth.ADMIN, "Copy a local dataset onto a "
          "RunPod network volume through RunPod's S3 API; streams JSON lines (progress, then result or error)",
          body=DatasetPush, content_type="application/x-ndjson"),
    Route("GET", "/api/v1/volumes", volumes.list_volumes, auth.ADMIN, "Volumes (RunPod network volumes, local "
          "folders), with the runs using them and the datasets cached on them", response=list[Volume],
          params=(Param("provider", enum=("local", "runpod")),)),
    Route("POST", "/api/v1/volumes", volumes.create_volume, auth.ADMIN, "Create a volume", body=VolumeCreate,
          response=Volume, status=201),
    Route("DELETE", "/api/v1/volumes/{name}", volumes.remove_volume, auth.ADMIN,
          "Delete a volume and its contents (refused while a pod uses it)", response=Volume,
          params=(Param("provider", enum=("local", "runpod")),)),
    Route("GET", "/api/v1/gpus", list_gpus, auth.ADMIN, "GPU offers", response=list[GpuOffer],
          params=(Param("provider", description="local or runpod", enum=("local", "runpod")),
                  Param("refresh", enum=FLAG),
                  Param("cloud", description="stock for this cloud type (default SECURE)",
                        enum=("SECURE", "COMMUNITY", "ALL")),
                  Param("count", "integer", minimum=1, maximum=8,
                        description="stock for this many GPUs on one pod (default 1)"))),
    Route("GET", "/api/v1/pods/orphans", list_orphans, auth.ADMIN, "Pods no run knows", response=list[OrphanPod]),
    Route("POST", "/api/v1/pods/{provider}/{pod_id}/terminate", terminate_orphan, auth.ADMIN,
          "Terminate an orphan pod", response=dict),
    Route("GET", "/api/v1/runs", list_runs, auth.ADMIN, "List runs", response=list[Run]),
    Route("POST", "/api/v1/runs", launch_run, auth.ADMIN, "Launch a run", body=LaunchSpec, response=Run,
          status=201),
    Route("POST", "/api/v1/data-estimate", uplink.estimate, auth.ADMIN, "What getting a launch's dataset to its "
          "pod takes: through this machine's uplink, how long, what the pod costs meanwhile", body=LaunchSpec,
          response=uplink.DataEstimate),
    Route("GET", RUN, get_run, auth.ADMIN, "One run", response=Run),
    Route("POST", RUN + "/terminate", terminate_run, auth.ADMIN, "Terminate a run's pod", response=Run),
    Route("POST", RUN + "/stop", stop_run, auth.ADMIN, "Stop a run's pod", response=Run),
    Route("GET", RUN + "/metrics", run_metrics, auth.ADMIN, "A run's metrics", response=MetricsPage, params=(
        Param("name"), Param("after_step", "integer", minimum=-1, maximum=INT64_MAX),
        Param("max_points", "integer", minimum=2, maximum=1_000_000))),
    Route("GET", RUN + "/logs", run_logs, auth.ADMIN, "A run's log lines", response=LogsPage, params=(
        Param("after_seq", "integer", minimum=-1, maximum=INT64_MAX),
        Param("limit", "integer", minimum=1, maximum=10_000), Param("tail", enum=FLAG),
        Param("before_seq", "integer", minimum=0, maximum=INT64_MAX))),
    Route("GET", RUN + "/pod-logs", run_pod_logs, auth.ADMIN, "The tail of the pod's own logs at its provider",
          response=PodLogs, params=(Param("tail", "integer", minimum=1, maximum=500),)),
    Route("GET", RUN + "/events", run_events, auth.ADMIN, "A run's events", response=list[RunEvent],
          params=(Param("after_id", "integer", minimum=0, maximum=INT64_MAX),)),
    Route("GET", "/api/v1/events", events.events, auth.ADMIN, "Live events (SSE, resumable)",
          content_type="text/event-stream", params=(
              Param("after", "integer", minimum=0, maximum=INT64_MAX), Param("run"),
              Param("full", description="run ids to follow in full, comma-separated; other runs as summaries"))),
    Route("GET", "/api/datasets/download", downloads.download_dataset, auth.PUBLIC,
          "Download a run's dataset (download token)", content_type="application/octet-stream",
          params=(Param("token"), Param("path"))),
    Route("GET", "/api/v1/boot/{run_id}/script", boot_script, auth.POD, "The pod's start script",
          content_type="text/x-shellscript"),
    Route("GET", "/api/v1/boot/{run_id}/agent", boot_agent, auth.POD, "The pod agent",
          content_type="text/x-python"),
    Route("GET", "/api/v1/boot/{run_id}/bundle", boot_bundle, auth.POD, "The run's code bundle",
          content_type="application/gzip"),
    Route("GET", "/api/v1/boot/{run_id}/resume", boot_resume, auth.POD,
          "The outputs earlier attempts brought home, for a new pod to resume from", content_type="application/x-tar"),
    Route("POST", RUN + "/report", ingest.report, auth.POD, "A pod's report", body=Report,
          response=ReportReply),
    Route("POST", RUN + "/dataset-fetched", dataset_fetched.dataset_fetched, auth.POD,
          "The pod fetched its dataset from its source: sha256s of a first fetch, bytes moved, cache hit",
          body=dataset_fetched.DatasetFetched, response=dict),
    Route("GET", "/api/v1/doctor", doctor.doctor_checks, auth.ADMIN, "Server-side doctor checks",
          response=list[DoctorCheck]),
    Route("POST", "/api/v1/doctor/nonce", doctor.mint_nonce, auth.ADMIN, "Mint a one-time nonce",
          response=doctor.Nonce, status=201),
    Route("GET", "/api/v1/doctor/echo/{nonce}", doctor.echo_nonce, auth.PUBLIC,
          "Echo a nonce this control plane minted (once)", response=doctor.Nonce),
    # outputs (issue 13): the admin side, then the pod's side in push mode
    Route("GET", RUN + "/outputs", outputs_api.list_outputs, auth.ADMIN, "A run's outputs and what still moves",
          response=OutputsPage, params=(Param("fresh", enum=FLAG, description="list a volume's outputs now "
                                              "(else a listing up to 10 s old may answer)"),)),
    Route("GET", RUN + "/outputs/file", outputs_api.output_file, auth.ADMIN,
          "One output file that is home (Range, If-Range; X-Podtui-Sha256)", content_type="application/octet-stream",
          params=(Param("path", description="the file's path in the run's outputs"),)),
    Route("POST", RUN + "/outputs/sync", outputs_api.sync_now, auth.ADMIN, "Bring a live run's outputs home now",
          response=dict, status=202),
    Route("POST", RUN + "/outputs/fetch", volume_outputs.fetch_outputs, auth.ADMIN, "Fetch the outputs a run "
          "wrote to its volume (--outputs-on-volume) home; streams JSON lines (progress, then result or error)",
          content_type="application/x-ndjson"),
    Route("POST", RUN + "/outputs/offer", outputs_api.offer, auth.POD, "The pod's listing of its outputs: what "
          "to send", response=dict),
    Route("PUT", RUN + "/outputs/upload", outputs_api.upload, auth.POD, "A piece of an output file at an offset",
          response=dict, params=(Param("path"), Param("size", "integer", minimum=0),
                                 Param("mtime", "number"), Param("offset", "integer", minimum=0))),
    Route("POST", RUN + "/outputs/done", outputs_api.done, auth.POD, "An output file is whole: check its sha256",
          response=dict, params=(Param("path"), Param("size", "integer", minimum=0), Param("mtime", "number"),
                                 Param("sha256"))),
    Route("POST", RUN + "/outputs/synced", outputs_api.synced, auth.POD, "A sync pass of the pod ended",
          response=dict),
)
