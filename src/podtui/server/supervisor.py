"""The supervisor: inside every control plane, it keeps the store and the providers' pods in agreement.

- a live run whose pod is gone becomes `failed` (it exited) or `lost`;
- a finished run whose pod still runs past its keep-alive (or a short grace) has its pod terminated: the pod's
  own agent is the first line, this is the second;
- a pod named for a run that does not hold it (a lost create the run gave up on, a second pod) is terminated;
- the provider's price and GPU use are recorded on every pass, and low GPU use while training is warned about;
- on start, runs that were live before a restart are supervised again, and a launch that a restart
  interrupted is either adopted (its pod is found by name) or failed;
- expired download tokens are deleted on a schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from ..fmt import format_duration
from ..models import Run, RunStatus
from ..providers.base import POD_NAME_PREFIX, PodState, ProviderError, poll_pods
from ..store import NotFound, Store, StoreUnavailable
from .guardrails import Limits, budget_warning, silence_reason, stop_reason
from .runs import RunService

log = logging.getLogger(__name__)

END_GRACE_S = 30.0
"""How long after a run ends its pod may take to end itself before the control plane terminates it."""


def pod_may_live_until(run: Run, now: float) -> float:
    """Until when a finished run's pod may run: its keep-alive window, or a short grace to end itself."""
    return run.keep_alive_until or ((run.ended_at or now) + END_GRACE_S)


