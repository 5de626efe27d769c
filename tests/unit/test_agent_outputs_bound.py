"""The agent's periodic outputs pass yields to the final one: once the command ends it starts no new file, and
what it is sending gives up by the keep-alive bound (the final pass waited behind it for up to 10 minutes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

from podtui.bootstrap.agent import outputs as agent


def sender_over(folder: Path, names: list[str]) -> agent.OutputSender:
    for name in names:
        (folder / name).write_text(name)
    pod = SimpleNamespace(output_dir=str(folder), output_prefix="", node=0, signalled=False,
                          note=lambda text: None)
    sender = agent.OutputSender(pod, "http://127.0.0.1:9", "run1", "token")  # type: ignore[arg-type]
    plan = {"files": [{"path": n, "action": "send", "offset": 0} for n in names]}
    sender.call = lambda method, route, query=None, body=b"": (200, plan if route == "offer" else {})
    return sender


def test_a_periodic_pass_starts_no_new_file_once_the_command_ended(tmp_path):
    sender = sender_over(tmp_path, ["a.bin", "b.bin", "c.bin"])
    ended = threading.Event()
    started = []

    def send_file(name, *args):
        started.append(name)
        ended.set()  # the command ends while the first file goes
        return True

    sender.send_file = send_file
    assert sender.sync(False, time.time() + 600, stop=ended) == (1, 2)
    assert started == ["a.bin"]


def test_the_bound_cuts_short_a_pass_that_would_retry_for_ten_minutes(tmp_path):
    sender = sender_over(tmp_path, ["a.bin"])
    sender.call = lambda *args, **kwargs: (_ for _ in ()).throw(OSError("the control plane does not answer"))
    result = []
    passing = threading.Thread(target=lambda: result.append(sender.sync(False, time.time() + 600)))
    t0 = time.monotonic()
    passing.start()
    time.sleep(0.2)
    sender.bound(time.time() + 1.0)  # the command ended: the keep-alive bound is a second away
    passing.join(10)
    assert not passing.is_alive() and result == [(0, 1)]
    assert time.monotonic() - t0 < 5
