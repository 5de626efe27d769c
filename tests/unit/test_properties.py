"""Property tests: token checks, metric-line parsing, the vectorized EMA."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from podtui.bootstrap.agent.patterns import parse_metrics
from podtui.chart.smoothing import debiased_ema, debiased_ema_np
from podtui.tokens import hash_token, mask_secrets, new_token, token_matches


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_a_token_matches_only_its_own_hash(a, b):
    assert token_matches(a, hash_token(a))
    if a != b:
        assert not token_matches(b, hash_token(a))


def test_new_tokens_are_long_urlsafe_and_distinct():
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(t) >= 43 and set(t) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
               for t in tokens)


@given(st.lists(st.sampled_from([new_token() for _ in range(3)]), min_size=1, max_size=3), st.text(max_size=40))
def test_masking_hides_every_token_form(tokens, noise):
    text = f"{noise} GET /api/datasets/download?token={tokens[0]}&x=1 Authorization: Bearer {tokens[-1]}"
    masked = mask_secrets(text)
    assert tokens[0] not in masked and tokens[-1] not in masked


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_parsing_never_crashes_and_yields_sane_points(line):
    for name, step, value in parse_metrics(line, {}):
        assert isinstance(name, str) and 0 < len(name) <= 250
        assert isinstance(step, int) and 0 <= step < 2**63
        assert isinstance(value, float)


@given(st.integers(min_value=0, max_value=10**12), st.dictionaries(
    st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(lambda k: k not in ("step", "global_step", "iter",
                                                                                   "iteration", "it")),
    st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=5))
def test_key_value_lines_round_trip(step, values):
    line = f"step={step} " + " ".join(f"{k}={v!r}" for k, v in values.items())
    assert {(n, s): v for n, s, v in parse_metrics(line, {})} == {(k, step): float(repr(v)) for k, v in values.items()}


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=300),
       st.sampled_from([0.0, 0.3, 0.6, 0.9, 0.99]))
def test_vectorized_ema_matches_the_reference(values, weight):
    reference = debiased_ema(values, weight)
    fast = debiased_ema_np(np.asarray(values, dtype=np.float64), weight)
    for r, f in zip(reference, fast, strict=True):
        assert (math.isnan(r) and math.isnan(f)) or r == f or abs(r - f) <= 1e-9 * max(1.0, abs(r))
