"""The supervisor: inside every control plane, it keeps the store and the providers' pods in agreement.

- a live run whose pod is gone becomes `failed` (it exited) or `lost`;
- a finished run whose pod still runs past its keep-alive (or a short grace) has its pod terminated: the pod's
  own agent is the first line, this is the second;
- on start, runs that were live before a restart are supervised again, and a launch that a restart
  interrupted is either adopted (its pod is found by name) or failed;
- expired download tokens are deleted on a schedule.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..models import Run, RunStatus
from ..providers.base import POD_NAME_PREFIX, ProviderError
from ..store import Store, StoreUnavailable
from .guardrails import Limits, budget_warning, stop_reason
from .responses import ApiError
from .runs import RunService

log = logging.getLogger(__name__)

END_GRACE_S = 30.0
"""How long after a run ends its pod may take to end itself before the control plane terminates it."""


class Supervisor:
    """Background tasks of the control plane."""

    def __init__(self, runs: RunService, store: Store, interval_s: float, token_cleanup_s: float,
                 limits: Limits) -> None:
        self.runs = runs
        self.store = store
        self.interval_s = interval_s
        self.token_cleanup_s = token_cleanup_s
        self.limits = limits
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Adopt what a restart left behind, then start the loops."""
        await self.resume_after_restart()
        self._tasks = [asyncio.create_task(self._loop(self.check_once, self.interval_s), name="supervisor"),
                       asyncio.create_task(self._loop(self.clean_tokens, self.token_cleanup_s), name="tokens")]

    async def stop(self) -> None:
        """Cancel the loops."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self, fn: object, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await fn()  # type: ignore[operator]
            except StoreUnavailable as exc:
                log.warning("supervisor: %s", exc)
            except Exception:
                log.exception("supervisor pass failed")

    async def clean_tokens(self) -> int:
        """Delete expired download tokens."""
        count = await self.store.delete_expired_tokens(time.time())
        if count:
            log.info("deleted %d expired download tokens", count)
        return count

    async def resume_after_restart(self) -> None:
        """Runs interrupted while their pod was being created: adopt the pod by name, or fail the run."""
        for run in await self.store.list_runs(live_only=True):
            if run.pod_id or run.provider not in self.runs.providers:
                continue
            provider = self.runs.providers[run.provider]
            try:
                pods = await provider.list_pods()
            except ProviderError as exc:
                await self.store.add_event(run.id, "supervisor", f"cannot list pods to resume this run: {exc}")
                continue
            match = [p for p in pods if p.name == f"{POD_NAME_PREFIX}{run.id}"]
            if match:
                pod = match[0]
                await self.store.record_pod(provider.name, pod.pod_id, run.id, None, pod.price_per_hour, "running")
                await self.store.update_run(run.id, status=RunStatus.booting, pod_id=pod.pod_id,
                                            price_per_hour=pod.price_per_hour, started_at=time.time(),
                                            event=("adopted", f"found pod {pod.pod_id} after a restart"))
            else:
                await self.store.finish_run(run.id, RunStatus.failed,
                                            "the control plane restarted before a pod was created")

    async def enforce_limits(self, run: Run, now: float) -> None:
        """Budget, runtime, heartbeat, NaN and stall guardrails of one live run with a running pod."""
        warning = budget_warning(run, self.limits, now)
        if warning and not await self.store.has_event(run.id, "budget_warning"):
            await self.store.add_event(run.id, "budget_warning", warning)
        reason = stop_reason(run, self.limits, now)
        if reason is None:
            return
        log.info("terminating run %s: %s", run.id, reason)
        try:
            await self.runs.terminate(run.id, reason)
        except ApiError as exc:  # the provider did not confirm: the next pass tries again
            log.warning("terminating run %s failed: %s", run.id, exc.message)

    async def check_once(self) -> None:
        """One pass over live runs and over pods not known to be gone."""
        now = time.time()
        for run in await self.store.list_runs(live_only=True):
            if not run.pod_id or run.provider not in self.runs.providers:
                continue
            provider = self.runs.providers[run.provider]
            try:
                state = await provider.get_pod(run.pod_id)
            except ProviderError as exc:
                log.warning("cannot poll pod %s: %s", run.pod_id, exc)
                continue
            if state.phase in ("gone", "exited"):
                if state.phase == "gone":
                    await self.store.set_pod_status(provider.name, run.pod_id, "gone")
                fresh = await self.store.get_run(run.id)
                if fresh.status.is_live:  # the agent's final report may have landed meanwhile
                    detail = state.detail or "the pod is gone"
                    status = RunStatus.failed if state.exit_code not in (None, 0) else RunStatus.lost
                    await self.store.finish_run(run.id, status, f"{detail} without reporting an end")
                    self.runs.drop_bundle(run.id)
                continue  # an exited pod still exists: the finished-runs pass below terminates it
            await self.enforce_limits(run, now)
        for provider_name, pod_id, run_id in await self.store.pods_not_gone():
            if provider_name not in self.runs.providers:
                continue
            provider = self.runs.providers[provider_name]
            run = await self.store.get_run(run_id)
            if run.status.is_live:
                continue
            try:
                state = await provider.get_pod(pod_id)
                if state.phase == "gone":
                    await self.store.set_pod_status(provider_name, pod_id, "gone")
                    await self.store.revoke_ingest_token(run_id)
                    continue
                deadline = run.keep_alive_until or ((run.ended_at or now) + END_GRACE_S)
                if now < deadline and state.phase != "exited":  # an exited pod only bills: end it now
                    continue
                why = "keep-alive window over" if run.keep_alive_until else f"the run {run.status.value}"
                await self.runs.end_pod(run_id, provider, pod_id, why)
                await self.store.revoke_ingest_token(run_id)
            except ProviderError as exc:
                log.warning("cannot end pod %s of finished run %s: %s", pod_id, run_id, exc)
