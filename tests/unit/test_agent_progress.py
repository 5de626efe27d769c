"""The real agent running a command that draws a real tqdm bar: a loss curve at the bar's steps, one stored
line for the bar, the live row while it is drawn, and the note on how the metrics were read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from podtui.bootstrap.agent.links import PullLink
from podtui.bootstrap.agent.supervisor import Agent
from tests.agent_pyz import agent_pyz
from tests.fakes.report_sink import ReportSink

AGENT = agent_pyz()
TQDM_SCRIPT = """
import sys, time
from tqdm import tqdm
bar = tqdm(range(200), desc="Epoch 1", mininterval=0.05)
for i in bar:
    time.sleep(0.004)
    bar.set_postfix(loss=round(2.0 / (i + 1), 4))
print("trained", flush=True)
"""


class RecordingPlane(ReportSink):
    """Takes every report and keeps what a control plane would store, plus the live rows and the note."""

    def printed(self) -> list[tuple[str, str]]:
        return [self.logged[s] for s in sorted(self.logged) if self.logged[s][0] != "system"]


def run_agent(plane: RecordingPlane, home: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PODTUI_URL": plane.url, "PODTUI_RUN_ID": "r1", "PODTUI_TOKEN": "t",
                "PODTUI_HOME": str(home), "NO_PROXY": "127.0.0.1", "PODTUI_REPORT_INTERVAL_S": "0.2", **env}
    return subprocess.run([sys.executable, str(AGENT), "run", "--", sys.executable, "-c", script], env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_a_live_tqdm_bar_gives_a_loss_curve_and_one_log_line(tmp_path):
    plane = RecordingPlane()
    result = run_agent(plane, tmp_path, TQDM_SCRIPT)
    assert result.returncode == 0, result.stderr
    printed = plane.printed()
    bars = [text for stream, text in printed if stream == "stderr"]
    assert len(bars) == 1 and bars[0].startswith("Epoch 1: 100%|") and "200/200" in bars[0], printed
    assert ("stdout", "trained") in printed and len(printed) == 2
    loss = {step: value for (name, step), value in plane.metrics.items() if name == "loss"}
    assert 200 in loss and loss[200] == pytest.approx(0.01)
    assert len(loss) >= 5 and all(0 <= step <= 200 for step in loss)
    # the first drawing at a counter carries that step's loss (2 / step); when the agent reads a later drawing
    # of the same counter (reads are at most 50 a second), the loss of a step shortly after
    assert all(2 / (step + 30) <= value <= 2 / step * 1.005 for step, value in loss.items() if step), loss
    assert any(rows and "Epoch 1:" in rows[0] for rows in plane.live), plane.live  # drawn live, in place
    assert plane.live[-1] == []  # nothing is being drawn once the command ended
    assert plane.sources[-1] == "tqdm postfix, step = epoch x steps per epoch + position (epochs from 1)"


def test_metrics_off_keeps_the_log_and_reads_no_metric(tmp_path):
    plane = RecordingPlane()
    result = run_agent(plane, tmp_path, TQDM_SCRIPT, PODTUI_METRICS="off")
    assert result.returncode == 0, result.stderr
    assert plane.metrics == {}
    assert len([1 for stream, _ in plane.printed() if stream == "stderr"]) == 1
    assert plane.sources[-1] == "output not parsed (PODTUI_METRICS=off)"


def test_a_reading_error_keeps_the_lines_and_the_stream_flowing(tmp_path, monkeypatch):
    agent = Agent(["true"], env={"PODTUI_HOME": str(tmp_path)}, link=PullLink())

    def broken(*args: object) -> None:
        raise ValueError("a reading bug")

    monkeypatch.setattr(agent, "output", broken)
    read, write = os.pipe()
    os.write(write, b"one\ntwo\n")
    os.close(write)
    agent.pump(os.fdopen(read, "rb"), "stdout")
    texts = [item["text"] for kind, item in agent.outbox.memory if kind == "l"]
    assert texts[1:] == ["one", "two"] and "reading the stdout stream failed" in texts[0]
