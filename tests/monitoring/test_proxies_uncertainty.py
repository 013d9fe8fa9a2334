"""Uncertainty proxies: ragged probability vectors, normalised and binary entropies, and the shift readings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditgate.monitoring.proxies.uncertainty import (
    CONFIDENCE_KS_CAP,
    ENTROPY_SHIFT_CAP,
    ENTROPY_SHIFT_TRIGGER,
    decision_entropy,
    prediction_entropy,
    probability_matrix,
    uncertainty_proxies,
)

RAGGED = [[0.5, 0.5], [1.0], [0.2, 0.3, 0.5], [0.9, 0.1]]

# -- probability_matrix ------------------------------------------------------------------------------------


def test_ragged_zero_padded_and_nan_padded_inputs_agree() -> None:
    matrix, mask = probability_matrix(RAGGED)
    expected = [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.9, 0.1, 0.0]]
    assert matrix.tolist() == expected
    assert mask.sum(axis=1).tolist() == [2, 1, 3, 2]

    zero_padded = np.array(expected)
    by_count = probability_matrix(zero_padded, n_actions=[2, 1, 3, 2])
    nan_padded = np.where(mask, zero_padded, np.nan)
    by_nan = probability_matrix(nan_padded)
    for other_matrix, other_mask in (by_count, by_nan):
        assert other_matrix.tolist() == expected
        assert other_mask.tolist() == mask.tolist()


def test_entries_past_a_rows_action_count_are_ignored_whatever_they_hold() -> None:
    matrix, mask = probability_matrix(np.array([[1.0, np.nan, 7.0]]), n_actions=[1])
    assert matrix.tolist() == [[1.0, 0.0, 0.0]] and mask.tolist() == [[True, False, False]]


def test_no_decisions_give_an_empty_matrix() -> None:
    matrix, mask = probability_matrix([])
    assert matrix.shape == (0, 0) and mask.shape == (0, 0)
    assert decision_entropy([]).tolist() == []


@pytest.mark.parametrize(
    ("probabilities", "n_actions", "message"),
    [
        ([[0.5, 0.4]], None, "sum to 1"),
        ([[1.2, -0.2]], None, "non-negative"),
        ([[0.5, np.nan, 0.5]], None, "finite"),
        ([[1.0], []], None, "at least one action"),
        (np.array([[np.nan, np.nan]]), None, "at least one action"),
        ([[1.0]], [1], "n_actions is for a padded 2-d array"),
        (np.array([[1.0, 0.0]]), [1, 1], "one per row"),
        (np.array([[1.0, 0.0]]), [3], r"n_actions must lie in \[1, 2\]"),
        (np.array([[1.0, 0.0]]), [1.0], "integers"),
        ([[[0.5, 0.5]]], None, "1-d"),
        (0.5, None, "sequence of vectors or a 2-d array"),
        ("ab", None, "sequence of vectors or a 2-d array"),
    ],
)
def test_probability_matrix_rejects_bad_input(probabilities: object, n_actions: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        probability_matrix(probabilities, n_actions)


# -- entropies ---------------------------------------------------------------------------------------------


def test_decision_entropy_of_hand_computed_vectors() -> None:
    h = decision_entropy([[0.5, 0.5], [1.0], [1.0, 0.0, 0.0], [0.9, 0.1], [0.5, 0.25, 0.25]])
    expected_binary = (0.9 * math.log(1 / 0.9) + 0.1 * math.log(1 / 0.1)) / math.log(2)
    expected_three = (0.5 * math.log(2) + 0.5 * math.log(4)) / math.log(3)
    np.testing.assert_allclose(h, [1.0, 0.0, 0.0, expected_binary, expected_three], atol=1e-12)
    assert h[1] == 0.0 and not math.copysign(1.0, h[2]) < 0  # a certain choice is +0.0, not -0.0


@pytest.mark.parametrize("k", [2, 3, 5, 17])
def test_uniform_vectors_have_normalised_entropy_one_whatever_their_size(k: int) -> None:
    assert decision_entropy([[1.0 / k] * k]).tolist() == pytest.approx([1.0])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=8).filter(lambda w: sum(w) > 1e-3),
        min_size=1,
        max_size=20,
    )
)
def test_decision_entropy_is_in_the_unit_interval_and_ignores_the_order_of_actions(weights: list) -> None:
    vectors = [np.asarray(w) / np.sum(w) for w in weights]
    h = decision_entropy(vectors)
    assert np.all((h >= 0.0) & (h <= 1.0))
    np.testing.assert_allclose(decision_entropy([v[::-1] for v in vectors]), h, atol=1e-12)


def test_prediction_entropy_in_bits() -> None:
    b = prediction_entropy([0.5, 0.0, 1.0, 0.9, 0.1])
    binary = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    np.testing.assert_allclose(b, [1.0, 0.0, 0.0, binary, binary], atol=1e-12)


@pytest.mark.parametrize("bad", [[1.1], [-0.1], [np.nan], [[0.5]]])
def test_prediction_entropy_rejects_non_probabilities(bad: list) -> None:
    with pytest.raises(ValueError, match="predictions"):
        prediction_entropy(bad)


# -- proxies -----------------------------------------------------------------------------------------------


def test_proxies_on_a_hand_built_shift() -> None:
    # Half of the decisions go from (0.9, 0.1) to uniform; predictions from 0.9 to 0.5 for a quarter of them.
    ref = [[0.9, 0.1]] * 1000 + [[0.5, 0.5]] * 1000
    cur = [[0.5, 0.5]] * 2000
    ref_pred, cur_pred = [0.9] * 2000, [0.9] * 1500 + [0.5] * 500
    entropy, prediction, confidence = uncertainty_proxies(ref, cur, ref_pred, cur_pred)

    h09 = (0.9 * math.log(1 / 0.9) + 0.1 * math.log(1 / 0.1)) / math.log(2)
    assert entropy.name == "decision_entropy_shift" and entropy.category == "uncertainty"
    assert entropy.statistic == pytest.approx(1.0 - (h09 + 1.0) / 2.0, abs=1e-12)
    assert entropy.detail["reference_mean"] == pytest.approx((h09 + 1.0) / 2.0)
    assert entropy.detail["current_mean"] == pytest.approx(1.0)
    assert entropy.status == "alert" and entropy.covers == ("reliability",)
    assert entropy.normalised == pytest.approx(max(0.0, 1.0 - entropy.statistic / ENTROPY_SHIFT_CAP))

    b09 = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    assert prediction.name == "prediction_entropy_shift"
    assert prediction.statistic == pytest.approx(0.75 * b09 + 0.25 - b09, abs=1e-12)
    assert prediction.status == "alert"

    # Confidence: half at 0.9 and half at 0.5 -> all at 0.5; KS = 1 - 1/2.
    assert confidence.name == "confidence_drift"
    assert confidence.statistic == 0.5 and confidence.status == "alert"
    assert confidence.covers == ("reliability", "representativeness")
    assert confidence.normalised == pytest.approx(max(0.0, 1.0 - 0.5 / CONFIDENCE_KS_CAP))
    json.dumps([r.to_dict() for r in (entropy, prediction, confidence)])


def test_the_shift_counts_in_both_directions() -> None:
    sure, unsure = [[0.9, 0.1]] * 1000, [[0.5, 0.5]] * 1000
    up = uncertainty_proxies(sure, unsure, None, None)[0].statistic
    down = uncertainty_proxies(unsure, sure, None, None)[0].statistic
    assert up == pytest.approx(down) and up > ENTROPY_SHIFT_TRIGGER


def test_identical_windows_read_zero_and_ok() -> None:
    rng = np.random.default_rng(0)
    probs = [v / v.sum() for v in rng.random((1500, 4))]
    preds = rng.random(1500)
    readings = uncertainty_proxies(probs, probs, preds, preds)
    assert [(r.status, r.statistic) for r in readings] == [("ok", 0.0)] * 3


def test_padded_inputs_give_the_same_readings_as_ragged_ones() -> None:
    rng = np.random.default_rng(2)
    k = rng.integers(1, 5, 1200)
    ragged = [rng.dirichlet(np.ones(n)) for n in k]
    padded = np.zeros((k.size, 4))
    for i, v in enumerate(ragged):
        padded[i, : v.size] = v
    other = [rng.dirichlet(np.ones(n) * 0.5) for n in k]
    a = uncertainty_proxies(ragged, other, None, None)
    b = uncertainty_proxies(padded, other, None, None, reference_n_actions=k)
    assert a[0].statistic > 0.0 and a[2].statistic > 0.0
    assert (b[0].statistic, b[2].statistic) == pytest.approx((a[0].statistic, a[2].statistic), abs=1e-12)


def test_without_predictions_the_prediction_reading_is_unavailable() -> None:
    probs = [[0.5, 0.5]] * 1000
    readings = uncertainty_proxies(probs, probs, None, [0.5] * 1000)
    assert [r.status for r in readings] == ["ok", "unavailable", "ok"]
    assert readings[1].detail == {"reason": "the oracle gives no predicted probabilities"}


def test_too_few_decisions_or_predictions_are_unavailable_with_the_reason() -> None:
    probs = [[0.5, 0.5]] * 1000
    readings = uncertainty_proxies(probs, probs[:10], [0.5] * 999, [0.5] * 1000)
    assert [r.status for r in readings] == ["unavailable"] * 3
    assert readings[0].detail["reason"] == "current window has 10 decisions, fewer than the 1000 needed"
    assert readings[2].detail["reason"] == readings[0].detail["reason"]
    assert readings[1].detail["reason"] == "reference window has 999 predictions, fewer than the 1000 needed"

    empty = uncertainty_proxies([], [], [], [])
    assert all(r.status == "unavailable" and math.isnan(r.statistic) for r in empty)


def test_min_rows_is_configurable_and_validated() -> None:
    readings = uncertainty_proxies([[1.0]], [[0.5, 0.5]], [0.5], [0.5], min_rows=1)
    assert [r.statistic for r in readings] == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="min_rows"):
        uncertainty_proxies([[1.0]], [[1.0]], None, None, min_rows=0)


def test_no_drift_false_alarm_rate_over_thirty_daily_checks_is_below_five_percent() -> None:
    def window(seed: int, n: int) -> tuple[list[np.ndarray], np.ndarray]:
        rng = np.random.default_rng(seed)
        k = rng.integers(2, 6, n)
        return [rng.dirichlet(np.full(m, 0.7)) for m in k], rng.beta(8.0, 2.0, n)

    ref_probs, ref_pred = window(100, 20_000)
    alarms = 0
    for day in range(30):
        cur_probs, cur_pred = window(day, 1000)
        alarms += any(r.status == "alert" for r in uncertainty_proxies(ref_probs, cur_probs, ref_pred, cur_pred))
    assert alarms / 30 < 0.05
