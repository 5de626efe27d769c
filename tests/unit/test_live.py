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
