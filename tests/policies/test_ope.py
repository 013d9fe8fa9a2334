"""Off-policy estimators: hand-computed cases, identities, the generic estimator contract, input validation,
and interval coverage on a synthetic bandit whose true policy value is known exactly."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditgate.policies.ope import (
    ESTIMATORS,
    IPS,
    SNIPS,
    CIMethod,
    ClippedIPS,
    DirectMethod,
    DoublyRobust,
    Estimate,
    Estimator,
    LoggedBandit,
    SelfNormalizedDR,
    SwitchDR,
    WeightDiagnostics,
    effective_sample_size,
    evaluate_all,
    hill_tail_index,
    top_share,
)

Z95 = 1.959963984540054

ESTIMATOR_INSTANCES: list[Estimator] = [
    IPS(),
    ClippedIPS(),
    ClippedIPS(clip=1.5),
    SNIPS(),
    DirectMethod(),
    DoublyRobust(),
    SelfNormalizedDR(),
    SwitchDR(),
    SwitchDR(tau=1.5),
]
#: Estimators that move by exactly ``c`` when rewards and oracle move by ``c``.
SHIFT_EQUIVARIANT = (SNIPS, DirectMethod, DoublyRobust, SelfNormalizedDR, SwitchDR)


def hand_case() -> LoggedBandit:
    """Four rows over three slots: dynamic action sets (NaN oracle on padding), propensities of different policies.

    row  eligible   target            action  propensity  reward  oracle            w
    0    a b c      0.5  0.25 0.25    a       0.25        1       0.8  0.4  0.2     2
    1    a b        0.5  0.5  0       b       0.5         0       0.6  0.2  (NaN)   1
    2    a b c      0    0    1       c       0.5         1       0.5  0.5  0.5     2
    3      b c      0    1    0       b       0.125       1       (NaN) 0.9 0.1     8
    """
    nan = math.nan
    return LoggedBandit(
        rewards=[1.0, 0.0, 1.0, 1.0],
        actions=[0, 1, 2, 1],
        propensities=[0.25, 0.5, 0.5, 0.125],
        target=[[0.5, 0.25, 0.25], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
        oracle=[[0.8, 0.4, 0.2], [0.6, 0.2, nan], [0.5, 0.5, 0.5], [nan, 0.9, 0.1]],
        eligible=[[True, True, True], [True, True, False], [True, True, True], [False, True, True]],
    )


def random_data(
    seed: int, n: int = 200, k: int = 4, *, oracle: bool = True, padded: bool = True, reward_scale: float = 1.0
) -> LoggedBandit:
    """Random valid logs: dynamic action sets, per-row logging distributions, a random target."""
    rng = np.random.default_rng(seed)
    eligible = rng.random((n, k)) < 0.7 if padded else np.ones((n, k), dtype=bool)
    eligible[np.arange(n), rng.integers(k, size=n)] = True
    logging = np.where(eligible, rng.dirichlet(np.ones(k), size=n) + 0.05, 0.0)
    logging /= logging.sum(axis=1, keepdims=True)
    target = np.where(eligible, rng.dirichlet(np.full(k, 0.5), size=n), 0.0)
    target /= target.sum(axis=1, keepdims=True)
    actions = (logging.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    rows = np.arange(n)
    return LoggedBandit(
        rewards=reward_scale * rng.random(n),
        actions=actions,
        propensities=logging[rows, actions],
        target=target,
        oracle=reward_scale * rng.random((n, k)) if oracle else None,
        eligible=eligible,
    )


def replace(data: LoggedBandit, **changes: Any) -> LoggedBandit:
    return dataclasses.replace(data, **changes)


# --- hand-computed cases -------------------------------------------------------------------------------------


def test_hand_case_ips() -> None:
    # w * r = 2, 0, 2, 8: V = 12 / 4 = 3; deviations -1, -3, -1, 5: se = sqrt(36 / (4 * 3)) = sqrt(3).
    e = IPS().estimate(hand_case())
    assert e.value == pytest.approx(3.0)
    assert e.std_error == pytest.approx(math.sqrt(3.0))
    assert e.ci == pytest.approx((3.0 - Z95 * math.sqrt(3.0), 3.0 + Z95 * math.sqrt(3.0)))


def test_hand_case_clipped_ips() -> None:
    # min(w, 4) * r = 2, 0, 2, 4: V = 8 / 4 = 2; deviations 0, -2, 0, 2: se = sqrt(8 / 12).
    e = ClippedIPS(clip=4.0).estimate(hand_case())
    assert e.value == pytest.approx(2.0)
    assert e.std_error == pytest.approx(math.sqrt(8.0 / 12.0))
    assert e.params == {"clip": 4.0}


def test_hand_case_snips() -> None:
    # V = (2 + 0 + 2 + 8) / (2 + 1 + 2 + 8) = 12 / 13. Delta method: phi = w (r - V) / mean(w), mean(w) = 3.25,
    # w (r - V) = (2, -12, 2, 8) / 13, so phi = (2, -12, 2, 8) / 42.25 and se = sqrt(216 / 42.25^2 / 12).
    e = SNIPS().estimate(hand_case())
    assert e.value == pytest.approx(12.0 / 13.0)
    assert e.std_error == pytest.approx(math.sqrt(216.0 / 42.25**2 / 12.0))


def test_hand_case_direct_method() -> None:
    # Rows: 0.5*0.8 + 0.25*0.4 + 0.25*0.2 = 0.55; 0.5*0.6 + 0.5*0.2 = 0.4; 0.5; 0.9 (NaN padding ignored).
    # V = 2.35 / 4 = 0.5875; deviations -0.0375, -0.1875, -0.0875, 0.3125.
    e = DirectMethod().estimate(hand_case())
    assert e.value == pytest.approx(0.5875)
    deviations = np.array([-0.0375, -0.1875, -0.0875, 0.3125])
    assert e.std_error == pytest.approx(math.sqrt((deviations**2).sum() / 12.0))


def test_hand_case_doubly_robust() -> None:
    # Residuals r - q(a_i) = 0.2, -0.2, 0.5, 0.1; times w = 0.4, -0.2, 1.0, 0.8 (sum 2.0).
    # Rows 0.95, 0.2, 1.5, 1.7: V = (2.35 + 2.0) / 4 = 1.0875.
    e = DoublyRobust().estimate(hand_case())
    assert e.value == pytest.approx(1.0875)
    deviations = np.array([0.95, 0.2, 1.5, 1.7]) - 1.0875
    assert e.std_error == pytest.approx(math.sqrt((deviations**2).sum() / 12.0))


def test_hand_case_self_normalized_dr() -> None:
    # V = 0.5875 + 2.0 / 13. Delta method: phi = (dm - 0.5875) + w (e - 2/13) / mean(w), mean(w) = 3.25.
    e = SelfNormalizedDR().estimate(hand_case())
    assert e.value == pytest.approx(0.5875 + 2.0 / 13.0)
    dm, w, residuals = np.array([0.55, 0.4, 0.5, 0.9]), np.array([2.0, 1.0, 2.0, 8.0]), np.array([0.2, -0.2, 0.5, 0.1])
    phi = (dm - 0.5875) + w * (residuals - 2.0 / 13.0) / 3.25
    assert e.std_error == pytest.approx(math.sqrt((phi**2).sum() / 12.0))


def test_hand_case_switch_dr() -> None:
    # tau = 4 drops row 3's correction (w = 8): V = (2.35 + 0.4 - 0.2 + 1.0) / 4 = 0.8875.
    # Rows 0.95, 0.2, 1.5, 0.9: deviations 0.0625, -0.6875, 0.6125, 0.0125.
    e = SwitchDR(tau=4.0).estimate(hand_case())
    assert e.value == pytest.approx(0.8875)
    assert e.std_error == pytest.approx(math.sqrt((0.0625**2 + 0.6875**2 + 0.6125**2 + 0.0125**2) / 12.0))
    assert e.params == {"tau": 4.0}


def test_hand_case_diagnostics() -> None:
    # w = 2, 1, 2, 8: ESS = 13^2 / 73; top 1% of 4 rows is 1 row: 8 / 13. Hill with k = 2 over the
    # three largest (8, 2, 2): (log(8/2) + log(2/2)) / 2 = log(2).
    d = IPS().estimate(hand_case()).diagnostics
    assert d == WeightDiagnostics(
        ess=pytest.approx(169.0 / 73.0),
        max_weight=8.0,
        mean_weight=3.25,
        top_share=pytest.approx(8.0 / 13.0),
        tail_index=pytest.approx(math.log(2.0)),
    )


def test_evaluate_all_returns_the_seven_estimates() -> None:
    estimates = evaluate_all(hand_case(), clip=4.0, tau=4.0)
    assert list(estimates) == ["ips", "clipped_ips", "snips", "dm", "dr", "sndr", "switch_dr"]
    assert list(estimates) == list(ESTIMATORS)
    expected = [3.0, 2.0, 12.0 / 13.0, 0.5875, 1.0875, 0.5875 + 2.0 / 13.0, 0.8875]
    assert [e.value for e in estimates.values()] == pytest.approx(expected)
    assert all(e.estimator == name for name, e in estimates.items())


def test_evaluate_all_needs_an_oracle() -> None:
    with pytest.raises(ValueError, match="needs oracle predictions"):
        evaluate_all(random_data(0, oracle=False))


# --- identities ----------------------------------------------------------------------------------------------


def logs_where_target_equals_behaviour(seed: int = 1, n: int = 500) -> LoggedBandit:
    """Rows logged by two generations with different distributions; the target is each row's own."""
    data = random_data(seed, n=n)
    rng = np.random.default_rng(seed)
    behaviour = np.where(data.eligible, rng.dirichlet(np.ones(data.n_actions), size=n) + 0.01, 0.0)
    behaviour /= behaviour.sum(axis=1, keepdims=True)
    behaviour[: n // 2] = np.where(data.eligible[: n // 2], 1.0, 0.0) / data.eligible[: n // 2].sum(axis=1)[:, None]
    actions = (behaviour.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return replace(data, actions=actions, propensities=behaviour[np.arange(n), actions], target=behaviour)


@pytest.mark.parametrize("estimator", [IPS(), ClippedIPS(), SNIPS()], ids=repr)
def test_weighting_estimators_give_the_logged_mean_when_target_equals_behaviour(estimator: Estimator) -> None:
    data = logs_where_target_equals_behaviour()
    np.testing.assert_allclose(data.importance_weights, 1.0, rtol=1e-12)
    e = estimator.estimate(data)
    assert e.value == pytest.approx(data.rewards.mean(), rel=1e-12)
    assert e.ess == pytest.approx(data.n)


def test_snips_equals_the_logged_mean_exactly_when_target_equals_behaviour() -> None:
    data = logs_where_target_equals_behaviour()
    assert SNIPS().estimate(data).value == pytest.approx(data.rewards.mean(), rel=1e-14)


@pytest.mark.parametrize("estimator", [DoublyRobust(), SelfNormalizedDR(), SwitchDR(tau=1.5)], ids=repr)
def test_doubly_robust_estimators_equal_dm_when_the_oracle_is_exact_per_cell(estimator: Estimator) -> None:
    """Context-free target and logging, the oracle is each action's mean logged reward: corrections cancel."""
    rng = np.random.default_rng(3)
    n, k = 400, 3
    logging = np.array([0.6, 0.3, 0.1])
    target = np.array([0.2, 0.3, 0.5])
    actions = rng.choice(k, size=n, p=logging)
    rewards = (rng.random(n) < np.array([0.9, 0.6, 0.7])[actions]).astype(float)
    cell_means = np.array([rewards[actions == a].mean() for a in range(k)])
    data = LoggedBandit(
        rewards=rewards,
        actions=actions,
        propensities=logging[actions],
        target=np.tile(target, (n, 1)),
        oracle=np.tile(cell_means, (n, 1)),
    )
    dm = DirectMethod().estimate(data).value
    assert dm == pytest.approx(target @ cell_means)
    assert estimator.estimate(data).value == pytest.approx(dm, abs=1e-12)


@pytest.mark.parametrize("estimator", [DoublyRobust(), SelfNormalizedDR(), SwitchDR()], ids=repr)
def test_doubly_robust_estimators_equal_dm_when_rewards_are_what_the_oracle_predicts(estimator: Estimator) -> None:
    data = random_data(4)
    exact = replace(data, rewards=data.oracle[np.arange(data.n), data.actions])
    assert estimator.estimate(exact).value == pytest.approx(DirectMethod().estimate(exact).value, abs=1e-12)


def test_clipping_and_switching_reduce_to_their_parents_at_the_extremes() -> None:
    data = random_data(5)
    top = float(data.importance_weights.max())
    assert ClippedIPS(clip=top).estimate(data) == dataclasses.replace(
        IPS().estimate(data), estimator="clipped_ips", params={"clip": top}
    )
    assert SwitchDR(tau=math.inf).estimate(data).value == pytest.approx(DoublyRobust().estimate(data).value)
    assert SwitchDR(tau=0.0).estimate(data).value == pytest.approx(DirectMethod().estimate(data).value)


def test_self_normalised_estimates_stay_within_the_reward_range() -> None:
    data = random_data(6)
    assert data.rewards.min() <= SNIPS().estimate(data).value <= data.rewards.max()


# --- the generic contract, for every estimator ---------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
@pytest.mark.parametrize("ci", ["normal", "bootstrap"])
def test_interval_contains_the_estimate(estimator: Estimator, ci: CIMethod) -> None:
    data = random_data(7, n=300)
    e = estimator.estimate(data, ci=ci, n_bootstrap=200)
    assert isinstance(e, Estimate)
    assert e.ci_method == ci and e.confidence == 0.95 and e.n == data.n and e.estimator == estimator.name
    assert e.ci_low <= e.value <= e.ci_high
    assert e.std_error > 0.0 and math.isfinite(e.std_error)
    if ci == "normal":
        assert e.ci == pytest.approx((e.value - Z95 * e.std_error, e.value + Z95 * e.std_error))


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 60), k=st.integers(1, 6), scale=st.floats(0.01, 100.0))
def test_contract_holds_on_random_logs(estimator: Estimator, seed: int, n: int, k: int, scale: float) -> None:
    data = random_data(seed, n=n, k=k, reward_scale=scale)
    if isinstance(estimator, SNIPS | SelfNormalizedDR) and not data.importance_weights.sum() > 0:
        return
    e = estimator.estimate(data)
    assert math.isfinite(e.value) and e.std_error >= 0.0
    assert e.ci_low <= e.value <= e.ci_high
    assert 0.0 <= e.ess <= n * (1 + 1e-12)
    assert e.diagnostics.max_weight >= e.diagnostics.mean_weight >= 0.0


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_diagnostics_describe_the_data_not_the_estimator(estimator: Estimator) -> None:
    data = random_data(8)
    assert estimator.estimate(data).diagnostics == WeightDiagnostics.of(data.importance_weights)


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_estimates_are_reproducible(estimator: Estimator) -> None:
    assert estimator.estimate(random_data(9)) == estimator.estimate(random_data(9))
    assert type(estimator)(**estimator.params()).estimate(random_data(9)) == estimator.estimate(random_data(9))
    boot = estimator.estimate(random_data(9), ci="bootstrap", n_bootstrap=100, seed=5)
    assert boot == estimator.estimate(random_data(9), ci="bootstrap", n_bootstrap=100, seed=5)
    assert boot.ci != estimator.estimate(random_data(9), ci="bootstrap", n_bootstrap=100, seed=6).ci


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_bootstrap_and_normal_intervals_agree_on_a_large_sample(estimator: Estimator) -> None:
    data = random_data(10, n=3000, padded=False)
    normal = estimator.estimate(data)
    boot = estimator.estimate(data, ci="bootstrap", n_bootstrap=400)
    assert boot.value == normal.value
    assert boot.std_error == pytest.approx(normal.std_error, rel=0.2)


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_invariant_to_the_order_of_rows(estimator: Estimator) -> None:
    data = random_data(11)
    order = np.random.default_rng(0).permutation(data.n)
    shuffled = LoggedBandit(
        rewards=data.rewards[order],
        actions=data.actions[order],
        propensities=data.propensities[order],
        target=data.target[order],
        oracle=data.oracle[order],
        eligible=data.eligible[order],
    )
    a, b = estimator.estimate(data), estimator.estimate(shuffled)
    assert b.value == pytest.approx(a.value, rel=1e-12)
    assert b.std_error == pytest.approx(a.std_error, rel=1e-9)


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_invariant_to_the_order_of_slots_and_to_padding(estimator: Estimator) -> None:
    data = random_data(12)
    order = np.array([2, 0, 3, 1])
    inverse = np.argsort(order)
    relabelled = LoggedBandit(
        rewards=data.rewards,
        actions=inverse[data.actions],
        propensities=data.propensities,
        target=data.target[:, order],
        oracle=data.oracle[:, order],
        eligible=data.eligible[:, order],
    )

    def pad(x: np.ndarray, value: Any) -> np.ndarray:
        return np.concatenate([x, np.full((data.n, 1), value)], axis=1)

    padded = LoggedBandit(
        rewards=data.rewards,
        actions=data.actions,
        propensities=data.propensities,
        target=pad(data.target, 0.0),
        oracle=pad(data.oracle, math.nan),
        eligible=pad(data.eligible, False),
    )
    reference = estimator.estimate(data)
    for variant in (relabelled, padded):
        e = estimator.estimate(variant)
        assert e.value == pytest.approx(reference.value, rel=1e-12)
        assert e.std_error == pytest.approx(reference.std_error, rel=1e-9)


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_equivariant_to_the_scale_of_rewards(estimator: Estimator) -> None:
    data = random_data(13)
    scaled = replace(data, rewards=data.rewards * 250.0, oracle=data.oracle * 250.0)
    a, b = estimator.estimate(data), estimator.estimate(scaled)
    assert b.value == pytest.approx(250.0 * a.value, rel=1e-12)
    assert b.ci == pytest.approx((250.0 * a.ci_low, 250.0 * a.ci_high), rel=1e-9)


