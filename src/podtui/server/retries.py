"""A run that outlives its pod: a lost pod is replaced by a new one, which resumes from the outputs brought home.

The one entry point is `Retries.pod_lost(run, reason)`, called wherever a live run's pod is found lost (the
supervisor: gone, exited, silent while its provider no longer reports it running; a container restart seen at
boot or in pull mode; a failing command with --retry-failed). It decides at once (True: a new attempt is under
way; False: the caller ends the run as before) and replaces the pod in the background:

1. the lost pod is terminated and its end confirmed (the provider's terminate returns once it is gone), so at
   most one pod of the run lives at any time; a pod that cannot be confirmed gone ends the run instead;
2. the attempt is closed (pod, GPU type, start, end, why, cost) and the run waits for its next pod, with a new
   ingest token (the lost pod can no longer write) and a log line marking the boundary;
3. the outputs home so far are packed for the new pod (`$PODTUI_RESUME_DIR`), and a pod is created through the
   same path as the first (the lost pod's GPU type first), with `$PODTUI_ATTEMPT`.

A run terminated by the user or a guardrail has ended before anything here runs, and is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..fmt import format_duration
from ..models import Attempt, Run, RunStatus
from ..providers.base import ProviderError
from ..tokens import hash_token, new_token
from .guardrails import Limits, retry_refusal

if TYPE_CHECKING:
    from .runs import RunService

log = logging.getLogger(__name__)

RESUME_SYNC_S = 300.0
"""While retries are on, the outputs come home at least this often (a checkpoint is never older than that)."""


def default_retries(provider: str) -> int:
    """Retries when the launch does not say: 2 on RunPod (hosts fail, spot pods are taken back), 0 locally."""
    return 2 if provider == "runpod" else 0


def sync_every(run: Run) -> float | None:
    """How often the pod brings its outputs home while the command runs: --sync-outputs, and with retries on
    at most RESUME_SYNC_S, so a new attempt resumes from a recent checkpoint."""
    every = run.spec.sync_outputs_s
    if run.spec.retries:
        return min(every, RESUME_SYNC_S) if every else RESUME_SYNC_S
    return every


def pack_resume(outputs: Path, names: list[str], archive: Path) -> tuple[int, int]:
    """Pack the outputs home (only files whose arrival the store recorded) into an uncompressed tar for the next
    pod; returns (files, bytes). Checkpoints are mostly incompressible: gzip would cost minutes on large ones."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    count = size = 0
    with tarfile.open(partial, "w") as tar:
        for name in names:
            path = outputs / name
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=name, recursive=False)
                count += 1
                size += path.stat().st_size
    partial.replace(archive)
    return count, size


