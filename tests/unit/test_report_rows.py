"""The report fast path agrees with `models.Report`: whatever it takes, the model takes with the same rows; what it
leaves, the model decides."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from podtui.models import MAX_LOG_LINE, TRUNCATION_MARKER, Report
from podtui.report_rows import ReportBatch, parse_report_json

ANY_JSON = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=5),
                     st.floats(allow_nan=True, allow_infinity=True), st.just([]), st.just({}))


NAMES = st.sampled_from(["loss", "train_loss", "eval_loss", "lr", "x" * 250, "é" * 250, "🔥" * 250])
STEPS = st.integers(0, 2**63 - 1)
VALUES = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**66, 2**66))
TIMES = st.one_of(st.floats(0, 1e11), st.integers(0, 10**11))
POINTS = st.fixed_dictionaries({"name": NAMES, "step": STEPS, "value": VALUES, "ts": TIMES})
LINES = st.fixed_dictionaries({"seq": STEPS, "ts": TIMES, "text": st.text(max_size=20)},
                              optional={"stream": st.sampled_from(["stdout", "stderr", "system"])})
VALID = st.fixed_dictionaries({}, optional={
    "metrics": st.lists(POINTS, max_size=4),
    "logs": st.lists(LINES, max_size=4),
    "status": st.one_of(st.none(), st.sampled_from(["downloading", "training", "succeeded", "failed"])),
    "exit_code": st.one_of(st.none(), st.integers(-255, 255)),
    "error": st.one_of(st.none(), st.text(max_size=10)),
    "stopped": st.one_of(st.none(), st.text(max_size=10)),
    "progress": st.one_of(st.none(), st.fixed_dictionaries({"bytes_done": STEPS, "bytes_total": STEPS})),
    "heartbeat_ts": st.one_of(st.none(), TIMES),
    "live": st.one_of(st.none(), st.lists(st.text(max_size=20), max_size=4)),
    "metrics_source": st.one_of(st.none(), st.text(max_size=20)),
})
"""Reports the model accepts."""

# Values from either side of each limit, and of the other JSON types, by field.
STEP_EDGES = [-1, 2**63, 2**64, 1.0, True, "1", None]
TIME_EDGES = [-0.0, -1, 1e11 + 1, math.inf, -math.inf, math.nan, True, "1", None]
EDGES = {
    "name": ["", "x" * 251, "é" * 251, "🔥" * 251, 1, None, True], "step": STEP_EDGES, "seq": STEP_EDGES,
    "bytes_done": STEP_EDGES, "bytes_total": STEP_EDGES,
    "value": [math.nan, math.inf, -math.inf, "NaN", "Infinity", "-Infinity", "nan", "inf", "-inf", "x", True, None],
    "ts": TIME_EDGES, "heartbeat_ts": TIME_EDGES,
    "text": ["y" * (MAX_LOG_LINE + 1), 1, None], "stream": ["STDOUT", "", None, 1],
    "metrics": [None, {}, "x", [1], [None]], "logs": [None, {}, "x", [1], [None]],
    "status": ["running", "", 1, True], "exit_code": [-256, 256, 1.0, True, "0"],
    "error": ["e" * (64 * 1024 + 1), 1], "stopped": ["s" * 301, 1], "metrics_source": ["m" * 301, 1],
    "live": [["r"] * 5, ["r" * 1001], [1], "x", {}], "progress": [{}, [], 1, "x", {"bytes_done": 1}],
}


@st.composite
def one_edge(draw: st.DrawFn) -> object:
    """A valid report with one spot changed: a value from the edges, a key dropped, or an unknown key added."""
    report = draw(VALID)
    spots = [report] + [x for key in ("metrics", "logs") for x in report.get(key, [])]
    if isinstance(report.get("progress"), dict):
        spots.append(report["progress"])
    spot = draw(st.sampled_from(spots))
    how = draw(st.sampled_from(["edge", "edge", "edge", "drop", "extra"]))
    keys = [k for k in spot if k in EDGES]
    if how == "extra" or not keys:
        spot["extra"] = draw(ANY_JSON)
    elif how == "drop":
        del spot[draw(st.sampled_from(keys))]
    else:
        key = draw(st.sampled_from(keys))
        spot[key] = draw(st.one_of(st.sampled_from(EDGES[key]), ANY_JSON))
    return report


def model_rows(body: bytes) -> ReportBatch | None:
    try:
        return ReportBatch.from_report("run", Report.model_validate_json(body))
    except ValueError:
        return None


def same(a: ReportBatch, b: ReportBatch) -> bool:
    def loss(x: ReportBatch) -> object:
        return x.loss if x.loss is None or not math.isnan(x.loss[1]) else (x.loss[0], "nan")
    return (a.metric_rows, a.log_rows, loss(a), a.status, a.exit_code, a.error, a.progress_json, a.stopped,
            a.live_json, a.metrics_source) == (
        b.metric_rows, b.log_rows, loss(b), b.status, b.exit_code, b.error, b.progress_json, b.stopped,
        b.live_json, b.metrics_source)


@settings(max_examples=1500)
@given(st.one_of(one_edge(), VALID, ANY_JSON))
def test_the_fast_path_takes_nothing_the_model_refuses_and_reads_it_the_same(report):
    body = json.dumps(report).encode()  # NaN and Infinity as literals, as Python's json writes them
    fast = parse_report_json("run", body)
    if fast is not None:
        slow = model_rows(body)
        assert slow is not None, body
        assert same(fast, slow), body


@given(st.lists(st.tuples(st.sampled_from(["loss", "lr"]), st.integers(0, 2**63 - 1),
                          st.floats(allow_nan=False, allow_infinity=False), st.floats(0, 1e11)), max_size=50),
       st.lists(st.tuples(st.integers(0, 2**63 - 1), st.text(max_size=40)), max_size=20))
def test_what_the_agent_sends_takes_the_fast_path(points, lines):
    body = json.dumps({
        "metrics": [{"name": n, "step": s, "value": v, "ts": t} for n, s, v, t in points],
        "logs": [{"seq": s, "ts": 1.7e9, "stream": "stdout", "text": text} for s, text in lines],
        "status": "training", "progress": {"bytes_done": 1, "bytes_total": 2}, "heartbeat_ts": 1.7e9,
    }).encode()
    fast = parse_report_json("run", body)
    assert fast is not None
    slow = model_rows(body)
    assert slow is not None and same(fast, slow)


def test_long_lines_are_truncated_alike_and_nan_takes_the_model_path():
    body = json.dumps({"logs": [{"seq": 0, "ts": 1, "text": "y" * (MAX_LOG_LINE + 10)}]}).encode()
    fast = parse_report_json("run", body)
    assert fast is not None and fast.log_rows[0][4] == "y" * MAX_LOG_LINE + TRUNCATION_MARKER
    assert same(fast, model_rows(body))
    nan = b'{"metrics": [{"name": "loss", "step": 3, "value": NaN, "ts": 1}]}'
    assert parse_report_json("run", nan) is None
    slow = model_rows(nan)
    assert slow is not None and slow.metric_rows == [("run", "loss", 3, None, 1.0)]
    assert slow.loss is not None and math.isnan(slow.loss[1])


def base_report() -> dict:
    return {"metrics": [{"name": "loss", "step": 7, "value": 0.5, "ts": 1.7e9}],
            "logs": [{"seq": 3, "ts": 1.7e9, "stream": "stderr", "text": "hello"}],
            "status": "training", "exit_code": 0, "error": "e", "stopped": "max runtime reached",
            "heartbeat_ts": 1.7e9, "live": ["Epoch 1:  45%|####5     | 45/100"], "metrics_source": "tqdm postfix",
            "progress": {"bytes_done": 1, "bytes_total": 2}}


def spot(report: dict, where: str) -> dict:
    return {"report": report, "point": report["metrics"][0], "line": report["logs"][0],
            "progress": report["progress"]}[where]


EVERY_EDGE = [(where, key, i) for where in ("report", "point", "line", "progress")
              for key in spot(base_report(), where) for i in range(len(EDGES[key]) + 2)]


def test_every_edge_of_every_field_is_refused_or_read_alike():
    for where, key, i in EVERY_EDGE:
        report = base_report()
        target = spot(report, where)
        if i == len(EDGES[key]):
            del target[key]
        elif i == len(EDGES[key]) + 1:
            target["extra_" + key] = 1
        else:
            target[key] = EDGES[key][i]
        body = json.dumps(report).encode()
        fast, slow = parse_report_json("run", body), model_rows(body)
        assert fast is None or (slow is not None and same(fast, slow)), (where, key, i, body)