@pytest.mark.parametrize("estimator", [e for e in ESTIMATOR_INSTANCES if isinstance(e, SHIFT_EQUIVARIANT)], ids=repr)
def test_shift_of_rewards_and_oracle_shifts_the_estimate(estimator: Estimator) -> None:
    data = random_data(14)
    shifted = replace(data, rewards=data.rewards - 3.0, oracle=data.oracle - 3.0)
    a, b = estimator.estimate(data), estimator.estimate(shifted)
    assert b.value == pytest.approx(a.value - 3.0, rel=1e-12)
    assert b.std_error == pytest.approx(a.std_error, rel=1e-9)


def test_ips_is_not_shift_equivariant() -> None:
    data = random_data(14)
    shifted = replace(data, rewards=data.rewards - 3.0)
    mean_weight = data.importance_weights.mean()
    assert IPS().estimate(shifted).value == pytest.approx(IPS().estimate(data).value - 3.0 * mean_weight)


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_twice_the_same_rows_keeps_the_value_and_narrows_the_interval(estimator: Estimator) -> None:
    data = random_data(15)
    doubled = LoggedBandit(
        rewards=np.tile(data.rewards, 2),
        actions=np.tile(data.actions, 2),
        propensities=np.tile(data.propensities, 2),
        target=np.tile(data.target, (2, 1)),
        oracle=np.tile(data.oracle, (2, 1)),
        eligible=np.tile(data.eligible, (2, 1)),
    )
    a, b = estimator.estimate(data), estimator.estimate(doubled)
    n = data.n
    assert b.value == pytest.approx(a.value, rel=1e-12)
    # se^2 = sum(phi^2) / (n (n - 1)): doubling the rows doubles the sum and the n.
    assert b.std_error == pytest.approx(a.std_error * math.sqrt(2 * n * (n - 1) / (2 * n * (2 * n - 1))), rel=1e-9)
    assert b.ess == pytest.approx(2 * a.ess)


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_wider_interval_at_higher_confidence(estimator: Estimator) -> None:
    data = random_data(16)
    e90, e99 = estimator.estimate(data, confidence=0.9), estimator.estimate(data, confidence=0.99)
    assert e99.ci_low < e90.ci_low <= e90.ci_high < e99.ci_high


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.0}, "confidence must be in"),
        ({"confidence": 0.0}, "confidence must be in"),
        ({"confidence": math.nan}, "confidence must be in"),
        ({"ci": "student"}, "ci must be"),
        ({"ci": "bootstrap", "n_bootstrap": 1}, "n_bootstrap must be"),
    ],
)
@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_bad_estimate_arguments_are_refused(estimator: Estimator, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimator.estimate(random_data(17), **kwargs)


@pytest.mark.parametrize("estimator", ESTIMATOR_INSTANCES, ids=repr)
def test_oracle_is_required_exactly_by_the_model_based_estimators(estimator: Estimator) -> None:
    data = random_data(18, oracle=False)
    if type(estimator).requires_oracle:
        with pytest.raises(ValueError, match=f"{estimator.name} needs oracle predictions"):
            estimator.estimate(data)
    else:
        assert math.isfinite(estimator.estimate(data).value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ClippedIPS(clip=0.0), "clip must be a positive number"),
        (lambda: ClippedIPS(clip=math.nan), "clip must be a positive number"),
        (lambda: SwitchDR(tau=-1.0), "tau must be a non-negative number"),
        (lambda: SwitchDR(tau=math.nan), "tau must be a non-negative number"),
    ],
)
def test_bad_estimator_parameters_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("estimator", [SNIPS(), SelfNormalizedDR()], ids=repr)
def test_self_normalised_estimators_refuse_all_zero_weights(estimator: Estimator) -> None:
    data = hand_case()
    never_logged = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="gives probability 0 to every logged action"):
        estimator.estimate(replace(data, target=never_logged))
    assert IPS().estimate(replace(data, target=never_logged)).value == 0.0


