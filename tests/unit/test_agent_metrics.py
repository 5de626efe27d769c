"""The agent's metric extraction on realistic lines, including lines that must not yield metrics."""

import math

import pytest

from podtui.bootstrap.agent.patterns import parse_metrics


def parse(line, state=None):
    return parse_metrics(line, {} if state is None else state)


def test_key_value_pairs_with_a_step():
    assert parse("step=10 loss=0.53 lr=1e-4") == [("loss", 10, 0.53), ("lr", 10, 1e-4)]


def test_key_colon_value_pairs_with_a_step():
    assert parse("step: 200, train/loss: 1.25e-1, grad_norm: 3.0") == [
        ("train/loss", 200, 0.125), ("grad_norm", 200, 3.0)]


def test_json_line_with_step():
    assert parse('{"step": 5, "loss": 0.25, "eval_loss": 0.3, "tag": "x", "ok": true}') == [
        ("loss", 5, 0.25), ("eval_loss", 5, 0.3)]


def test_json_line_without_step_counts_steps():
    state = {}
    assert parse('{"loss": 1.0}', state) == [("loss", 1, 1.0)]
    assert parse('{"loss": 0.9}', state) == [("loss", 2, 0.9)]


def test_hugging_face_trainer_dicts_count_steps():
    state = {}
    first = parse("{'loss': 0.53, 'learning_rate': 0.0001, 'epoch': 0.5}", state)
    assert first == [("loss", 1, 0.53), ("learning_rate", 1, 0.0001), ("epoch", 1, 0.5)]
    second = parse("{'eval_loss': 0.61, 'eval_runtime': 1.2, 'epoch': 1.0}", state)
    assert [m[1] for m in second] == [2, 2, 2]


def test_hugging_face_dict_with_nan_keeps_the_signal():
    got = parse("{'loss': nan, 'grad_norm': inf, 'epoch': 0.1}")
    assert got[0][0] == "loss" and math.isnan(got[0][2])
    assert got[1] == ("grad_norm", 1, math.inf)


def test_nan_in_key_value_line():
    got = parse("step=3 loss=nan")
    assert got[0][:2] == ("loss", 3) and math.isnan(got[0][2])


@pytest.mark.parametrize("line", [
    " 45%|████▌     | 450/1000 [00:10<00:12, 44.1it/s, loss=0.53]",
    "loss=0.53 lr=0.1",  # no step: ambiguous, not a metric line
    "UserWarning: step 5 of the scheduler was called before optimizer.step()",
    "Epoch 1/10",
    "2024-05-01 12:30:01 INFO training started",
    "time=12:30:01 step=4",
    "",
    "{not json}",
    '{"step": 3}',
    "[1, 2, 3]",
    "step=1.5 loss=2",
])
def test_lines_that_are_not_metrics(line):
    assert parse(line) == []