class Retries:
    """Replaces lost pods of runs launched with --retries."""

    def __init__(self, runs: RunService, limits: Limits) -> None:
        self.runs = runs
        self.store = runs.store
        self.limits = limits
        self._replacing: set[str] = set()

    def resume_archive(self, run_id: str) -> Path:
        """The outputs a run's next pod resumes from (served to it at boot, like its code bundle)."""
        return self.runs.settings.data_dir / "bundles" / f"{run_id}.resume.tar"

    def refusal(self, run: Run, now: float | None = None) -> str | None:
        """Why this run gets no new pod, or None."""
        return retry_refusal(run, self.limits, time.time() if now is None else now)

    def pod_lost(self, run: Run, reason: str) -> bool:
        """The run's pod is lost: True when a new attempt is under way (the caller does nothing more), False when
        the run gets none (the caller ends it; `refusal` says why)."""
        if run.id in self._replacing:
            return True  # already being replaced: a later pass saw the same lost pod
        if not run.status.is_live or not run.pod_id or self.refusal(run) is not None:
            return False
        self._replacing.add(run.id)

        async def replace() -> None:
            try:
                await self._replace(run, reason)
            except Exception:
                log.exception("replacing the pod of run %s failed", run.id)
                await self.store.finish_run(run.id, RunStatus.lost, f"{reason}; replacing its pod failed "
                                            "(see the control plane's log)")
            finally:
                self._replacing.discard(run.id)

        self.runs._spawn(replace())
        return True

    async def _replace(self, run: Run, reason: str) -> None:
        provider = self.runs.provider(run.provider)
        lost_pod = run.pod_id or ""
        try:  # confirmed gone before a new pod counts: never two pods of one run billing
            await self.runs.end_pod(run.id, provider, lost_pod, f"lost ({reason}); a new pod replaces it")
        except ProviderError as exc:
            await self.store.finish_run(run.id, RunStatus.lost, f"{reason}; its pod {lost_pod} could not be "
                                        f"confirmed ended ({exc}), so no new pod was made; podtui keeps ending it")
            return
        now = time.time()
        current = await self.store.get_run(run.id)
        if not current.status.is_live or current.pod_id != lost_pod:
            return  # ended (the user, a guardrail, the pod's own last report) while its pod was being ended
        cost = current.attempt_cost_at(now)
        ended = Attempt(pod_id=lost_pod, gpu=current.gpu_type, started_at=current.started_at, ended_at=now,
                        reason=reason, cost_usd=round(cost, 6), price_per_hour=current.price_per_hour)
        total = (current.spec.retries or 0) + 1
        n = current.attempt
        token = new_token()
        boundary = (f"── attempt {n} of {total} ended: {reason}; attempt {n + 1} resumes the run on a new pod ──")
        lasted = format_duration(now - (current.started_at or now))
        fresh = await self.store.begin_attempt(
            run.id, lost_pod, ended, hash_token(token), boundary=boundary,
            event=("attempt_lost", f"attempt {n} of {total} lost after {lasted} on pod {lost_pod} (${cost:.3f}): "
                   f"{reason}; starting attempt {n + 1}"))
        if fresh is None:
            return
        await self.start_next(fresh, token)

    async def start_next(self, run: Run, token: str) -> None:
        """Pack the outputs home and create the run's next pod (its ingest token's hash is already the run's)."""
        files, size = await self._pack(run)
        last = run.ended_attempts[-1].gpu if run.ended_attempts else None
        pod_id = await self.runs.start_pod(run, self.runs.provider(run.provider), token, gpu_first=last)
        if pod_id is not None:
            what = (f"{files} output file{'s' if files != 1 else ''} ({size:,} bytes) in $PODTUI_RESUME_DIR"
                    if files else "no outputs home yet: it starts from scratch")
            await self.store.add_event(run.id, "resumed", f"attempt {run.attempt} of {(run.spec.retries or 0) + 1} "
                                       f"on pod {pod_id}: {what}")

    async def after_restart(self, run: Run) -> bool:
        """A run whose lost pod was being replaced when the control plane stopped (it lives, has no pod, and had
        attempts): make its next pod now. False when it may not have one."""
        if not run.ended_attempts or retry_refusal(run, self.limits, time.time(), waiting=True) is not None:
            return False
        token = new_token()
        if not await self.store.set_ingest_token(run.id, hash_token(token)):
            return False
        await self.store.add_event(run.id, "supervisor", "the control plane restarted while a lost pod was being "
                                   "replaced: making the new pod now")
        self.runs._spawn(self.start_next(run, token))
        return True

    async def _pack(self, run: Run) -> tuple[int, int]:
        names = [f.path for f in await self.store.output_files(run.id) if f.size is not None]
        archive = self.resume_archive(run.id)
        if not names:
            archive.unlink(missing_ok=True)
            return 0, 0
        outputs = self.runs.settings.data_dir / "outputs" / run.id
        try:
            return await asyncio.to_thread(pack_resume, outputs, names, archive)
        except OSError as exc:
            archive.unlink(missing_ok=True)
            await self.store.add_event(run.id, "warning", f"cannot pack the outputs for the new pod ({exc}): "
                                       "it starts without them")
            return 0, 0
