"""A run's life on the control plane's side: launch (tokens, bundle, pod with GPU fallback), end, terminate.

Every pod launch and termination goes through here; the TUI and the CLI only ask for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..bootstrap.bundle import BundleError, build_bundle
from ..bootstrap.script import BOOT_COMMAND, agent_env_value, boot_env_value
from ..config import Settings, public_url_problem
from ..models import LaunchSpec, ReportReply, Run, RunStatus, Volume, cuda_of_image
from ..providers.base import POD_NAME_PREFIX, LaunchAttempt, PodRequest, Provider, ProviderError
from ..report_rows import ReportBatch
from ..store import NotFound, ReportResult, Store
from ..tokens import hash_token, new_token
from .dataset_launch import dataset_for_launch, room_problem
from .demo import DEMO_COMMAND, DEMO_NAME, DEMO_WORKDIR
from .guardrails import Limits
from .responses import ApiError
from .retries import Retries, default_retries, sync_every
from .volumes import VolumeService

log = logging.getLogger(__name__)


BUSY_BACKLOG = 64
"""Writes queued in the store past which agents are asked to report less often."""


NODES_END_GRACE_S = 30.0
"""After node 0's command ended (no keep-alive), how long the other nodes of its run may still report."""


def last_words(error: str | None) -> str | None:
    """A failed command's own last line in its error tail (up to 300 characters): not the tail's first line, the
    start script's (it names only `bash -c "$TRAIN_COMMAND"`), nor podtui's own lines."""
    last = [line for line in (error or "").splitlines()[1:] if line.strip() and " [podtui] " not in line]
    return last[-1][:300] if last else None


