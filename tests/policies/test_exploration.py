"""Generic tests every exploration rule must pass, then each rule's own formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from banditgate.policies.exploration import (
    RULES,
    EpsilonGreedy,
    ExplorationRule,
    Greedy,
    Softmax,
    SquareCB,
    Uniform,
    make_rule,
)

RULE_INSTANCES = [
    Uniform(),
    Uniform(floor=0.05),
    EpsilonGreedy(epsilon=0.1),
    EpsilonGreedy(epsilon=0.3, floor=0.02),
    Softmax(temperature=0.05),
    Softmax(temperature=0.01, floor=0.01),
    SquareCB(gamma=100.0),
    SquareCB(gamma=1e6, floor=0.01),
    Greedy(),
    Greedy(floor=0.01),
]

scores_strategy = arrays(
    np.float64, st.integers(1, 64), elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
)


@pytest.mark.parametrize("rule", RULE_INSTANCES, ids=repr)
@settings(max_examples=200, deadline=None)
@given(scores=scores_strategy)
def test_probabilities_sum_to_one_and_respect_the_floor(rule: ExplorationRule, scores: np.ndarray) -> None:
    p = rule.probabilities(scores)
    assert p.shape == scores.shape
    assert abs(p.sum() - 1.0) <= 1e-9
    assert np.all(p >= 0.0)
    assert np.all(p >= min(rule.floor, 1.0 / scores.size) - 1e-12)
    if rule.floor > 0:
        assert np.all(p > 0.0)


@pytest.mark.parametrize("rule", RULE_INSTANCES, ids=repr)
def test_equal_scores_give_the_uniform_distribution(rule: ExplorationRule) -> None:
    np.testing.assert_allclose(rule.probabilities(np.full(7, 0.42)), np.full(7, 1 / 7), atol=1e-12)


@pytest.mark.parametrize("rule", RULE_INSTANCES, ids=repr)
def test_best_action_is_never_less_likely_than_another(rule: ExplorationRule) -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.3])
    p = rule.probabilities(scores)
    assert p[1] == pytest.approx(p.max())


@pytest.mark.parametrize("rule", RULE_INSTANCES, ids=repr)
def test_params_rebuild_the_same_rule(rule: ExplorationRule) -> None:
    rebuilt = make_rule(rule.name, rule.params())
    scores = np.array([0.2, 0.7, 0.4])
    np.testing.assert_array_equal(rebuilt.probabilities(scores), rule.probabilities(scores))


@pytest.mark.parametrize("rule", RULE_INSTANCES, ids=repr)
@pytest.mark.parametrize("bad", [np.array([]), np.array([0.1, np.nan]), np.array([[0.1, 0.2]])], ids=str)
def test_rejects_bad_scores(rule: ExplorationRule, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="scores"):
        rule.probabilities(bad)


def test_every_registered_rule_is_covered() -> None:
    assert {type(r) for r in RULE_INSTANCES} == set(RULES.values())


def test_floor_is_capped_at_uniform_when_too_large() -> None:
    np.testing.assert_allclose(Greedy(floor=0.5).probabilities(np.array([1.0, 0.0, 0.0])), [1 / 3] * 3)


def test_floor_mixture_formula() -> None:
    # p = K f + (1 - K f) p_raw with K = 4, f = 0.05: the greedy action gets 0.05 + 0.8.
    np.testing.assert_allclose(
        Greedy(floor=0.05).probabilities(np.array([0.0, 1.0, 0.0, 0.0])), [0.05, 0.85, 0.05, 0.05]
    )


def test_epsilon_greedy_formula_and_ties() -> None:
    np.testing.assert_allclose(EpsilonGreedy(0.2).probabilities(np.array([0.5, 0.1])), [0.9, 0.1])
    np.testing.assert_allclose(
        EpsilonGreedy(0.2).probabilities(np.array([0.5, 0.5, 0.1])), [0.2 / 3 + 0.4] * 2 + [0.2 / 3]
    )


def test_softmax_formula() -> None:
    scores = np.array([0.2, 0.5, 0.9])
    expected = np.exp(scores / 0.1) / np.exp(scores / 0.1).sum()
    np.testing.assert_allclose(Softmax(0.1).probabilities(scores), expected)


def test_softmax_does_not_overflow_at_tiny_temperature() -> None:
    p = Softmax(1e-6).probabilities(np.array([900.0, 0.0]))
    np.testing.assert_allclose(p, [1.0, 0.0])


def test_squarecb_inverse_gap_weighting() -> None:
    scores = np.array([0.8, 0.5, 0.6, 0.8 - 1e-3])
    gamma, k = 50.0, 4
    p = SquareCB(gamma).probabilities(scores)
    for a in (1, 2, 3):
        assert p[a] == pytest.approx(1.0 / (k + gamma * (0.8 - scores[a])))
    assert p[0] == pytest.approx(1.0 - p[1:].sum())


def test_squarecb_gamma_zero_is_uniform_and_large_gamma_approaches_greedy() -> None:
    scores = np.array([0.3, 0.9, 0.1])
    np.testing.assert_allclose(SquareCB(0.0).probabilities(scores), [1 / 3] * 3)
    assert SquareCB(1e9).probabilities(scores)[1] > 1 - 1e-6


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("thompson", {}, "unknown exploration rule"),
        ("softmax", {"temperature": 0.0}, "temperature"),
        ("squarecb", {"gamma": -1.0}, "gamma"),
        ("epsilon_greedy", {"epsilon": 1.5}, "epsilon"),
        ("uniform", {"floor": 2.0}, "floor"),
        ("squarecb", {"gama": 10.0}, "bad parameters"),
    ],
)
def test_make_rule_refuses_bad_configuration(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_rule(name, params)


@pytest.mark.parametrize("rule", RULE_INSTANCES, ids=repr)
def test_the_probability_matrix_agrees_with_one_decision_at_a_time(rule: ExplorationRule) -> None:
    rng = np.random.default_rng(7)
    scores = rng.random((300, 6)).round(2)  # rounded: ties
    eligible = rng.random((300, 6)) < 0.6
    eligible[:, 2] = True
    matrix = rule.probability_matrix(scores, eligible)
    assert np.all(matrix[~eligible] == 0.0)
    for row in range(300):
        expected = rule.probability_list(scores[row, eligible[row]])
        np.testing.assert_allclose(matrix[row, eligible[row]], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("scores", "eligible", "message"),
    [
        (np.zeros((2, 3)), np.ones((2, 2), dtype=bool), "one shape"),
        (np.zeros((2, 3)), np.array([[True, False, False], [False, False, False]]), "at least one eligible"),
        (np.array([[0.1, np.nan]]), np.ones((1, 2), dtype=bool), "finite"),
    ],
)
def test_the_probability_matrix_refuses_bad_input(scores: np.ndarray, eligible: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SquareCB(gamma=10.0).probability_matrix(scores, eligible)
