"""Runs that print what real trainers print, end to end on the local provider (real start script, agent,
control plane and store): a tqdm bar alone gives a loss curve at the bar's steps and a readable log, and each
captured transcript, replayed by a run, is stored as the agent's reading of it says."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.unit.test_agent_transcripts import TRANSCRIPTS, replay

FINAL = {"succeeded", "failed", "lost", "terminated"}
TQDM_TRAIN = """
import time
from tqdm import tqdm
bar = tqdm(range(300), desc="Epoch 1", mininterval=0.05)
for i in bar:
    time.sleep(0.003)
    bar.set_postfix(loss=round(3.0 / (i + 1), 5))
"""
EVAL_BETWEEN_BARS = """
import time
from tqdm import tqdm
step = 0
for epoch in range(2):
    bar = tqdm(range(120), desc=f"Epoch {epoch}")
    for i in bar:
        step += 1
        time.sleep(0.004)
        bar.set_postfix(train_loss=round(1.0 / step, 5))
    tqdm.write(str({'eval_loss': round(0.5 / (epoch + 1), 4), 'epoch': epoch}))
"""
REPLAY = """
import json, sys, time
streams = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
for raw in open(sys.argv[1], encoding="utf-8"):
    stream, text = json.loads(raw)
    streams[stream].write(text.encode())
    streams[stream].flush()
    time.sleep(0.02)  # the trainers wrote at least this far apart
