"""The retry decisions alone (issue 26): when a lost pod gets a new one, and what every attempt costs."""

import time

from podtui.models import Attempt, LaunchSpec, Run, RunStatus
from podtui.server.guardrails import Limits, retry_refusal, silence_reason
from podtui.server.retries import RESUME_SYNC_S, default_retries, sync_every

LIMITS = Limits(heartbeat_timeout_s=300, boot_timeout_s=600, stall_timeout_s=900, stop_on_nan=True,
                default_budget_usd=None, budget_warning_fraction=0.8)
NOW = 1_000_000.0


def make_run(ended: list[Attempt] | None = None, **spec: object) -> Run:
    values: dict[str, object] = {"dataset": "demo", "gpu_types": ["local"]}
    values.update(spec)
    return Run(id="r1", name="r", provider="runpod", status=RunStatus.training, spec=LaunchSpec.model_validate(values),
               dataset_id="d", created_at=NOW - 7200, pod_id="p3", gpu_type="A", price_per_hour=3.6,
               started_at=NOW - 600, last_heartbeat=NOW - 1, ended_attempts=ended or [])


def lost(cost: float, seconds: float) -> Attempt:
    return Attempt(pod_id="p", started_at=NOW - 5000, ended_at=NOW - 5000 + seconds, reason="gone", cost_usd=cost)


def test_cost_and_runtime_count_every_attempt():
    run = make_run([lost(1.0, 1000), lost(0.5, 500)])
    assert run.cost_at(NOW) == 1.0 + 0.5 + 0.6  # the current pod: 600 s at $3.60/h
    assert run.runtime_at(NOW) == 1000 + 500 + 600
    assert run.attempt == 3 and [a.pod_id for a in run.attempts][-1] == "p3"


def test_a_retry_needs_retries_left_budget_and_runtime():
    assert retry_refusal(make_run(retries=0), LIMITS, NOW) == "retries are off (--retries 0)"
    assert retry_refusal(make_run(retries=2), LIMITS, NOW) is None
    assert retry_refusal(make_run([lost(0.1, 10)], retries=2), LIMITS, NOW) is None
    used = retry_refusal(make_run([lost(0.1, 10), lost(0.1, 10)], retries=2), LIMITS, NOW)
    assert used == "its 2 retries are used up (3 pods lost)"
    spent = retry_refusal(make_run([lost(4.5, 10)], retries=2, budget_usd=5), LIMITS, NOW)
    assert spent is not None and spent.startswith("its budget of $5.00 is spent ($5.10 over 2 attempts)")
    assert retry_refusal(make_run([lost(4.0, 10)], retries=2, budget_usd=5), LIMITS, NOW) is None
    late = retry_refusal(make_run([lost(0.1, 3000)], retries=2, max_runtime_s="1h"), LIMITS, NOW)
    assert late == "its max runtime of 60 min is reached"


def test_silence_is_no_report_since_boot_or_no_heartbeat():
    run = make_run(retries=1)
    assert silence_reason(run, LIMITS, NOW) is None
    quiet = run.model_copy(update={"last_heartbeat": NOW - 301})
    assert silence_reason(quiet, LIMITS, NOW) == "no heartbeat for 5 min"
    booting = run.model_copy(update={"last_heartbeat": None, "started_at": NOW - 601})
    assert silence_reason(booting, LIMITS, NOW) == "the pod sent no report within 10 min of starting"
    assert silence_reason(quiet, LIMITS, NOW, awake_since=NOW - 10) is None  # a control plane that just woke


def test_retries_by_default_and_how_often_outputs_come_home():
    assert default_retries("runpod") == 2 and default_retries("local") == 0
    assert sync_every(make_run(retries=0)) is None
    assert sync_every(make_run(retries=0, sync_outputs_s="1h")) == 3600
    assert sync_every(make_run(retries=1)) == RESUME_SYNC_S == 300
    assert sync_every(make_run(retries=1, sync_outputs_s="1h")) == 300
    assert sync_every(make_run(retries=1, sync_outputs_s="1m")) == 60


def test_the_current_attempt_is_costed_until_now():
    run = make_run([lost(1.0, 1000)])
    current = run.attempts[-1]
    assert current.ended_at is None and current.reason is None
    assert abs(current.cost_usd - (time.time() - (NOW - 600)) / 3600 * 3.6) < 0.01


def test_a_run_waiting_for_its_next_pod_counts_the_lost_attempt_once():
    waiting = make_run([lost(0.1, 10)], retries=1).model_copy(update={"pod_id": None, "started_at": None})
    assert retry_refusal(waiting, LIMITS, NOW, waiting=True) is None
    assert retry_refusal(waiting, LIMITS, NOW) == "its 1 retry is used up (2 pods lost)"
