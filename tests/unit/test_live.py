"""LiveRuns: lists loaded one after another, and runs the feed brought between them."""

import time

from podtui.live import LiveRuns
from podtui.models import LaunchSpec, Run, RunStatus


def run(status: RunStatus, run_id: str = "r1") -> Run:
    return Run(id=run_id, name="x", provider="local", status=status, dataset_id="d", created_at=time.time(),
               spec=LaunchSpec(dataset="demo", gpu_types=["local"]))


def test_a_later_list_replaces_an_earlier_one_but_not_what_the_feed_brought():
    live = LiveRuns()
    live.load([run(RunStatus.booting), run(RunStatus.booting, "r2")])  # from the store, at start
    live.put(run(RunStatus.failed, "r2"))  # the feed, meanwhile
    live.load([run(RunStatus.training), run(RunStatus.training, "r2")])  # the control plane's list, later
    assert live.get("r1").status == RunStatus.training  # the earlier list's copy was older
    assert live.get("r2").status == RunStatus.failed  # the feed's is newer than a list fetched around it


def test_an_ended_run_whose_pod_brings_its_outputs_home_still_counts_as_billing():
    # Quitting then stopped the control plane the outputs come home to, and the pod waited out its keep-alive.
    from podtui.stored_runs import StoredRun, StoredStatus

    live = LiveRuns()
    home = run(RunStatus.succeeded).model_copy(update={"keep_alive_until": time.time() + 600})
    done = run(RunStatus.succeeded, "r2").model_copy(update={"keep_alive_until": time.time() - 1})
    live.load([home, done])
    assert [r.id for r in live.pods_in_use()] == ["r1"] and live.live() == []  # no uptime grows: no redraw tick
    stored = StoredRun(id="s1", name="x", provider="local", status=StoredStatus("succeeded"), gpu_type=None,
                       gpu_util=None, price_per_hour=None, created_at=0.0, started_at=None, ended_at=None,
                       last_step=None, last_loss=None, keep_alive_until=time.time() + 600)
    assert stored.pod_in_use(time.time()) and not stored.pod_in_use(time.time() + 601)