class Supervisor:
    """Background tasks of the control plane."""

    def __init__(self, runs: RunService, store: Store, interval_s: float, token_cleanup_s: float,
                 limits: Limits, stray_every: int = 6) -> None:
        self.runs = runs
        self.store = store
        self.interval_s = interval_s
        self.token_cleanup_s = token_cleanup_s
        self.limits = limits
        self.stray_every = stray_every
        self._tasks: list[asyncio.Task[None]] = []
        self._passes = 0
        self.awake_since = time.time()
        """When this control plane started or last woke from a sleep (see guardrails.stop_reason)."""
        self._clock_offset = time.time() - time.monotonic()
        self._low_gpu_since: dict[str, float] = {}

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

    def note_wake(self) -> None:
        """A suspended machine (a laptop's lid) stops the monotonic clock, not the wall clock: when they drift
        apart, this control plane was asleep, whatever it was doing at the time."""
        offset = time.time() - time.monotonic()
        if offset - self._clock_offset > 30.0:
            log.info("the control plane was asleep for %.0f s", offset - self._clock_offset)
            self.awake_since = time.time()
        self._clock_offset = offset

    async def _loop(self, fn: object, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.note_wake()
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
            name = f"{POD_NAME_PREFIX}{run.id}"
            find = getattr(provider, "find_pod_by_name", None)  # RunPod: looks a while, its listing lags
            try:
                if find is not None:
                    found = await find(name)
                else:
                    found = next((p for p in await provider.list_pods() if p.name == name), None)
            except ProviderError as exc:
                await self.store.add_event(run.id, "supervisor", f"cannot list pods to resume this run: {exc}")
                continue
            if found is not None:
                pod = found
                await self.store.record_pod(provider.name, pod.pod_id, run.id, None, pod.price_per_hour, "running")
                await self.store.update_run(run.id, status=RunStatus.booting, pod_id=pod.pod_id,
                                            price_per_hour=pod.price_per_hour, started_at=time.time(),
                                            event=("adopted", f"found pod {pod.pod_id} after a restart"))
                self.runs.forget_deadline(run.id)
            elif not await self.runs.retries.after_restart(run):
                await self.store.finish_run(run.id, RunStatus.failed,
                                            "the control plane restarted before a pod was created")

    async def enforce_limits(self, run: Run, now: float) -> None:
        """Budget, runtime, heartbeat, NaN and stall guardrails of one live run with a running pod."""
        self.note_wake()  # a sleep that began during this pass counts too
        warning = budget_warning(run, self.limits, now)
        if warning and not await self.store.has_event(run.id, "budget_warning"):
            await self.store.add_event(run.id, "budget_warning", warning)
        first_bad = None
        if self.limits.stop_on_nan and run.last_loss is not None and not math.isfinite(run.last_loss):
            first_bad = await self.store.first_nonfinite_loss(run.id)  # only the NaN guard names it
        reason = stop_reason(run, self.limits, now, self.awake_since, first_bad)
        if reason is None:
            return
        log.info("terminating run %s: %s", run.id, reason)
        self.runs.terminate_soon(run.id, reason)  # in the background: a slow provider must not hold the pass

    async def check_once(self) -> None:
        """One pass: every provider's pods polled in one batch (one `GET /v2/pods` on RunPod), then live runs
        checked against them, then the pods of finished runs ended when their time is up."""
        now = time.time()
        live = [r for r in await self.store.list_runs(live_only=True)
                if r.pod_id and r.provider in self.runs.providers]
        self.runs.forget_ended({run.id for run in live})
        ended = [(name, pod_id, run_id) for name, pod_id, run_id in await self.store.pods_not_gone()
                 if name in self.runs.providers]
        wanted: dict[str, set[str]] = {}
        for run in live:
            wanted.setdefault(run.provider, set()).add(run.pod_id or "")
            self.note_spot(run)
        for name, pod_id, run_id in ended:
            wanted.setdefault(name, set()).add(pod_id)
            if hasattr(self.runs.providers[name], "note_spot"):
                with contextlib.suppress(NotFound):
                    self.note_spot(await self.store.get_run(run_id))
        states: dict[str, dict[str, PodState]] = {}
        for name, pod_ids in wanted.items():
            try:
                states[name] = await poll_pods(self.runs.providers[name], sorted(pod_ids))
            except ProviderError as exc:
                log.warning("cannot poll %s pods: %s", name, exc)
                states[name] = {}
            except Exception:  # one provider's surprise must not stop the others' guardrails
                log.exception("polling %s pods failed", name)
                states[name] = {}
        for run in live:
            state = states[run.provider].get(run.pod_id or "")
            if state is not None:
                await self.check_live_run(run, state, now)
        for name, pod_id, run_id in ended:
            state = states[name].get(pod_id)
            if state is not None:
                await self.end_finished_pod(name, pod_id, run_id, state, now)
        self._passes += 1
        if self._passes % self.stray_every == 1 or self.stray_every == 1:
            await self.end_strays()

    def note_spot(self, run: Run) -> None:
        """Tell the provider which pods are spot pods (RunPod looks them up through GraphQL when v2 does not list
        them, so none counts as gone while it bills); it forgets across a restart."""
        note = getattr(self.runs.providers.get(run.provider), "note_spot", None)
        if note is not None and run.spec.spot and run.pod_id:
            note(run.pod_id)

    async def check_live_run(self, run: Run, state: PodState, now: float) -> None:
        """One live run against what its provider says of its pod."""
        provider = self.runs.providers[run.provider]
        if state.phase in ("gone", "exited"):
            if state.phase == "gone":
                await self.store.set_pod_status(provider.name, state.pod_id, "gone")
            fresh = await self.store.get_run(run.id)
            if fresh.pod_id != run.pod_id:
                return  # a lost pod already replaced (--retries): the run has moved on to its next attempt
            if fresh.status.is_live:  # the agent's final report may have landed meanwhile
                detail = state.detail or "the pod is gone"
                status = RunStatus.failed if state.exit_code not in (None, 0) else RunStatus.lost
                reason = f"{detail} without reporting an end"
                if self.runs.retries.pod_lost(fresh, f"pod {run.pod_id}: {reason}"):
                    return  # a new pod resumes the run
                if fresh.spec.retries:
                    reason += f"; no new pod: {self.runs.retries.refusal(fresh)}"
                if run.last_heartbeat is not None and self.awake_since > run.last_heartbeat:
                    reason += (" while podtui was away (a pod ends itself at its own limits, or 30 min after its "
                               "command ended without delivering); its last reports were not fetched")
                await self.store.finish_run(run.id, status, reason)
                self.runs.drop_bundle(run.id)
            return  # an exited pod still exists: the finished-runs pass terminates it
        if state.nodes and await self.check_nodes(run, state):
            return
        if state.price_per_hour and abs(state.price_per_hour - (run.price_per_hour or 0.0)) > 1e-6:
            run = await self.store.update_run(
                run.id, price_per_hour=state.price_per_hour, event=(
                    "price", f"{provider.name} bills ${state.price_per_hour:.3f}/h for pod {state.pod_id}")) or run
            self.runs.forget_deadline(run.id)  # after the store has the price
        if state.phase != "running" and run.spec.retries:
            # Silent while the provider no longer reports the pod running (a boot stuck on its host, a machine
            # gone quiet): lost, not a guardrail's end, so a new pod may resume the run.
            silent = silence_reason(run, self.limits, now, self.awake_since)
            if silent:
                reason = f"{silent} and {provider.name} reports pod {state.pod_id} {state.detail or state.phase}"
                if not self.runs.retries.pod_lost(run, reason):
                    self.runs.terminate_soon(run.id, f"{reason}; no new pod: {self.runs.retries.refusal(run)}",
                                             RunStatus.lost)
                return
        if state.gpu_util is not None or state.gpu_mem is not None:
            step = int(run.runtime_at(now))  # seconds of pod time over every attempt: steps go on across them
            await self.store.record_gpu_use(run.id, state.gpu_util, state.gpu_mem, step, now)
            await self.watch_gpu_use(run, state, now)
        await self.enforce_limits(run, now)

    async def check_nodes(self, run: Run, state: PodState) -> bool:
        """A group's nodes: recorded on the run (pod, status, GPU use, price); a node gone while the run lives,
        that had not reported success, ends the run and every other node (training across nodes cannot go on
        without it; a retry relaunches the whole group). True when the run was ended."""
        said = {n.rank: n.status for n in run.nodes}
        known_nodes = {n.rank: n for n in run.nodes}
        now = time.time()
        changes: dict[int, dict[str, object]] = {}
        for node in state.nodes:
            before = known_nodes.get(node.rank)
            spent = 0.0 if before is None else before.spent_usd
            if before is not None and before.updated_at is not None and before.price_per_hour:
                spent += before.price_per_hour * max(0.0, now - before.updated_at) / 3600.0
            status = said.get(node.rank, "starting")
            if node.phase in ("gone", "exited") and status not in ("succeeded", "failed"):
                status = "gone" if node.phase == "gone" else "exited"
            elif node.phase in ("running", "starting") and status in ("starting", "gone"):
                status = "running"
            changes[node.rank] = {"pod_id": node.pod_id, "status": status, "gpu_util": node.gpu_util,
                                  "gpu_mem": node.gpu_mem,
                                  "price_per_hour": node.price_per_hour if node.phase != "gone" else 0.0,
                                  "spent_usd": round(spent, 6), "updated_at": now}
        await self.store.update_nodes(run.id, changes)  # the cost moves on every pass
        # A node whose container stopped (RunPod: EXITED, ERROR) is as lost as one whose pod is gone. (One that
        # reported its failure has ended the run already: RunService.take_node_report.)
        lost = [n for n in state.nodes if n.phase in ("gone", "exited")
                and said.get(n.rank) not in ("succeeded", "failed")]
        if not lost:
            return False
        first = lost[0]
        failed = first.exit_code not in (None, 0)
        reason = (f"node {first.rank} (pod {first.pod_id}) is gone without reporting an end"
                  + (f" ({first.detail})" if first.detail else "")
                  + f"; the other {len(state.nodes) - 1} node(s) cannot train without it: ending them")
        log.info("run %s: %s", run.id, reason)
        self.runs.terminate_soon(run.id, reason, RunStatus.failed if failed else RunStatus.lost)
        return True

    async def watch_gpu_use(self, run: Run, state: PodState, now: float) -> None:
        """A warning when training keeps the GPUs below the run's --min-gpu-util for its duration."""
        floor = run.spec.min_gpu_util_pct
        if floor is None or run.status != RunStatus.training or state.gpu_util is None:
            self._low_gpu_since.pop(run.id, None)
            return
        if state.gpu_util >= floor:
            self._low_gpu_since.pop(run.id, None)
            return
        since = self._low_gpu_since.setdefault(run.id, now)
        if since and now - since >= run.spec.min_gpu_util_s:
            self._low_gpu_since[run.id] = 0.0  # once per low stretch
            await self.store.add_event(run.id, "gpu_util_low", (
                f"GPU use has stayed below {floor:.0f}% for {format_duration(now - since)} (now "
                f"{state.gpu_util:.0f}%) while the pod bills ${run.price_per_hour or 0:.3f}/h"))

    async def end_finished_pod(self, provider_name: str, pod_id: str, run_id: str, state: PodState,
                               now: float) -> None:
        """A finished run's pod: gone -> remembered; past its keep-alive or grace -> terminated."""
        provider = self.runs.providers[provider_name]
        run = await self.store.get_run(run_id)
        if run.status.is_live:
            return
        try:
            if state.phase == "gone":
                await self.runs.pod_gone(run_id, provider_name, pod_id)
                await self.store.revoke_ingest_token(run_id)
                return
            deadline = pod_may_live_until(run, now)
            if now < deadline and state.phase != "exited":  # an exited pod only bills: end it now
                return
            why = "keep-alive window over" if run.keep_alive_until else f"the run {run.status.value}"
            await self.runs.end_pod(run_id, provider, pod_id, why)
            await self.store.revoke_ingest_token(run_id)
        except ProviderError as exc:
            log.warning("cannot end pod %s of finished run %s: %s", pod_id, run_id, exc)

    async def end_strays(self) -> None:
        """Pods named for a run of this store that the run does not hold: a create whose answer was lost and
        which the run gave up on, or a second pod of one run. Each is terminated, with an event on its run.
        Pods of runs this store does not know are orphans: listed for the user, never ended unasked."""
        for provider in self.runs.providers.values():
            try:
                pods = await provider.list_pods()
            except ProviderError as exc:
                log.warning("cannot list %s pods for strays: %s", provider.name, exc)
                continue
            for pod in pods:
                if pod.phase == "gone" or not pod.name.startswith(POD_NAME_PREFIX):
                    continue
                try:
                    run = await self.store.get_run(pod.name[len(POD_NAME_PREFIX):])
                except NotFound:
                    continue
                if run.status.is_live and (run.pod_id == pod.pod_id or not run.pod_id):
                    continue  # the run's own pod, or a create still in flight
                if run.pod_id == pod.pod_id:
                    # A finished run's own pod still listed: the finished-runs pass ends it, unless the pod was
                    # once judged gone wrongly (then nothing else would). Past its keep-alive or grace: end it.
                    until = pod_may_live_until(run, time.time())
                    if time.time() < until or pod.phase not in ("running", "starting", "exited"):
                        continue
                if run.pod_id == pod.pod_id:
                    why = f"pod {pod.pod_id} still runs after its run {run.status.value}"
                else:
                    why = (f"pod {pod.pod_id} carries this run's name but the run "
                           + (f"uses pod {run.pod_id}" if run.pod_id else f"ended ({run.status.value}) without it"))
                try:
                    await self.runs.end_pod(run.id, provider, pod.pod_id, why)
                except ProviderError as exc:
                    log.warning("cannot end stray pod %s: %s", pod.pod_id, exc)
