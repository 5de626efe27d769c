"""The link to an attached control plane: since when it is down, and the backoff between tries."""

import time

from podtui.plane_link import RETRY_MAX_S, PlaneLink


def test_backoff_doubles_to_its_cap_and_resets_when_it_answers():
    link = PlaneLink("http://cp:8765")
    assert link.retry_delay() == 0.5
    delays = []
    for _ in range(8):
        link.failed(1000.0)
        delays.append(link.retry_delay())
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 8.0] and delays[-1] == RETRY_MAX_S
    assert link.answered() and link.reachable and link.retry_delay() == 0.5


def test_down_since_the_feed_dropped_not_since_the_failed_retry():
    link = PlaneLink("http://cp:8765")
    link.dropped(1000.0)
    assert link.reachable  # a restart reconnects at once: nothing said yet
    assert link.failed(1003.0) is True and link.down_since == 1000.0
    assert link.failed(1010.0) is False  # said once
    said = link.describe()
    assert "unreachable since " + time.strftime("%H:%M:%S", time.localtime(1000.0)) in said and "http://cp:8765" in said
    assert "retrying" in said
