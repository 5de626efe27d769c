"""Validation limits carried by the models."""

import math

import pytest
from pydantic import ValidationError

from podtui.models import (
    MAX_LOG_LINE,
    TRUNCATION_MARKER,
    LaunchSpec,
    LogLine,
    MetricPoint,
    Report,
    parse_duration,
)


def point(**kw):
    return {"name": "loss", "step": 1, "value": 0.5, "ts": 1.7e9, **kw}


@pytest.mark.parametrize("bad", [
    point(step=2**63), point(step=-1), point(step=True), point(step=1.5), point(value=True),
    point(value="abc"), point(ts=False), point(ts="NaN"), point(name=""), point(name="x" * 251),
    point(extra=1),
])
def test_bad_points_are_refused(bad):
    with pytest.raises(ValidationError):
        MetricPoint.model_validate(bad)


def test_non_finite_values_are_kept_and_serialize_as_strings():
    p = MetricPoint.model_validate(point(value="NaN"))
    assert math.isnan(p.value)
    assert MetricPoint.model_validate(point(value=float("inf"))).model_dump(mode="json")["value"] == "Infinity"
    assert p.model_dump(mode="json")["value"] == "NaN"


def test_step_at_int64_max_is_accepted():
    assert MetricPoint.model_validate(point(step=2**63 - 1)).step == 2**63 - 1


def test_batch_limits():
    with pytest.raises(ValidationError):
        Report.model_validate({"metrics": [point(step=i) for i in range(5001)]})
    with pytest.raises(ValidationError):
        Report.model_validate({"logs": [{"seq": i, "ts": 1.0, "text": "x"} for i in range(5001)]})
    assert len(Report.model_validate({"metrics": [point(step=i) for i in range(5000)]}).metrics) == 5000


def test_long_log_lines_are_truncated_with_a_marker():
    line = LogLine.model_validate({"seq": 0, "ts": 1.0, "text": "a" * (MAX_LOG_LINE + 10)})
    assert line.text.endswith(TRUNCATION_MARKER)
    assert len(line.text) == MAX_LOG_LINE + len(TRUNCATION_MARKER)


def test_launch_spec_durations_and_env():
    spec = LaunchSpec(dataset="demo", gpu_types=["a", "b"], max_runtime_s="2h", keep_alive_s="90s")
    assert spec.max_runtime_s == 7200 and spec.keep_alive_s == 90
    with pytest.raises(ValidationError):
        LaunchSpec(dataset="demo", gpu_types=["a", "a"])
    with pytest.raises(ValidationError):
        LaunchSpec(dataset="demo", gpu_types=["a"], env={"PODTUI_TOKEN": "x"})
    with pytest.raises(ValidationError):
        LaunchSpec(dataset="demo", gpu_types=[])
    with pytest.raises(ValueError):
        parse_duration("two hours")


def test_a_limit_of_zero_is_no_limit():
    """0 would end the run the moment it starts; someone who types it means no limit (a new user did, and the run
    was terminated 2 s later)."""
    spec = LaunchSpec(dataset="demo", gpu_types=["a"], max_runtime_s="0", budget_usd=0)
    assert spec.max_runtime_s is None and spec.budget_usd is None
    assert LaunchSpec(dataset="demo", gpu_types=["a"], max_runtime_s="0s").max_runtime_s is None
    assert LaunchSpec(dataset="demo", gpu_types=["a"], budget_usd=0.5).budget_usd == 0.5


def test_outputs_say_none_yet_only_while_more_can_come():
    from podtui.models import OutputsPage, OutputsSummary, Run, RunStatus
    from podtui.wording import outputs_line

    now = 1_800_000_000.0
    run = Run(id="r1", name="r", provider="local", status=RunStatus.training, dataset_id="d", created_at=now,
              spec=LaunchSpec(dataset="demo", gpu_types=["local"]))
    page = OutputsPage(run_id="r1", folder="/x", files=[], summary=OutputsSummary())
    assert run.pod_in_use(now)
    assert outputs_line(page, run.pod_in_use(now)) == "outputs: none yet"
    ended = run.model_copy(update={"status": RunStatus.failed})
    assert not ended.pod_in_use(now)
    assert outputs_line(page, ended.pod_in_use(now)) == "outputs: none"
    kept = ended.model_copy(update={"keep_alive_until": now + 60})  # its pod stays to bring them home
    assert kept.pod_in_use(now) and not kept.pod_in_use(now + 61)
