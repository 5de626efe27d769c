"""The agent's reading of output, held to what real trainers printed (tests/fixtures/transcripts, made by
scripts/capture_transcripts.py with the versions in versions.json): which lines are stored, which metrics at
which steps, and how the run explains it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from podtui.bootstrap.agent.metrics import MetricReader
from podtui.bootstrap.agent.terminal import Output

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"


class Replay:
    """The agent's reading path without its threads: chunks in, log lines and metric points out."""

    def __init__(self, mode: str = "auto", ranks: str = "0") -> None:
        self.outputs = {"stdout": Output(), "stderr": Output()}
        self.reader = MetricReader(mode, ranks)
        self.lines: list[tuple[str, str]] = []
        self.points: list[tuple[str, int, float]] = []
        self.now = 0.0

    def take(self, stream: str) -> None:
        lines, states = self.outputs[stream].take()
        for text, content, rank, progress in lines:
            self.lines.append((stream, text))
            self.points += self.reader.line(content, rank, stream, progress, self.now)
        for text, rank, key, after_clear in states:
            self.points += self.reader.state_of(text, key, rank, after_clear, self.now)
        self.points += self.reader.overdue(self.now)

    def feed(self, stream: str, data: str) -> None:
        self.now += 0.01
        self.outputs[stream].feed(data.encode(), self.now)
        self.take(stream)

    def close(self) -> Replay:
        for stream, out in self.outputs.items():
            out.close(self.now)
            self.take(stream)
        self.points += self.reader.overdue(self.now, 0.0)
        return self

    def series(self, name: str) -> dict[int, float]:
        """name's points as the store keeps them: the first value at each step."""
        out: dict[int, float] = {}
        for n, step, value in self.points:
            if n == name:
                out.setdefault(step, value)
        return out


def chunks(name: str) -> list[tuple[str, str]]:
    with open(TRANSCRIPTS / f"{name}.jsonl", encoding="utf-8") as f:
        return [tuple(json.loads(line)) for line in f]  # type: ignore[misc]


def replay(name: str, mode: str = "auto", ranks: str = "0") -> Replay:
    run = Replay(mode, ranks)
    for stream, data in chunks(name):
        run.feed(stream, data)
    return run.close()


def test_versions_name_the_libraries_that_printed_the_transcripts():
    versions = json.loads((TRANSCRIPTS / "versions.json").read_text())
    assert {"tqdm", "torch", "lightning", "transformers", "keras"} <= set(versions)


def test_tqdm_postfix_gives_a_loss_curve_at_the_bar_counter_and_one_log_line():
    run = replay("tqdm_postfix")
    # tqdm shows the counter it last synced (every 10 steps here) beside the newest postfix: the first drawing
    # at a counter is that step's loss (the script's loss is 2 / step).
    loss = run.series("loss")
    assert sorted(loss) == list(range(0, 201, 10))
    assert all(loss[step] == pytest.approx(2 / step, rel=3e-3) for step in loss if step)
    assert run.series("lr") == {0: 1e-4, 200: 1e-4}  # a value that never changes: where it appeared and at the end
    bars = [text for stream, text in run.lines if stream == "stderr"]
    assert bars == ["100%|██████████| 200/200 [00:02<00:00, 94.65it/s, loss=0.01, lr=0.0001]"]
    assert ("stdout", "done") in run.lines and len(run.lines) == 2
    assert run.reader.explain() == "tqdm postfix, step from the bar's counter"


def test_tqdm_bars_per_epoch_give_global_steps_and_one_line_per_bar():
    run = replay("tqdm_epochs")
    loss = run.series("loss")
    assert sorted(loss) == list(range(0, 151, 10))
    assert loss[60] == pytest.approx(1 / 60, rel=1e-2) and loss[150] == pytest.approx(1 / 150, rel=1e-2)
    bars = [text for stream, text in run.lines if stream == "stderr"]
    assert [b.split(":")[0] for b in bars] == ["Epoch 1", "Epoch 2", "Epoch 3"]
    assert len(run.lines) == 6
    assert "epoch x steps per epoch + position (epochs from 1)" in run.reader.explain()


