"""Cost and training-signal guardrails: pure decisions on a run's state, acted on by the supervisor."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Settings
from ..models import Run, RunStatus


@dataclass(frozen=True)
class Limits:
    """The guardrail settings."""

    heartbeat_timeout_s: float
    boot_timeout_s: float
    stall_timeout_s: float
    stop_on_nan: bool
    default_budget_usd: float | None
    budget_warning_fraction: float
    check_every_s: float = 0.0
    """How often the supervisor checks: a budget the next check would find passed ends the run at this one."""

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(s.heartbeat_timeout_s, s.boot_timeout_s, s.stall_timeout_s, s.stop_on_nan,
                   s.default_budget_usd, s.budget_warning_fraction, s.supervisor_interval_s)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def budget_of(run: Run, limits: Limits) -> float | None:
    """The run's budget: its own, else the default."""
    return run.spec.budget_usd if run.spec.budget_usd is not None else limits.default_budget_usd


def stop_reason(run: Run, limits: Limits, now: float, awake_since: float = 0.0,
                first_bad_loss: tuple[int, float] | None = None) -> str | None:
    """Why a live run with a pod must be terminated now, or None.

    `awake_since` is when this control plane (re)started or woke from a sleep: silence it could not have heard
    (a laptop asleep, a control plane stopped) does not count against a pod's heartbeats, boot or stall.
    `first_bad_loss` is the (step, value) of the run's first NaN or infinite loss, which the NaN guard names (the
    run's last loss may be a later one)."""
    if not run.status.is_live or run.started_at is None:
        return None
    budget = budget_of(run, limits)
    spent = run.cost_at(now)
    if budget is not None and spent >= budget:
        return f"budget of ${budget:.2f} reached (${spent:.2f} spent)"
    if budget is not None and run.price_per_hour and limits.check_every_s > 0 and \
            spent + run.price_per_hour * limits.check_every_s / 3600 > budget:
        # at a high price a check late by one interval overshoots: $1.00 stopped at $1.47
        return f"budget of ${budget:.2f} reached (${spent:.2f} spent; the next check would pass it)"
    runtime = run.runtime_at(now)  # every attempt's pod counts
    if run.spec.max_runtime_s is not None and runtime >= run.spec.max_runtime_s:
        return f"max runtime of {_minutes(run.spec.max_runtime_s)} reached"
    if limits.stop_on_nan and run.last_loss is not None and not math.isfinite(run.last_loss):
        step, value = first_bad_loss if first_bad_loss is not None else (run.last_step, run.last_loss)
        return f"loss became {value} at step {step}"
    silent = silence_reason(run, limits, now, awake_since)
    if silent:
        return silent
    if run.status == RunStatus.training:
        quiet_since = max(run.last_activity or run.last_heartbeat or run.started_at, awake_since)
        if now - quiet_since >= limits.stall_timeout_s:
            return f"stalled: no metric and no log line for {_minutes(now - quiet_since)}"
    return None


def silence_reason(run: Run, limits: Limits, now: float, awake_since: float = 0.0) -> str | None:
    """Why a live run's pod counts as silent now (no report since its start within the boot timeout, or no
    heartbeat for the heartbeat timeout), or None."""
    if not run.status.is_live or run.started_at is None:
        return None
    if run.last_heartbeat is None:
        if now - max(run.started_at, awake_since) >= limits.boot_timeout_s:
            return f"the pod sent no report within {_minutes(limits.boot_timeout_s)} of starting"
    elif now - max(run.last_heartbeat, awake_since) >= limits.heartbeat_timeout_s:
        return f"no heartbeat for {_minutes(now - run.last_heartbeat)}"
    return None


def retry_refusal(run: Run, limits: Limits, now: float, waiting: bool = False) -> str | None:
    """Why a run whose pod was lost gets no new pod (an attempt), or None when it may have one: retries left,
    and budget and max runtime not reached over every attempt so far. `waiting`: the lost attempt is already
    closed and the run waits for its next pod (its attempt number is the next one's)."""
    retries = run.spec.retries or 0
    if run.spec.nodes > 1:  # one node lost ends the whole group: relaunching all of it is not built yet
        return "a run of more than one pod is not retried yet: its nodes end together"
    if retries <= 0:
        return "retries are off (--retries 0)"
    if run.attempt - (1 if waiting else 0) > retries:
        return f"its {retries} {'retry is' if retries == 1 else 'retries are'} used up ({run.attempt} pods lost)"
    budget = budget_of(run, limits)
    spent = run.cost_at(now)
    if budget is not None and spent >= budget:
        return f"its budget of ${budget:.2f} is spent (${spent:.2f} over {run.attempt} attempts)"
    if run.spec.max_runtime_s is not None and run.runtime_at(now) >= run.spec.max_runtime_s:
        return f"its max runtime of {_minutes(run.spec.max_runtime_s)} is reached"
    return None


def budget_warning(run: Run, limits: Limits, now: float) -> str | None:
    """A warning once the run has spent the warning share of its budget."""
    budget = budget_of(run, limits)
    if budget is None or budget <= 0 or not run.status.is_live:
        return None
    spent = run.cost_at(now)
    if spent >= budget * limits.budget_warning_fraction:
        return f"${spent:.2f} of the ${budget:.2f} budget spent ({100 * spent / budget:.0f}%)"
    return None