def slow_down(backlog: int) -> float | None:
    """How often agents should report while the store has `backlog` writes queued: as usual (None) below
    BUSY_BACKLOG, then a gap growing with the backlog (0.25 s at 64, 2 s from 512 on): their batches grow and the
    store catches up on fewer, larger writes."""
    if backlog < BUSY_BACKLOG:
        return None
    return min(2.0, 0.25 * backlog / BUSY_BACKLOG)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (a local pull-mode pod listens there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunService:
    """Launches, ends and terminates runs."""

    def __init__(self, settings: Settings, store: Store, providers: dict[str, Provider]) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self._tasks: set[asyncio.Task[None]] = set()
        self.volumes = VolumeService(settings, store, providers)
        self._volumes: dict[str, Volume] = {}
        self._deadlines: dict[str, float | None] = {}
        self._deadlines_forgotten = 0
        """Counts forget_deadline calls: a deadline computed across one is not cached (it may be stale)."""
        self._ending: dict[str, asyncio.Future[None]] = {}
        self._node_said: dict[tuple[str, int], str] = {}
        """The status each node k > 0 of a run last reported (written to the run's nodes when it changes)."""
        self.puller: Any = None
        """The Puller (server/puller.py), set by the app: follows pull-mode runs."""
        self.outputs: Any = None
        """Outputs (server/outputs.py), set by the app: receives output files."""
        self.outputs_syncer: Any = None
        """OutputsSyncer (server/outputs_sync.py), set by the app: when outputs move."""
        self.retries = Retries(self, Limits.from_settings(settings))
        """Replaces lost pods (--retries)."""

    def provider(self, name: str) -> Provider:
        """The named provider; 422 when it is not configured."""
        try:
            return self.providers[name]
        except KeyError:
            # 409: a valid request this control plane's configuration cannot serve
            if name == "runpod":
                pid_file = self.settings.data_dir / "serve.pid"
                try:  # this control plane is the one a TUI left in the background
                    background = int(pid_file.read_text()) == os.getpid()
                except (OSError, ValueError):
                    background = False
                how = f" (this one, kept in the background, stops with `kill $(cat {pid_file})`)" if background else ""
                raise ApiError(409, "provider_unavailable", "this control plane was started without a RunPod key: "
                               "set RUNPOD_API_KEY (or runpod_api_key in config.toml) where it runs and restart "
                               f"it{how}") from None
            raise ApiError(404, "provider_unavailable", f"unknown provider {name!r}; use local or runpod") from None

    def bundle_path(self, run_id: str) -> Path:
        """Where a run's code bundle is kept while the run lives."""
        return self.settings.data_dir / "bundles" / f"{run_id}.tar.gz"

    async def launch(self, spec: LaunchSpec) -> Run:
        """Validate, store the run, and start provisioning its pod in the background."""
        provider_name = spec.provider or self.settings.default_provider
        provider = self.provider(provider_name)
        connect = spec.connect or self.settings.default_connect(provider_name)
        if connect == "pull" and getattr(provider, "pod_endpoint", None) is None:
            raise ApiError(409, "connect", f"the {provider_name} provider cannot be reached in pull mode")
        retries = spec.retries if spec.retries is not None else 0 if spec.nodes > 1 else default_retries(provider_name)
        spec = spec.model_copy(update={"connect": connect, "retries": retries})
        self.check_nodes(spec, provider_name)
        problem = connect == "push" and public_url_problem(self.settings.public_url, provider_name,
                                                           self.settings.allow_loopback_public_url)
        if problem:
            raise ApiError(409, "public_url", f"{problem} Or launch with --connect pull: the control plane then "
                           "reaches the pod through RunPod's proxy, and no public URL is needed.")
        try:
            record = await self.store.find_dataset(spec.dataset)
        except NotFound as exc:
            raise ApiError(404, "dataset_not_found", str(exc)) from None
        await self.check_spec(provider, spec)
        record, dataset_note = await dataset_for_launch(self.store, self.settings, record, spec)
        volume = await self.volumes.for_launch(spec, provider_name)
        if (room := room_problem(record, spec, provider_name)) is not None:
            raise ApiError(422, "dataset_too_large_for_disk", room)
        if spec.command is None:
            if record.dataset.name != DEMO_NAME:
                raise ApiError(422, "command_required", "give the training command (--command); only the demo "
                               "dataset has a built-in trainer")
            spec = spec.model_copy(update={"command": DEMO_COMMAND, "workdir": spec.workdir or str(DEMO_WORKDIR)})
        run_id = secrets.token_hex(5)
        if spec.workdir:
            try:
                await asyncio.to_thread(build_bundle, spec.workdir, self.bundle_path(run_id),
                                        self.settings.bundle_size_limit)
            except BundleError as exc:
                raise ApiError(422, "bundle", str(exc)) from None
        ingest_token = new_token()
        run = Run(id=run_id, name=spec.name or f"{record.dataset.name}-{run_id[:4]}", provider=provider_name,
                  status=RunStatus.pending, spec=spec, dataset_id=record.dataset.id, created_at=time.time(),
                  pod_port=(free_port() if provider_name == "local" else self.settings.pod_port)
                  if connect == "pull" else None)
        await self.store.create_run(run, hash_token(ingest_token))
        if connect == "push" and provider_name != "local" and urlsplit(self.settings.pod_url).scheme == "http":
            await self.store.add_event(run.id, "warning", f"the public URL {self.settings.pod_url} is plain http: "
                                       "tokens travel in clear; use an https URL (e.g. a tunnel)")
        if dataset_note:
            await self.store.add_event(run.id, "dataset", dataset_note)
        if volume is not None:
            self._volumes[run.id] = volume
            where = f" in {volume.data_center}, Secure Cloud (the pod runs there)" if volume.data_center else ""
            mount = self.volumes.mount_path(volume)
            outputs = f"; outputs written to {mount}/podtui/outputs/{run.id}/ (they stay there)" \
                if spec.outputs_on_volume else ""
            await self.store.add_event(run.id, "volume", f"volume {volume.name} mounted at {mount}{where}: datasets "
                                       f"cached there{outputs}")
        log.info("run %s launched on %s with dataset %s", run_id, provider_name, record.dataset.name)
        self._spawn(self._provision(run, provider, ingest_token))
        return run

    async def check_spec(self, provider: Provider, spec: LaunchSpec) -> None:
        """Refuse, before anything is created, what the provider cannot take (422 naming the field)."""
        check = getattr(provider, "check_spec", None)
        if check is None:
            return
        problems: list[str] = await check(spec)
        if problems:
            raise ApiError(422, "invalid_for_provider", "; ".join(problems))

    @staticmethod
    def check_nodes(spec: LaunchSpec, provider_name: str) -> None:
        """Refuse what a run of more than one pod cannot be (before anything is created)."""
        if spec.nodes <= 1:  # (outputs_from `all` of one pod is node 0's)
            return
        if spec.connect == "pull" and spec.outputs_from == "all":
            raise ApiError(409, "connect", "outputs_from: in pull mode outputs come home from node 0 only; launch "
                           "with --outputs-from 0, or in push mode (--connect push, a public https URL)")
        if spec.spot:
            raise ApiError(409, "invalid_for_provider", "spot: a multi-node run is a RunPod cluster, and clusters "
                           "have no spot pricing; launch without --spot")
        if provider_name == "runpod" and spec.cloud_type == "COMMUNITY":
            raise ApiError(409, "invalid_for_provider", "cloud_type: RunPod clusters run in Secure Cloud only; "
                           "launch with --cloud SECURE")

    def _spawn(self, coro: asyncio.Future[None] | object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pod_env(self, run: Run, provider: Provider, ingest_token: str) -> dict[str, str]:
        """The pod's env: user values, then podtui's (which win)."""
        env = dict(run.spec.env)
        env.update(
            PODTUI_RUN_ID=run.id,
            PODTUI_BOOT=boot_env_value(),
            PODTUI_KEEP_ALIVE_S=str(int(run.spec.keep_alive_s)),
            PODTUI_ATTEMPT=str(run.attempt),
        )
        if run.connect == "pull":  # no URL: the agent travels in the env and the control plane comes to it
            env.update(PODTUI_CONNECT="pull", PODTUI_POD_PORT=str(run.pod_port),
                       PODTUI_POD_TOKEN=self.puller.token(run.id), PODTUI_AGENT_Z=agent_env_value(),
                       PODTUI_INPUTS_LIMIT=str(self.settings.dataset_size_limit + self.settings.bundle_size_limit
                                               + 16 * 1024 * 1024))
            if provider.name == "local":  # a local pod's port is for this machine only
                env["PODTUI_POD_BIND"] = "127.0.0.1"
        else:
            env.update(PODTUI_URL=self.settings.pod_url, PODTUI_TOKEN=ingest_token)
        if provider.self_terminate_command:
            env["PODTUI_TERMINATE_CMD"] = provider.self_terminate_command
        if provider.name == "runpod":  # the pod ends itself through REST v2 with its own pod-scoped key
            env["PODTUI_RUNPOD_API_URL"] = self.settings.runpod_pod_api_url
        # The pod enforces its own limits too: the control plane may be a laptop that sleeps.
        env["PODTUI_UNREACHABLE_LIMIT_S"] = str(int(self.settings.pod_unreachable_limit_s))
        env["PODTUI_UNDELIVERED_KEEP_S"] = str(int(self.settings.pod_undelivered_keep_s))
        env["PODTUI_END_PROOF_S"] = str(self.settings.pod_end_proof_s)
        env["PODTUI_STALL_TIMEOUT_S"] = str(int(self.settings.stall_timeout_s))
        env["PODTUI_LIMIT_GRACE_S"] = str(self.settings.pod_limit_grace_s)
        env["PODTUI_BOOT_TIMEOUT_S"] = str(int(self.settings.boot_timeout_s))
        env["PODTUI_METRICS"] = run.spec.metrics or self.settings.metrics
        env["PODTUI_METRICS_RANKS"] = run.spec.metrics_ranks or self.settings.metrics_ranks
        if run.spec.max_runtime_s:  # what earlier attempts left of it
            env["PODTUI_MAX_RUNTIME_S"] = str(max(1, int(run.spec.max_runtime_s - run.runtime_at(time.time()))))
        env.update(self.outputs_env(run))
        env.update(self.nodes_env(run, provider))
        return env

    @staticmethod
    def nodes_env(run: Run, provider: Provider) -> dict[str, str]:
        """What the agent builds the torchrun env from (MASTER_ADDR, NODE_RANK, ...: see agent.cluster_env).
        The per-node values come from the provider (RunPod sets them on a cluster's nodes), never from here."""
        env = {"PODTUI_NODES": str(run.spec.nodes), "PODTUI_GPU_COUNT": str(run.spec.gpu_count)}
        if run.spec.nodes > 1:
            env["PODTUI_OUTPUTS_FROM"] = run.spec.outputs_from
            if provider.name == "runpod":  # NCCL over the cluster's interface (the agent: unless the user set one)
                env["PODTUI_CLUSTER"] = "runpod"
        return env

    def outputs_env(self, run: Run) -> dict[str, str]:
        """The pod's outputs: its folder (relative to the workdir; the agent sets PODTUI_OUTPUT_DIR for the
        command) and how often to bring them home while the command runs."""
        env = {"PODTUI_OUTPUTS": run.spec.outputs}
        every = sync_every(run)
        if every:
            env["PODTUI_SYNC_OUTPUTS_S"] = str(int(every))
        return env

    def deadline_of(self, run: Run) -> float | None:
        """When the run's max runtime or budget runs out (its pod ends itself then), or None."""
        if run.started_at is None:
            return None
        ends = []
        earlier_s = run.runtime_at(run.started_at)  # earlier attempts' pods count too
        earlier_usd = run.cost_at(run.started_at)
        if run.spec.max_runtime_s:
            ends.append(run.started_at + run.spec.max_runtime_s - earlier_s)
        budget = run.spec.budget_usd if run.spec.budget_usd is not None else self.settings.default_budget_usd
        if budget is not None and run.price_per_hour:
            ends.append(run.started_at + (budget - earlier_usd) / run.price_per_hour * 3600.0)
        return min(ends) if ends else None

    async def pod_deadline(self, run_id: str) -> float | None:
        """The deadline sent to a run's pod in every reply (cached; forget_deadline when price or start change)."""
        if run_id in self._deadlines:
            return self._deadlines[run_id]
        forgotten = self._deadlines_forgotten
        deadline = self.deadline_of(await self.store.get_run(run_id))
        if forgotten == self._deadlines_forgotten:
            self._deadlines[run_id] = deadline
        return deadline

    def forget_deadline(self, run_id: str) -> None:
        """The run's price or start has changed (call it after the store has them): compute its deadline again on
        the next report."""
        self._deadlines.pop(run_id, None)
        self._deadlines_forgotten += 1

    async def _provision(self, run: Run, provider: Provider, ingest_token: str) -> None:
        await self.start_pod(run, provider, ingest_token)

    async def start_pod(self, run: Run, provider: Provider, ingest_token: str,
                        gpu_first: str | None = None) -> str | None:
        """Create the run's pod (the first, or a lost one's replacement: `gpu_first` is tried first); its id,
        or None when there is none (the run has then ended)."""
        spec = run.spec
        gpu_types = list(spec.gpu_types)
        if gpu_first in gpu_types:
            gpu_types.remove(gpu_first)
            gpu_types.insert(0, gpu_first)
        request = PodRequest(
            run_id=run.id, name=f"{POD_NAME_PREFIX}{run.id}", gpu_types=gpu_types,
            gpu_count=spec.gpu_count, cloud_type=spec.cloud_type, spot=spec.spot, image=spec.image,
            start_command=BOOT_COMMAND, env=self.pod_env(run, provider, ingest_token),
            container_disk_gb=spec.container_disk_gb, ssh=spec.ssh,
            ports=[f"{run.pod_port}/http"] if run.connect == "pull" and provider.name != "local" else [],
            min_cuda_version=spec.min_cuda_version or cuda_of_image(spec.image), nodes=spec.nodes,
        )
        volume = self._volumes.pop(run.id, None)
        if volume is None and spec.volume:  # a replacement pod (--retries, a restart) mounts the run's volume too
            try:
                volume = await self.volumes.find(spec.volume, provider.name)
            except ApiError as exc:
                await self.store.finish_run(run.id, RunStatus.failed, f"no pod: {exc.message}")
                return None
        if volume is not None:
            self.volumes.attach(request, volume)
            request.env.update(self.volumes.env(volume, run))

        async def on_attempt(attempt: LaunchAttempt) -> None:
            kind = "attempt" if attempt.ok else "attempt_failed"
            await self.store.add_event(run.id, kind, f"{attempt.gpu_type}: {attempt.message}")

        try:
            moved = await self.store.update_run(run.id, status=RunStatus.provisioning, only_if_live=True,
                                                event=("provisioning", f"asking {provider.name} for a pod"))
            if moved is None:
                return None
            pod = await provider.create_pod(request, on_attempt)
        except ProviderError as exc:
            await self.store.finish_run(run.id, RunStatus.failed, f"no pod: {exc}")
            return None
        except Exception as exc:
            log.exception("launching run %s failed", run.id)
            await self.store.finish_run(run.id, RunStatus.failed, f"no pod: internal error ({exc})")
            return None
        await self.store.record_pod(provider.name, pod.pod_id, run.id, pod.gpu_type, pod.price_per_hour, "running")
        what = f"pod {pod.pod_id}" if spec.nodes <= 1 else f"{spec.nodes} nodes ({pod.pod_id})"
        if spec.nodes > 1:
            await self.store.update_nodes(run.id, {rank: {"status": "starting"} for rank in range(spec.nodes)})
        updated = await self.store.update_run(
            run.id, only_if_live=True, status=RunStatus.booting, pod_id=pod.pod_id, gpu_type=pod.gpu_type,
            price_per_hour=pod.price_per_hour, started_at=time.time(),
            event=("booting", f"{what} on {pod.gpu_type} at ${pod.price_per_hour:.3f}/h"))
        self.forget_deadline(run.id)  # after the store has the start and price
        if updated is not None and run.connect == "pull":
            self.puller.follow(run.id, spec.nodes)
            if self.outputs_syncer is not None:
                self.outputs_syncer.follow(run.id)
        if updated is None:
            # The run was terminated while its pod was being created: the pod must not bill.
            await self.store.update_run(run.id, pod_id=pod.pod_id, gpu_type=pod.gpu_type,
                                        price_per_hour=pod.price_per_hour)
            await self.end_pod(run.id, provider, pod.pod_id, "the run ended while its pod was being created")
            return None
        return pod.pod_id

    async def end_pod(self, run_id: str, provider: Provider, pod_id: str, why: str) -> None:
        """Terminate a pod and remember it is gone; an event either way. A pod already being ended elsewhere
        is waited for, not ended twice."""
        running = self._ending.get(pod_id)
        if running is not None:
            await asyncio.shield(running)
            return
        task = asyncio.ensure_future(provider.terminate_pod(pod_id))
        self._ending[pod_id] = task
        task.add_done_callback(lambda _: self._ending.pop(pod_id, None))
        try:
            await asyncio.shield(task)
        except ProviderError as exc:
            await self.store.add_event(run_id, "terminate_failed", f"terminating pod {pod_id} failed: {exc}")
            raise
        await self.pod_gone(run_id, provider.name, pod_id)
        await self.store.add_event(run_id, "pod_terminated", f"pod {pod_id} terminated: {why}")

    async def pod_gone(self, run_id: str, provider_name: str, pod_id: str) -> None:
        """The provider confirmed the pod gone: remembered, and a pod that could not end itself bills no more."""
        await self.store.set_pod_status(provider_name, pod_id, "gone")
        run = await self.store.get_run(run_id)
        if run.pod_end_failed and run.pod_id == pod_id:
            await self.store.update_run(run_id, pod_end_failed=None, event=(
                "pod_ended", f"pod {pod_id}, which could not end itself, is gone: it bills no more"))

    async def pod_could_not_end(self, run_id: str, detail: str) -> None:
        """The pod asked its provider to end it and still runs (it bills until podtui ends it): say so, in red
        until the pod is gone, and end it now with the user's key (a live run fails with it)."""
        run = await self.store.get_run(run_id)
        first = run.pod_end_failed is None
        await self.store.update_run(run_id, pod_end_failed=detail,
                                    event=("pod_end_failed", detail) if first else None)
        if first:
            log.warning("run %s: %s", run_id, detail)
        if not run.pod_id or run.provider not in self.providers or run.pod_id in self._ending:
            return
        if run.status.is_live:
            self.terminate_soon(run_id, detail, RunStatus.failed)
            return
        provider, pod_id = self.providers[run.provider], run.pod_id

        async def end() -> None:
            try:
                await self.end_pod(run_id, provider, pod_id, "it could not end itself")
                await self.store.revoke_ingest_token(run_id)
            except ProviderError as exc:  # the supervisor tries again, and the pod tells us again
                log.warning("run %s: ending pod %s that could not end itself: %s", run_id, pod_id, exc)

        self._spawn(end())

    async def terminate(self, run_id: str, reason: str, status: RunStatus = RunStatus.terminated) -> Run:
        """End a run and its pod. 502 when the provider did not confirm; the supervisor retries."""
        try:
            run = await self.store.get_run(run_id)
        except NotFound as exc:
            raise ApiError(404, "run_not_found", str(exc)) from None
        finished = await self.store.finish_run(run_id, status, reason)
        run = finished or run
        if run.pod_id:
            try:
                await self.end_pod(run_id, self.provider(run.provider), run.pod_id, reason)
            except ProviderError as exc:
                raise ApiError(502, "terminate_failed", f"the run is marked {run.status.value}, but its pod "
                               f"{run.pod_id} may still run: {exc}. podtui retries; check your provider's "
                               "console") from None
        await self.store.revoke_ingest_token(run_id)
        self.drop_bundle(run_id)
        return await self.store.get_run(run_id)

    def terminate_soon(self, run_id: str, reason: str, status: RunStatus = RunStatus.terminated) -> None:
        """terminate() in the background (a guardrail's; the supervisor's pass goes on meanwhile)."""

        async def end() -> None:
            try:
                await self.terminate(run_id, reason, status=status)
            except ApiError as exc:  # the provider did not confirm: the supervisor tries again
                log.warning("terminating run %s: %s", run_id, exc.message)

        self._spawn(end())

    def container_restarted(self, run: Run) -> None:
        """A second boot of a run that had started: a new pod resumes it (--retries), else fail it; its pod is
        ended either way (in the background)."""
        reason = (f"container restarted: the pod's container started again while the run was {run.status.value} "
                  "(its process exited or the host restarted it)")
        log.warning("run %s: %s", run.id, reason)
        if self.retries.pod_lost(run, reason):
            return
        refusal = self.retries.refusal(run)
        self.terminate_soon(run.id, f"{reason}; podtui does not train again from scratch on it"
                            + (f"; no new pod: {refusal}" if run.spec.retries else ""), RunStatus.failed)

    async def take_report(self, run_id: str, batch: ReportBatch) -> ReportReply:
        """A pod's report, pushed or pulled: stored; when it says the command ended, the run ends; and the reply the
        pod acts on (stop, the run's status, how long it may still run). NotFound for an unknown run."""
        if batch.node:
            return await self.take_node_report(run_id, batch)
        result = await self.store.apply_report(run_id, batch, time.time())
        status = result.status
        if batch.pod_end_failed:
            await self.pod_could_not_end(run_id, batch.pod_end_failed)
        if batch.status in ("succeeded", "failed") and status.is_live:
            run = await self.pod_reported_end(await self.store.get_run(run_id), RunStatus(batch.status),
                                              batch.exit_code, batch.error, batch.stopped)
            status = run.status
        asked = self.outputs is not None and run_id in self.outputs.asked
        return await self._reply(run_id, status, result, batch.status, result.accepted_metrics, sync_outputs=asked)

    async def take_node_report(self, run_id: str, batch: ReportBatch) -> ReportReply:
        """A report of node k > 0 of a run of more than one pod: its log lines (their numbers are its own) and
        heartbeat; no metrics, progress or live rows (node 0's are the run's). Its success is noted; its failure
        ends the run and every node (training across nodes cannot go on without it)."""
        node, said = batch.node, batch.status
        batch.metric_rows, batch.loss, batch.progress_json, batch.live_json = [], None, None, None
        batch.metrics_source = None
        batch.status = said if said in ("downloading", "training") else None
        result = await self.store.apply_report(run_id, batch, time.time())
        status = result.status
        if said and self._node_said.get((run_id, node)) != said:
            await self.store.update_nodes(run_id, {node: {"status": said}})
            self._node_said[(run_id, node)] = said
        if said == "failed" and status.is_live:
            if batch.stopped:
                reason, end = f"{batch.stopped} (enforced by node {node})", RunStatus.terminated
            else:
                last = last_words(batch.error)
                reason = (f"node {node} failed (exit code {batch.exit_code})" + (f": {last}" if last else "")
                          + "; the other nodes cannot go on without it")
                end = RunStatus.failed
                if batch.error:
                    await self.store.add_event(run_id, "failure_tail", f"node {node}: {batch.error[-8000:]}")
            self.terminate_soon(run_id, reason, end)
            status = end
        return await self._reply(run_id, status, result, said, 0)

    async def _reply(self, run_id: str, status: RunStatus, result: ReportResult, said: str | None,
                     accepted_metrics: int, sync_outputs: bool = False) -> ReportReply:
        """The reply a reporting pod acts on: whether to stop, the run's status, how long it may still run."""
        # After its command ended the pod may live to bring its outputs home (succeeded or failed) until then.
        in_keep_alive = status in (RunStatus.succeeded, RunStatus.failed) and result.keep_alive_until is not None
        stop = status.is_final and not in_keep_alive and said not in ("succeeded", "failed")
        deadline = await self.pod_deadline(run_id) if status.is_live else None
        return ReportReply(accepted_metrics=accepted_metrics, accepted_logs=result.accepted_logs, run_status=status,
                           stop=stop, sync_outputs=sync_outputs,
                           deadline_in_s=None if deadline is None else round(deadline - time.time(), 1),
                           min_interval_s=slow_down(self.store.backlog))

    async def pod_reported_end(self, run: Run, status: RunStatus, exit_code: int | None,
                               error: str | None, stopped: str | None = None) -> Run:
        """The agent says the command ended: finish the run (keeping the ingest token through keep-alive)."""
        keep = run.spec.keep_alive_s
        # After success or failure the pod may stay to bring its outputs home (a failed run's last checkpoint
        # matters too); not after a limit the pod enforced.
        ended_by_limit = bool(stopped) and status != RunStatus.succeeded
        refusal: str | None = None
        until = time.time() + keep if keep > 0 and not ended_by_limit else None
        if until is None and run.spec.nodes > 1 and not ended_by_limit:
            # The other nodes end about now too: their last lines and reports still come in (the token lives
            # until the group is gone, at most this long).
            until = time.time() + NODES_END_GRACE_S
        if status == RunStatus.succeeded:
            reason = "the training command succeeded"
        elif ended_by_limit:
            # The pod ended the command at its own limit (max runtime, budget, stall): a guardrail, as if the
            # control plane had ended it.
            status = RunStatus.terminated
            reason = f"{stopped} (enforced by the pod)"
        else:
            reason = f"the training command failed (exit code {exit_code})"
            if run.spec.retry_failed:
                if self.retries.pod_lost(run, reason):
                    if error:
                        await self.store.add_event(run.id, "failure_tail", error[-8000:])
                    return run
                refusal = self.retries.refusal(run)
            # The command's own last words, not the start script's line about where it failed (it names only
            # `bash -c "$TRAIN_COMMAND"`); the whole tail is the run's failure_tail event.
            last = last_words(error)
            if last:
                reason += f": {last}"
            if run.spec.retry_failed and refusal:
                reason += f"; no new pod: {refusal}"
        finished = await self.store.finish_run(run.id, status, reason, exit_code=exit_code,
                                               keep_alive_until=until)
        if finished is None:
            return await self.store.get_run(run.id)
        if error and status == RunStatus.failed:
            await self.store.add_event(run.id, "failure_tail", error[-8000:])
        self.drop_bundle(run.id)
        return finished

    def drop_bundle(self, run_id: str) -> None:
        """The bundle is not needed once the run has ended."""
        self.bundle_path(run_id).unlink(missing_ok=True)
        self.retries.resume_archive(run_id).unlink(missing_ok=True)

    def forget_ended(self, live: set[str]) -> None:
        """Keep in memory only what runs with a live pod need (each supervisor pass): cached deadlines and what
        nodes last said would otherwise grow with every run over the server's life."""
        for run_id in [run_id for run_id in self._deadlines if run_id not in live]:
            del self._deadlines[run_id]
        for key in [key for key in self._node_said if key[0] not in live]:
            del self._node_said[key]

    async def close(self) -> None:
        """Wait briefly for launches in flight (they record their pods), then cancel them."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