# --- validation of the logged data ---------------------------------------------------------------------------


def _valid() -> dict[str, Any]:
    return {
        "rewards": [1.0, 0.0, 1.0],
        "actions": [0, 1, 2],
        "propensities": [0.5, 0.25, 1.0],
        "target": [[0.2, 0.3, 0.5], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
        "oracle": [[0.5, 0.5, 0.5], [0.4, 0.6, math.nan], [0.1, 0.2, 0.3]],
        "eligible": [[True, True, True], [True, True, False], [True, True, True]],
    }


BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("one row", {"rewards": [1.0], "actions": [0], "propensities": [0.5], "target": [[1, 0, 0]],
                 "oracle": None, "eligible": None}, "at least 2 logged rows"),
    ("2-d rewards", {"rewards": [[1.0, 0.0, 1.0]]}, "rewards must be 1-d"),
    ("NaN reward", {"rewards": [1.0, math.nan, 1.0]}, r"row 1: rewards must be finite"),
    ("infinite reward", {"rewards": [1.0, 0.0, math.inf]}, r"row 2: rewards must be finite"),
    ("short actions", {"actions": [0, 1]}, r"actions must have shape \(3,\)"),
    ("float actions", {"actions": [0.0, 1.0, 2.0]}, "actions must be integer slot indices"),
    ("negative action", {"actions": [0, -1, 2]}, r"row 1: action -1 is out of range \[0, 3\)"),
    ("action past K", {"actions": [0, 1, 3]}, r"row 2: action 3 is out of range"),
    ("ineligible action", {"actions": [0, 2, 2]}, "row 1: the chosen action 2 is not eligible"),
    ("zero propensity", {"propensities": [0.5, 0.0, 1.0]}, r"row 1: propensity must be in \(0, 1\]"),
    ("propensity above 1", {"propensities": [1.5, 0.25, 1.0]}, r"row 0: propensity must be in \(0, 1\]"),
    ("NaN propensity", {"propensities": [0.5, 0.25, math.nan]}, r"row 2: propensity must be in \(0, 1\]"),
    ("propensities shape", {"propensities": [[0.5, 0.25, 1.0]]}, "propensities must have shape"),
    ("1-d target", {"target": [0.2, 0.3, 0.5]}, "target must have shape"),
    ("target rows", {"target": [[0.2, 0.3, 0.5]] * 2}, "target must have shape"),
    ("target above 1", {"target": [[1.2, -0.2, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]},
     "row 0: target probabilities must be finite and in"),
    ("NaN target", {"target": [[0.2, 0.3, 0.5], [0.5, 0.5, math.nan], [0.0, 0.0, 1.0]]},
     "row 1: target probabilities must be finite"),
    ("target off the eligible set", {"target": [[0.2, 0.3, 0.5], [0.5, 0.4, 0.1], [0.0, 0.0, 1.0]]},
     "row 1: target gives non-zero probability to an ineligible slot"),
    ("target sum", {"target": [[0.2, 0.3, 0.5], [0.5, 0.5, 0.0], [0.0, 0.0, 0.99]]},
     "row 2: target probabilities sum to 0.99, not 1"),
    ("oracle shape", {"oracle": [[0.5, 0.5], [0.4, 0.6], [0.1, 0.2]]}, "oracle must have shape"),
    ("NaN oracle on an eligible slot", {"oracle": [[0.5, math.nan, 0.5], [0.4, 0.6, 0.0], [0.1, 0.2, 0.3]]},
     "row 0: oracle predictions must be finite on eligible slots"),
    ("eligible shape", {"eligible": [[True, True, True]]}, "eligible must have shape"),
    ("integer eligible", {"eligible": [[1, 1, 1], [1, 1, 0], [1, 1, 1]]}, "eligible must be a boolean mask"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "changes", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_logs_are_refused_with_a_clear_message(case: str, changes: dict[str, Any], message: str) -> None:
    LoggedBandit(**_valid())
    with pytest.raises(ValueError, match=message):
        LoggedBandit(**{**_valid(), **changes})


def test_target_sum_tolerance_is_one_in_a_million() -> None:
    kwargs = _valid()
    kwargs["target"] = [[0.2, 0.3, 0.5 + 5e-7], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    LoggedBandit(**kwargs)
    kwargs["target"] = [[0.2, 0.3, 0.5 + 2e-6], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="sum to"):
        LoggedBandit(**kwargs)


def test_logs_are_copied_and_read_only() -> None:
    rewards = np.array([1.0, 0.0, 1.0])
    kwargs = {**_valid(), "rewards": rewards}
    data = LoggedBandit(**kwargs)
    rewards[0] = 7.0
    assert data.rewards[0] == 1.0
    assert data.oracle[1, 2] == 0.0  # NaN padding stored as 0
    for array in (data.rewards, data.actions, data.propensities, data.target, data.oracle, data.eligible):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.rewards = rewards  # type: ignore[misc]


# --- diagnostics ---------------------------------------------------------------------------------------------


def test_effective_sample_size_bounds() -> None:
    assert effective_sample_size(np.full(10, 3.0)) == pytest.approx(10.0)
    assert effective_sample_size(np.array([5.0] + [0.0] * 9)) == pytest.approx(1.0)
    assert effective_sample_size(np.zeros(5)) == 0.0


def test_top_share() -> None:
    assert top_share(np.ones(100)) == pytest.approx(0.01)
    assert top_share(np.ones(101)) == pytest.approx(2 / 101)  # ceil(1.01) = 2 rows
    assert math.isnan(top_share(np.zeros(4)))


@pytest.mark.parametrize("alpha", [1.0, 2.0, 4.0])
def test_hill_recovers_a_pareto_tail(alpha: float) -> None:
    weights = np.random.default_rng(0).pareto(alpha, 200_000) + 1.0
    assert hill_tail_index(weights) == pytest.approx(1.0 / alpha, rel=0.1)


def test_hill_on_light_and_tiny_samples() -> None:
    assert hill_tail_index(np.ones(50)) == 0.0
    assert hill_tail_index(np.random.default_rng(0).uniform(0.5, 1.5, 10_000)) < 0.05
    assert math.isnan(hill_tail_index(np.array([0.0, 3.0, 2.0])))  # only two positive weights


# --- coverage on a synthetic bandit with a known value -------------------------------------------------------


class World:
    """50 context types x 5 actions, Bernoulli rewards with known means ``mu``; contexts drawn uniformly.

    Logging: softmax (temperature 0.05) over noisy scores ``mu + N(0, 0.15)`` (fixed per world), mixed with a
    0.03 floor; it often ranks the best action low, so the weights are skewed (ESS about a quarter of n,
    weights up to ~30). Target: softmax (temperature 0.05) over the true ``mu``. True value: the average over
    the 50 contexts of ``sum_a pi(a | x) mu(x, a)``. Oracles: well-specified (exactly ``mu``) or misspecified
    (context-free: each action's mean of ``mu`` over the contexts).
    """

    K, CONTEXTS, FLOOR = 5, 50, 0.03

    def __init__(self) -> None:
        rng = np.random.default_rng(2024)
        features = rng.normal(size=(self.CONTEXTS, 3))
        self.mu = 1.0 / (1.0 + np.exp(-(features @ rng.normal(size=(self.K, 3)).T + rng.normal(0.5, 0.5, self.K))))
        noisy = self.mu + rng.normal(0.0, 0.15, self.mu.shape)
        self.logging = self.FLOOR + (1.0 - self.K * self.FLOOR) * self._softmax(noisy, 0.05)
        self.target = self._softmax(self.mu, 0.05)
        self.value = float((self.target * self.mu).sum(axis=1).mean())
        self.oracles = {"well-specified": self.mu, "misspecified": np.broadcast_to(self.mu.mean(axis=0), self.mu.shape)}

    @staticmethod
    def _softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
        z = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
        return z / z.sum(axis=1, keepdims=True)

    def logs(self, seed: int, n: int, oracle: str) -> LoggedBandit:
        rng = np.random.default_rng(seed)
        contexts = rng.integers(self.CONTEXTS, size=n)
        logging = self.logging[contexts]
        actions = (logging.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
        return LoggedBandit(
            rewards=(rng.random(n) < self.mu[contexts, actions]).astype(np.float64),
            actions=actions,
            propensities=logging[np.arange(n), actions],
            target=self.target[contexts],
            oracle=self.oracles[oracle][contexts],
        )


REPETITIONS, ROWS = 100, 2000
#: Per oracle: the true value, estimates and interval bounds (repetitions x estimators), ESS per data set.
Runs = dict[str, dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def coverage_runs() -> Runs:
    world = World()
    runs: Runs = {}
    for oracle in world.oracles:
        estimates = [evaluate_all(world.logs(seed, ROWS, oracle)) for seed in range(REPETITIONS)]
        runs[oracle] = {
            "truth": np.array(world.value),
            "value": np.array([[e.value for e in r.values()] for r in estimates]),
            "low": np.array([[e.ci_low for e in r.values()] for r in estimates]),
            "high": np.array([[e.ci_high for e in r.values()] for r in estimates]),
            "ess": np.array([r["ips"].ess for r in estimates]),
        }
    return runs


@pytest.mark.parametrize("oracle", ["well-specified", "misspecified"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_intervals_cover_the_true_value(coverage_runs: Runs, oracle: str, name: str) -> None:
    run, j = coverage_runs[oracle], list(ESTIMATORS).index(name)
    covered = (run["low"][:, j] <= run["truth"]) & (run["truth"] <= run["high"][:, j])
    if name == "dm" and oracle == "misspecified":
        assert covered.mean() < 0.5  # a wrong model with a narrow interval: the reason DR exists
    else:
        assert covered.mean() >= 0.85, f"{name} covered the truth in {covered.mean():.0%} of {REPETITIONS} runs"


def test_logging_is_skewed_and_snips_and_dr_beat_ips(coverage_runs: Runs) -> None:
    run = coverage_runs["well-specified"]
    assert run["ess"].mean() < 0.4 * ROWS
    rmse = dict(zip(ESTIMATORS, np.sqrt(((run["value"] - run["truth"]) ** 2).mean(axis=0)), strict=True))
    assert rmse["snips"] < 0.75 * rmse["ips"]
    assert rmse["dr"] < 0.75 * rmse["ips"]
    assert rmse["sndr"] < 0.75 * rmse["ips"]
    misspecified = coverage_runs["misspecified"]
    dr = list(ESTIMATORS).index("dr")
    assert np.sqrt(((misspecified["value"][:, dr] - misspecified["truth"]) ** 2).mean()) < 0.75 * rmse["ips"]
