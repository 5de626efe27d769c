"""The NaN guard names the step of the first NaN (it named a later one), and the budget stops a run when the next
check would pass it (a $1.00 budget stopped at $1.47 at a high price)."""

from podtui.models import LaunchSpec, Run, RunStatus
from podtui.server.guardrails import Limits, stop_reason
from tests.e2e.test_guardrails import close_planes, ended, launch, plane_with  # noqa: F401 (a fixture)


async def test_the_nan_guard_names_the_first_nan_step(tmp_path, close_planes):  # noqa: F811
    plane = await plane_with(tmp_path)
    close_planes.append(plane)
    run_id = await launch(plane, "echo step=1 loss=0.5; echo step=2 loss=nan; echo step=3 loss=nan; "
                                 "echo step=4 loss=inf; sleep 60")
    run = await ended(plane, run_id)
    assert run["status"] == "terminated"
    assert "loss became nan at step 2" in run["status_reason"], run["status_reason"]


def test_the_budget_stops_before_the_next_check_would_pass_it():
    limits = Limits(300, 1800, 1800, True, None, 0.8, check_every_s=5.0)
    run = Run(id="r", name="r", provider="runpod", status=RunStatus.training, dataset_id="d", created_at=0,
              started_at=0, price_per_hour=360.0, last_heartbeat=6, last_activity=6,  # 10 cents a second
              spec=LaunchSpec(dataset="d", gpu_types=["x"], budget_usd=1.0))
    assert stop_reason(run, limits, 4.0) is None  # $0.40 now, $0.90 at the next check
    said = stop_reason(run, limits, 6.0)  # $0.60 now, $1.10 at the next check
    assert said is not None and said.startswith("budget of $1.00 reached ($0.60 spent; the next check would pass")
    cheap = run.model_copy(update={"price_per_hour": 0.5})
    assert stop_reason(cheap, limits, 6.0) is None
