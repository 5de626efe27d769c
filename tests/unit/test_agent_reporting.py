"""The agent reports as soon as it has something (no fixed one-second batching), at most ~20 reports a second
under a flood, and slower when the control plane answers that it is busy."""

import itertools
import sys

from tests.fakes.report_sink import ReportSink
from tests.unit.test_agent_buffering import run_agent


class Recorder(ReportSink):
    """When each report came and which lines it carried."""

    def arrivals(self, prefix: str) -> dict[str, float]:
        return {line["text"]: at for at, body in self.reports for line in body.get("logs", [])
                if line["text"].startswith(prefix)}

    def rate(self, start: float, end: float) -> float:
        return sum(1 for at, _ in self.reports if start <= at <= end) / (end - start)


def test_a_line_goes_out_at_once_not_with_a_one_second_batch(tmp_path):
    plane = Recorder(answer={"stop": False})
    code = "import time\nfor i in range(6):\n    print(f'at {time.time()!r}', flush=True)\n    time.sleep(0.3)\n"
    run_agent(plane.url, tmp_path, [sys.executable, "-c", code])
    delays = [arrived - float(text.split()[1]) for text, arrived in plane.arrivals("at ").items()]
    assert len(delays) == 6
    assert max(delays) < 0.25, delays  # was up to a second


def test_a_flood_is_batched_to_about_twenty_reports_a_second(tmp_path):
    plane = Recorder(answer={"stop": False})
    code = "import time\nend = time.time() + 2\ni = 0\nwhile time.time() < end:\n    print(f'line {i}')\n    i += 1\n"
    run_agent(plane.url, tmp_path, [sys.executable, "-c", code])
    lines = plane.arrivals("line ")
    first, last = min(lines.values()), max(lines.values())
    assert len(lines) > 10_000
    assert plane.rate(first, last) <= 25


def test_a_busy_control_plane_slows_the_agent_down(tmp_path):
    plane = Recorder(answer={"stop": False, "min_interval_s": 0.5})
    code = ("import time\nend = time.time() + 2.5\nwhile time.time() < end:\n"
            "    print('tick', flush=True)\n    time.sleep(0.01)\n")
    run_agent(plane.url, tmp_path, [sys.executable, "-c", code])
    times = [at for at, _ in plane.reports]
    gaps = sorted(b - a for a, b in itertools.pairwise(times[1:-2]))  # the last ones drain at the end
    assert len(gaps) >= 2 and gaps[len(gaps) // 2] >= 0.4, gaps
