"""The agent against a control plane that refuses, then accepts: everything arrives, in order, once."""

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.agent_pyz import agent_pyz
from tests.fakes.report_sink import ReportSink

AGENT = agent_pyz()


FlakyControlPlane = ReportSink


def run_agent(url: str, home: Path, command: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PODTUI_URL": url, "PODTUI_RUN_ID": "r1", "PODTUI_TOKEN": "t",
                "PODTUI_HOME": str(home), "NO_PROXY": "127.0.0.1", **env}
    return subprocess.run([sys.executable, str(AGENT), "run", "--", *command], env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_refused_reports_are_buffered_and_resent_in_order(tmp_path):
    plane = FlakyControlPlane(refuse_for_s=2.5)
    script = "import time\nfor i in range(300):\n    print(f'step={i} loss={1/(i+1):.6f}', flush=True)\n" \
             "    time.sleep(0.005)\n"
    result = run_agent(plane.url, tmp_path, [sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr
    assert plane.refused >= 1
    seqs = sorted(plane.lines)
    assert seqs == list(range(len(seqs)))
    printed = [plane.lines[s] for s in seqs if not plane.lines[s].startswith("20")]  # not the agent's notes
    assert printed == [f"step={i} loss={1 / (i + 1):.6f}" for i in range(300)]
    assert {k for k in plane.metrics if k[0] == "loss"} == {("loss", i) for i in range(300)}
    assert plane.statuses[-1] == "succeeded"


def test_memory_buffer_spills_to_disk_and_nothing_is_lost(tmp_path, monkeypatch):
    plane = FlakyControlPlane(refuse_for_s=3.0)
    n = 30_000  # past the in-memory bound: the oldest go to the spill file first
    script = f"import sys\nfor i in range({n}):\n    sys.stdout.write(f'line {{i}}\\n')\n"
    result = run_agent(plane.url, tmp_path, [sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr
    printed = [plane.lines[s] for s in sorted(plane.lines) if not plane.lines[s].startswith("20")]
    assert printed == [f"line {i}" for i in range(n)]
    assert sorted(plane.lines) == list(range(len(plane.lines)))


def test_failure_reports_exit_code_and_tail(tmp_path):
    plane = FlakyControlPlane(refuse_for_s=0)
    result = run_agent(plane.url, tmp_path, ["bash", "-c", "echo one; echo two >&2; exit 7"])
    assert result.returncode == 7
    assert plane.statuses[-1] == "failed"


def test_unreachable_control_plane_ends_the_pod(tmp_path):
    marker = tmp_path / "terminated"
    result = run_agent("http://127.0.0.1:9", tmp_path, ["sleep", "60"], PODTUI_UNREACHABLE_LIMIT_S="2",
                       PODTUI_TERMINATE_CMD=f"touch {marker}", PODTUI_GRACE_S="2")
    assert result.returncode != 0
    assert marker.exists()


def test_control_plane_stop_answer_stops_the_command(tmp_path):
    plane = FlakyControlPlane(refuse_for_s=0, answer={"stop": True})
    started = time.time()
    result = run_agent(plane.url, tmp_path, ["sleep", "60"], PODTUI_GRACE_S="2")
    assert result.returncode != 0 and time.time() - started < 20


def test_metrics_file_is_read(tmp_path):
    plane = FlakyControlPlane(refuse_for_s=0)
    script = ("import json, os\nf = open(os.environ['PODTUI_METRICS_FILE'], 'a')\n"
              "for i in range(5):\n    f.write(json.dumps({'step': i, 'acc': i / 10}) + '\\n')\nf.close()\n")
    result = run_agent(plane.url, tmp_path, [sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr
    assert {k: v for k, v in plane.metrics.items() if k[0] == "acc"} == {("acc", i): i / 10 for i in range(5)}


def test_a_batch_spilled_while_in_flight_loses_nothing(tmp_path, monkeypatch):
    from podtui.bootstrap.agent import outbox as agent

    monkeypatch.setattr(agent, "MEMORY_ITEMS", 100)
    monkeypatch.setattr(agent, "SPILL_CHUNK", 30)
    monkeypatch.setattr(agent, "MAX_BATCH_ITEMS", 40)
    box = agent.Outbox(str(tmp_path / "spill"))
    for i in range(100):
        box.add("l", {"seq": i, "text": "x"})
    items, token = box.peek()  # 0..39 in flight
    for i in range(100, 102):
        box.add("l", {"seq": i, "text": "x"})  # memory overflows: 0..29 (in flight) move to the spill file
    box.commit(token)
    seen = [item["seq"] for _, item in items]
    while len(box):
        items, token = box.peek()
        seen += [item["seq"] for _, item in items]
        box.commit(token)
    assert set(seen) == set(range(102))  # nothing lost (a spilled in-flight item may be sent twice)


def test_each_printed_line_is_one_stored_line_however_long(tmp_path):
    plane = FlakyControlPlane(refuse_for_s=0)
    script = ("import sys\nprint('X' * 5_000_000)\nprint('head' + 'm' * 200_000 + 'end')\n"
              "print('é' * 20_000, file=sys.stderr)\nprint('last')\n")
    result = run_agent(plane.url, tmp_path, [sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr
    logged = [plane.logged[s] for s in sorted(plane.logged)]
    keep = 8128  # characters kept at each end: 16 KiB in all with the mark between
    assert [text for stream, text in logged if stream == "stdout"] == [
        "X" * keep + "…[4867 KiB cut]…" + "X" * keep,
        "head" + "m" * (keep - 4) + "…[179 KiB cut]…" + "m" * (keep - 3) + "end",
        "last"]
    assert [text for stream, text in logged if stream == "stderr"] == ["é" * keep + "…[7 KiB cut]…" + "é" * keep]