"""


async def stored(plane, run_id: str) -> tuple[list[dict], dict[str, dict[int, float]]]:
    lines = (await plane.http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 5000})).json()["lines"]
    page = (await plane.http.get(f"/api/v1/runs/{run_id}/metrics")).json()
    series = {name: dict(zip(s["steps"], s["values"], strict=True)) for name, s in page["series"].items()}
    start_script = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[podtui\]")
    return [line for line in lines if line["stream"] != "system" and not start_script.match(line["text"])], series


async def launch(plane, command: str, **spec: str) -> str:
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"], "command": command,
                                                    **spec})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_a_run_printing_only_a_tqdm_bar_gets_a_loss_curve_and_a_readable_log(local_plane, tmp_path: Path):
    script = tmp_path / "train.py"
    script.write_text(TQDM_TRAIN)
    run_id = await launch(local_plane, f"{sys.executable} {script}")
    run = await local_plane.wait_status(run_id, FINAL, timeout=90)
    assert run["status"] == "succeeded", run["status_reason"]
    lines, series = await stored(local_plane, run_id)
    bars = [line["text"] for line in lines if line["stream"] == "stderr"]
    assert len(bars) == 1 and bars[0].startswith("Epoch 1: 100%|") and "300/300" in bars[0]
    assert all(len(line["text"]) < 200 for line in lines)
    loss = series["loss"]
    assert 300 in loss and len(loss) >= 5 and set(loss) <= set(range(301))
    # the loss of the step (3 / step), or of a step drawn later at the same counter when a drawing went unread
    assert all(3 / (step + 30) <= value <= 3 / step * 1.005 for step, value in loss.items() if step), loss
    assert run["last_step"] == 300
    assert run["metrics_source"] == "tqdm postfix, step = epoch x steps per epoch + position (epochs from 1)"
    assert run["live"] == []


async def test_evals_written_between_per_epoch_bars_land_at_the_ends_of_their_epochs(local_plane, tmp_path: Path):
    # The loop of issue 28, run for real (real tqdm): each eval on the global step its epoch ended at, the
    # axis the bar gives train_loss, not the bar's own position.
    script = tmp_path / "train.py"
    script.write_text(EVAL_BETWEEN_BARS)
    run_id = await launch(local_plane, f"{sys.executable} {script}")
    run = await local_plane.wait_status(run_id, FINAL, timeout=90)
    assert run["status"] == "succeeded", run["status_reason"]
    _, series = await stored(local_plane, run_id)
    assert series["eval_loss"] == {120: 0.5, 240: 0.25}
    assert series["epoch"] == {120: 0.0, 240: 1.0}
    train = series["train_loss"]
    assert max(train) == 240 and set(train) <= set(range(241)) and len(train) >= 4
    assert all(1 / (step + 30) <= value <= 1 / step * 1.01 for step, value in train.items() if step), train
    assert run["metrics_source"] == ("tqdm postfix, step = epoch x steps per epoch + position (epochs from 0); "
                                     "Python dicts without a step: the step of the bar carrying the loss")


async def test_a_huge_printed_line_is_stored_as_one_line_with_its_head_and_end(local_plane, tmp_path: Path):
    # print("X" * 5_000_000) was stored as 39 cut lines; a 200 KB line lost its end and left an empty line
    script = tmp_path / "print.py"
    script.write_text("print('X' * 5_000_000)\nprint('head' + 'm' * 200_000 + 'end')\nprint('done')\n")
    run_id = await launch(local_plane, f"{sys.executable} {script}")
    run = await local_plane.wait_status(run_id, FINAL, timeout=90)
    assert run["status"] == "succeeded", run["status_reason"]
    lines, _ = await stored(local_plane, run_id)
    texts = [line["text"] for line in lines if line["stream"] == "stdout"]
    assert len(texts) == 3 and texts[2] == "done"
    assert texts[0].startswith("X" * 8000) and texts[0].endswith("X" * 8000) and "…[4867 KiB cut]…" in texts[0]
    assert texts[1].startswith("head" + "m" * 8000) and texts[1].endswith("m" * 8000 + "end")
    assert "…[179 KiB cut]…" in texts[1] and all(len(text) <= 16 * 1024 for text in texts)


async def test_metrics_off_at_launch_reaches_the_pod(local_plane, tmp_path: Path):
    script = tmp_path / "train.py"
    script.write_text(TQDM_TRAIN)
    run_id = await launch(local_plane, f"{sys.executable} {script}", metrics="off")
    run = await local_plane.wait_status(run_id, FINAL, timeout=90)
    assert run["status"] == "succeeded" and run["spec"]["metrics"] == "off"
    lines, series = await stored(local_plane, run_id)
    assert series == {} and len([1 for line in lines if line["stream"] == "stderr"]) == 1
    assert run["metrics_source"] == "output not parsed (PODTUI_METRICS=off)"


async def test_each_transcript_replayed_by_a_run_is_stored_as_read(local_plane, tmp_path: Path):
    replayer = tmp_path / "replay.py"
    replayer.write_text(REPLAY)
    names = sorted(p.stem for p in TRANSCRIPTS.glob("*.jsonl"))
    ids = await asyncio.gather(*(launch(local_plane, f"{sys.executable} {replayer} {TRANSCRIPTS / name}.jsonl")
                                 for name in names))
    for name, run_id in zip(names, ids, strict=True):
        run = await local_plane.wait_status(run_id, FINAL, timeout=120)
        assert run["status"] == "succeeded", (name, run["status_reason"])
        expected = replay(name)
        lines, series = await stored(local_plane, run_id)
        for stream in ("stdout", "stderr"):  # the two pipes interleave as they race; each keeps its order
            got = [line["text"] for line in lines if line["stream"] == stream]
            assert got == [text for s, text in expected.lines if s == stream], (name, stream)
        names_expected = {n for n, _, _ in expected.points}
        assert set(series) == names_expected, name
        for metric in names_expected:
            want = set(expected.series(metric))
            # The agent reads a redrawn bar at most 50 times a second: a drawing may go unread, never invented.
            assert set(series[metric]) <= want and len(series[metric]) >= 0.8 * len(want), (name, metric)
        assert run["metrics_source"] == (expected.reader.explain() or None), name
        if name == "hf_trainer":
            assert series["eval_loss"] == {20: 4.026, 40: 3.399, 60: 3.191}
            # Dicts (stdout) and the bar (stderr) race in two pipes on a loaded machine: the first dicts take the
            # bar's step as read; from the fourth on, their epoch holds them to their own step.
            loss = expected.series("loss")
            assert {step: value for step, value in series["loss"].items() if step > 20} == {
                step: value for step, value in loss.items() if step > 20} and len(series["loss"]) >= 10
        if name.startswith("keras"):
            assert sorted(series["val_loss"]) == [32, 64, 96]