def test_lightning_bar_gives_global_steps_and_validation_loss_where_it_appeared():
    run = replay("lightning")
    train = run.series("train_loss")
    # 3 epochs x 20 batches: epoch x 20 + position; a step whose loss shows as the step before's is not new
    assert set(train) <= set(range(1, 61)) and len(train) >= 55 and {1, 20, 21, 40, 41, 60} <= set(train)
    assert train[1] == 6.94 and train[2] == 5.7 and train[3] == 2.99  # the value Lightning drew with its step
    assert run.series("val_loss") == {20: 0.0918, 40: 0.00302, 60: 0.000114}
    bars = [text for _, text in run.lines if "it/s" in text]
    assert bars == ["Epoch 2: 100%|██████████| 20/20 [00:00<00:00, 665.60it/s, train_loss=0.000548, "
                    "val_loss=0.000114]"]
    assert len(run.lines) == 18  # the model summary, warnings, and the bar once (validation bars clear)


def test_lightning_rich_bar_prints_only_its_last_state_to_a_pipe_and_gives_no_metrics():
    run = replay("lightning_rich")
    assert run.points == []
    assert any(text.startswith("Epoch 2/2") for _, text in run.lines)


@pytest.mark.parametrize("name", ["keras_pipe", "keras_tty"])
def test_keras_progbar_backspaces_and_colours_give_global_steps(name):
    run = replay(name)
    stdout = [text for stream, text in run.lines if stream == "stdout"]
    assert stdout[0::2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all(line.startswith("32/32 ━━━━━━━━━━━━━━━━━━━━ ") and "\x1b" not in line and "\b" not in line
               for line in stdout[1::2])
    assert len(stdout) == 6
    assert sorted(run.series("val_loss")) == [32, 64, 96]  # end of each epoch: epoch x 32
    loss = run.series("loss")
    assert {32, 64, 96} <= set(loss) and max(loss) == 96
    assert "Keras progress bar, step = (epoch - 1) x steps per epoch + position" in run.reader.explain()


def test_keras_end_of_epoch_values_are_the_ones_printed():
    run = replay("keras_pipe")
    assert run.series("val_loss") == {32: 0.6735, 64: 0.6233, 96: 0.5817}
    assert run.series("loss")[96] == 0.6128


def hf_expected(run: Replay) -> None:
    assert sorted(run.series("loss")) == list(range(5, 61, 5))  # logging_steps=5, 60 steps
    assert run.series("loss")[5] == 7.723 and run.series("loss")[60] == 3.966
    assert run.series("eval_loss") == {20: 4.026, 40: 3.399, 60: 3.191}  # each epoch's end: 20 steps each
    assert run.series("train_loss") == {60: 5.897}
    assert run.series("epoch")[20] == 1.0
    assert run.reader.explain() == "Hugging Face Trainer dicts, step from the trainer's progress bar"


def test_trainer_dicts_land_on_the_trainer_step_beside_eval_loss():
    run = replay("hf_trainer")
    hf_expected(run)
    assert len([1 for stream, _ in run.lines if stream == "stdout"]) == 16
    assert [text for stream, text in run.lines if stream == "stderr"] == [
        "100%|██████████| 60/60 [00:00<00:00, 764.39it/s]"]


def test_trainer_dicts_keep_their_step_when_the_two_streams_race():
    # The dict (stdout) and the bar drawn again beside it (stderr) race in two pipes: read each dict after
    # the stderr chunk that follows it.
    run = Replay()
    held: list[str] = []
    for stream, data in chunks("hf_trainer"):
        if stream == "stdout":
            held.append(data)
            continue
        run.feed("stderr", data)
        for text in held:
            run.feed("stdout", text)
        held = []
    for text in held:
        run.feed("stdout", text)
    hf_expected(run.close())


@pytest.mark.parametrize("moved", [-3, -2, 2, 3])
def test_a_trainer_dict_read_apart_from_its_bar_keeps_its_step_by_its_epoch(moved):
    # A busy pod reads one pipe a few chunks ahead of the other: a dict then sits beside another drawing of the
    # bar. Once three dicts agree on the steps per epoch, each later one is held to epoch x steps per epoch.
    in_order = replay("hf_trainer")
    order = chunks("hf_trainer")
    stdout_at = [i for i, (stream, _) in enumerate(order) if stream == "stdout"]
    for i in stdout_at[4:]:  # the first dicts teach the steps per epoch: before them, the bar alone places
        moved_order = order[:i] + order[i + 1:]
        moved_order.insert(max(0, i + moved), order[i])
        run = Replay()
        for stream, data in moved_order:
            run.feed(stream, data)
        run.close()
        for name in ("loss", "eval_loss", "learning_rate"):
            assert run.series(name) == in_order.series(name), (i, moved, name)


def test_trainer_dicts_without_a_bar_count_lines_as_before():
    run = Replay()
    for stream, data in chunks("hf_trainer"):
        if stream == "stdout":
            run.feed(stream, data)
    run.close()
    assert sorted(run.series("loss")) == [1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14]
    assert "step counted by line (no trainer progress bar seen)" in run.reader.explain()


def test_trainer_dicts_after_a_bar_that_is_not_the_trainers_count_lines():
    run = Replay()
    run.feed("stderr", "\rMap: 100%|██████████| 1000/1000 [00:00<00:00, 5000.00 examples/s]\n")
    run.now += 10
    run.feed("stdout", "{'loss': '0.5', 'epoch': '0.1'}\n{'loss': nan, 'epoch': 0.2}\n")
    run.now += 3
    run.take("stdout")
    assert run.series("loss")[1] == 0.5 and math.isnan(run.series("loss")[2])
    assert "step counted by line (no trainer progress bar seen)" in run.reader.explain()


def test_launcher_rank_prefixes_one_bar_line_per_rank_and_rank_0_metrics():
    run = replay("torchrun_ranks")
    bars = [text for stream, text in run.lines if stream == "stderr" and text]
    assert bars == ["[default1]:Epoch 0: 100%|██████████| 30/30 [00:00<00:00, 49.03it/s, loss=0.0667]",
                    "[default0]:Epoch 0: 100%|██████████| 30/30 [00:00<00:00, 48.96it/s, loss=0.0333]"]
    assert "[default1]:step=10 loss=0.2000" in [text for _, text in run.lines]
    assert {name for name, _, _ in run.points} == {"loss"}
    assert run.series("loss")[30] == 0.0333  # rank 0's (loss = 1 / step); rank 1's is twice that


def test_all_ranks_when_asked_named_by_rank():
    run = replay("torchrun_ranks", ranks="all")
    assert run.series("rank1/loss")[30] == 0.0667 and run.series("loss")[30] == 0.0333


@pytest.mark.parametrize("name", ["tqdm_postfix", "hf_trainer", "keras_pipe", "lightning"])
def test_metrics_off_reads_nothing_and_the_log_is_the_same(name):
    on, off = replay(name), replay(name, mode="off")
    assert off.points == [] and off.lines == on.lines
    assert off.reader.explain() == "output not parsed (PODTUI_METRICS=off)"


def test_metrics_json_reads_json_lines_only():
    run = Replay("json")
    run.feed("stdout", '{"step": 3, "loss": 0.5}\nstep=4 loss=0.4\n')
    run.feed("stderr", "\r 10%|█ | 10/100 [00:01<00:09, 10.0it/s, loss=0.3]")
    run.feed("stdout", "{'loss': 0.2, 'epoch': 0.1}\n")
    assert run.close().points == [("loss", 3, 0.5)]
    assert run.reader.explain() == "JSON lines, step from their step field"


@pytest.mark.parametrize("name", ["tqdm_postfix", "hf_trainer", "keras_tty", "torchrun_ranks"])
def test_any_chunking_stores_the_same_lines(name):
    # A pipe hands the agent whatever the kernel has: split every chunk into 7-byte pieces, UTF-8 and escape
    # sequences cut in the middle.
    whole = replay(name)
    run = Replay()
    for stream, data in chunks(name):
        raw = data.encode()
        for i in range(0, len(raw), 7):
            run.now += 0.001
            run.outputs[stream].feed(raw[i:i + 7], run.now)
            run.take(stream)
    run.close()
    assert run.lines == whole.lines


def test_a_finished_bar_line_counts_even_when_its_values_did_not_change():
    run = Replay()
    run.feed("stdout", "Epoch 1/2\n")
    run.feed("stdout", "\r30/32 ━━━━━━━━━━━━━━━━━━ 0s 3ms/step - loss: 0.7285")
    run.feed("stdout", "\b" * 60 + "\r32/32 ━━━━━━━━━━━━━━━━━━━━ 0s 3ms/step - loss: 0.7285 - val_loss: 0.6\n")
    assert run.close().series("loss") == {30: 0.7285, 32: 0.7285}


# -- metrics printed between progress bars: on the loss's global step, never a bar's own position -----------

def test_eval_dicts_written_after_each_epochs_bar_land_at_the_end_of_their_epoch():
    # The loop: one bar per epoch (desc "Epoch {epoch}", train_loss in its postfix), then
    # tqdm.write(str({'eval_loss': ..., 'epoch': ...})): 2 epochs of 120 steps.
    run = replay("tqdm_eval")
    train = run.series("train_loss")
    assert min(train) == 0 and max(train) == 240 and {120, 240} <= set(train)
    assert run.series("eval_loss") == {120: 0.5, 240: 0.25}
    assert run.series("epoch") == {120: 0.0, 240: 1.0}
    assert run.reader.explain() == ("tqdm postfix, step = epoch x steps per epoch + position (epochs from 0); "
                                    "Python dicts without a step: the step of the bar carrying the loss")


def test_eval_dicts_read_before_the_bars_last_drawing_still_land_at_the_end_of_their_epoch():
    # Two pipes race: read each dict before the stderr chunks that came just before it (the bar's last
    # drawing, and the next epoch's first).
    items = chunks("tqdm_eval")
    for i, (stream, _) in enumerate(items):
        if stream == "stdout" and i >= 2 and items[i - 1][0] == items[i - 2][0] == "stderr":
            items[i - 2:i + 1] = [items[i], items[i - 2], items[i - 1]]
    assert items != chunks("tqdm_eval")
    run = Replay()
    for stream, data in items:
        run.feed(stream, data)
    assert run.close().series("eval_loss") == {120: 0.5, 240: 0.25}


def test_trainer_style_dicts_mid_epoch_and_between_bars_share_the_loss_axis():
    run = replay("tqdm_eval_hf")
    # 3 epochs x 40: a dict written beside the bar at step 20 of each epoch, one printed after each bar
    assert run.series("learning_rate") == {20: 0.001, 60: 0.001, 100: 0.001}
    assert run.series("eval_loss") == {40: 0.5, 80: 0.25, 120: 0.1667}
    assert run.series("epoch") == {20: 0.5, 40: 1.0, 60: 1.5, 80: 2.0, 100: 2.5, 120: 3.0}
    # the dict's own loss (1 / step) at the step the bar drew the same value
    loss = run.series("loss")
    assert max(loss) == 120 and all(loss[step] == pytest.approx(1 / step, rel=0.2) for step in (20, 60, 100))


def test_keras_style_epoch_lines_and_json_lines_without_a_step_land_at_the_end_of_their_epoch():
    run = replay("tqdm_eval_lines")
    assert run.series("val_loss") == {60: 0.5, 120: 0.25}
    assert run.series("val_accuracy") == {60: 0.7, 120: 0.8}
    assert run.series("val_f1") == {60: 0.6, 120: 0.7}
    assert max(run.series("loss")) == 120
    explained = run.reader.explain()
    assert "key=value lines without a step: the step of the bar carrying the loss" in explained
    assert "JSON lines without a step: the step of the bar carrying the loss" in explained


def test_a_bar_cleared_before_its_last_step_was_drawn_puts_the_eval_at_its_epochs_end():
    # leave=False and a 0.3 s redraw interval: the bars' last drawings are at 74/120 and 73/120
    run = replay("tqdm_eval_unfinished")
    assert sorted(run.series("train_loss")) == [74, 193]
    assert run.series("eval_loss") == {120: 0.5, 240: 0.25}
    assert "the end of the loss bar's epoch (its last step not drawn)" in run.reader.explain()


def test_a_callback_dict_between_keras_epochs_lands_at_the_end_of_its_epoch():
    # The captured Keras run, with a dict printed after each epoch's last line (as a callback would).
    run = Replay()
    for stream, data in chunks("keras_pipe"):
        run.feed(stream, data)
        if stream == "stdout" and "val_loss" in data and data.endswith("\n"):
            run.feed("stdout", "{'lr': 0.001, 'epoch': 1}\n")
    run.close()
    assert run.series("lr") == {32: 0.001, 64: 0.001, 96: 0.001}
    assert sorted(run.series("val_loss")) == [32, 64, 96]


def bar(epoch: int, n: int, loss: float) -> str:
    return f"\rEpoch {epoch}:  {n}%|█         | {n}/100 [00:01<00:09, 10.00it/s, loss={loss}]"


def test_a_line_with_its_own_step_keeps_it():
    run = Replay()
    run.feed("stderr", bar(1, 100, 0.5) + "\n" + bar(2, 0, 0.5))
    run.feed("stdout", "{'eval_loss': 0.4, 'step': 7}\n{\"global_step\": 8, \"val\": 1.5}\n"
                       "iteration=9 acc=0.9 top5=0.99\n")
    run.feed("stderr", bar(2, 10, 0.3))
    run.close()
    assert run.series("eval_loss") == {7: 0.4} and run.series("val") == {8: 1.5}
    assert run.series("acc") == {9: 0.9} and run.series("loss") == {100: 0.5, 110: 0.3}


def test_a_line_printed_mid_epoch_keeps_the_step_drawn_then_however_slow_the_bar():
    run = Replay()
    run.feed("stderr", bar(1, 10, 0.5))
    run.feed("stdout", "{'grad_norm': 2.0}\nlr=0.001 wd=0.1\n")
    run.now += 8  # a slow step: the bar moves on only now
    run.feed("stderr", bar(1, 11, 0.4))
    run.now += 30
    run.feed("stdout", '{"grad_norm": 1.0}\n')  # read mid-bar, and the bar never drawn again
    run.close()
    assert run.series("grad_norm") == {10: 2.0, 11: 1.0}
    assert run.series("lr") == {10: 0.001}


def test_a_line_between_a_bar_and_the_next_epochs_lands_at_the_first_ones_end():
    # the bar's last drawing was at 90 of 100 (throttled), then the next epoch's bar: the line came between
    run = Replay()
    run.feed("stderr", bar(1, 90, 0.5))
    run.feed("stdout", "{'eval_loss': 0.4}\n")
    run.feed("stderr", "\n" + bar(2, 0, 0.45))
    run.close()
    assert run.series("eval_loss") == {100: 0.4}


def test_a_bar_without_a_total_that_carries_the_loss_is_the_axis_too():
    run = Replay()
    run.feed("stderr", "\r500it [00:05, 100.00it/s, loss=0.3]")
    run.feed("stdout", "{'eval_loss': 0.25}\n")
    run.feed("stderr", "\r510it [00:05, 100.00it/s, loss=0.29]")
    run.close()
    assert run.series("eval_loss") == {500: 0.25} and run.series("loss") == {500: 0.3, 510: 0.29}


def test_json_lines_beside_a_bar_without_metrics_are_still_counted_by_line():
    # the JSON lines are the loss here: one a step, more than the bar draws; each keeps a point of its own
    run = Replay()
    run.feed("stderr", "\r 10%|█ | 10/100 [00:01<00:09, 10.0it/s]")
    run.feed("stdout", "".join(f'{{"loss": {1 / i}}}\n' for i in range(1, 6)))
    run.close()
    assert sorted(run.series("loss")) == [1, 2, 3, 4, 5]
    assert run.reader.explain() == "JSON lines, step counted by line"


@pytest.mark.parametrize("size", [1, 7, 64])
@pytest.mark.parametrize(("name", "metrics"), [("hf_trainer", ("loss", "eval_loss")),
                                                ("tqdm_eval", ("eval_loss", "epoch")),
                                                ("tqdm_eval_hf", ("eval_loss", "learning_rate")),
                                                ("tqdm_eval_lines", ("val_loss", "val_f1"))])
def test_lines_without_a_step_land_alike_however_the_reads_cut_the_bars(name, metrics, size):
    # A read that ends inside a drawing made after a clear must not lose the clear: the rest of it is the
    # drawing that holds the step.
    whole = replay(name)
    run = Replay()
    for stream, data in chunks(name):
        raw = data.encode()
        for i in range(0, len(raw), size):
            run.now += 0.001
            run.outputs[stream].feed(raw[i:i + size], run.now)
            run.take(stream)
    run.close()
    for metric in metrics:
        assert run.series(metric) == whole.series(metric), metric


def test_a_flood_of_lines_at_one_drawing_waits_bounded_and_keeps_every_point():
    run = Replay()
    run.feed("stderr", bar(1, 10, 0.5))
    run.feed("stdout", "".join(f"{{'grad_norm_{i}': {i}}}\n" for i in range(3000)))
    assert len(run.reader.pending) <= 2000
    run.feed("stderr", bar(1, 11, 0.4))
    run.close()
    got = {name: steps for name in (f"grad_norm_{i}" for i in range(3000)) if (steps := run.series(name))}
    assert len(got) == 3000 and all(steps == {10: float(name[10:])} for name, steps in got.items())
