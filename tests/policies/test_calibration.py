"""Isotonic recalibration of an oracle's scores: fitted on held-out rows, stored in the artifact, served as fitted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from banditgate.policies.actions import Action
from banditgate.policies.oracles import LightGBMOracle, load_oracle, records_to_frame
from banditgate.policies.oracles.base import ARTIFACT_MAGIC
from banditgate.policies.oracles.calibration import IsotonicCalibration, check_calibration

ACTIONS = [Action("route_a"), Action("route_b"), Action("3ds")]


def miscalibrated_data(n: int, seed: int) -> tuple:
    """Rewards whose probability depends on the context and action; rare enough that a squared-loss model with a
    strong learning rate on few rows is off in level."""
    rng = np.random.default_rng(seed)
    amounts = rng.lognormal(4, 1, n)
    chosen = rng.integers(0, len(ACTIONS), n)
    p = 0.03 + 0.25 * (amounts > 80) * (chosen == 2) + 0.1 * (chosen == 1)
    contexts = [{"amount_eur": float(a)} for a in amounts]
    actions = [ACTIONS[i] for i in chosen]
    return records_to_frame(contexts, actions), (rng.random(n) < p).astype(float), p


@pytest.fixture(scope="module")
def calibrated() -> tuple:
    frame, rewards, _ = miscalibrated_data(6000, seed=1)
    train, held = slice(0, 3000), slice(3000, 6000)
    oracle = LightGBMOracle(num_boost_round=40, learning_rate=0.3, min_data_in_leaf=5, objective="regression")
    oracle.fit(frame.iloc[train].reset_index(drop=True), rewards[train])
    raw = load_oracle(oracle.to_bytes())
    oracle.calibrate(frame.iloc[held].reset_index(drop=True), rewards[held])
    return raw, oracle


def test_calibrated_scores_are_monotone_in_the_raw_ones_and_clipped_to_probabilities(calibrated: tuple) -> None:
    raw, oracle = calibrated
    frame, _, _ = miscalibrated_data(2000, seed=2)
    raw_scores, scores = raw.predict_frame(frame), oracle.predict_frame(frame)
    order = np.argsort(raw_scores, kind="stable")
    assert np.all(np.diff(scores[order]) >= 0.0)
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert not np.array_equal(raw_scores, scores)  # the map is applied
    assert len(oracle.calibration_.thresholds) > 2


def test_calibration_lowers_the_brier_score_on_fresh_data(calibrated: tuple) -> None:
    raw, oracle = calibrated
    frame, rewards, p = miscalibrated_data(20_000, seed=3)
    raw_brier = np.mean((raw.predict_frame(frame) - rewards) ** 2)
    calibrated_brier = np.mean((oracle.predict_frame(frame) - rewards) ** 2)
    print(f"Brier on fresh data: raw {raw_brier:.5f}, calibrated {calibrated_brier:.5f}")
    assert calibrated_brier < raw_brier
    # Against the true probabilities too (no outcome noise): the level error shrinks.
    assert np.mean((oracle.predict_frame(frame) - p) ** 2) < np.mean((raw.predict_frame(frame) - p) ** 2)


def test_the_map_is_sklearns_isotonic_regression_as_plain_arrays(calibrated: tuple) -> None:
    from sklearn.isotonic import IsotonicRegression

    raw, oracle = calibrated
    frame, rewards, _ = miscalibrated_data(6000, seed=1)
    held = raw.predict_frame(frame.iloc[3000:].reset_index(drop=True))
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(held, rewards[3000:])
    probe = np.linspace(held.min() - 0.1, held.max() + 0.1, 500)
    np.testing.assert_allclose(oracle.calibration_.apply(probe), model.predict(probe), rtol=0, atol=1e-12)
    assert oracle.calibration_.rows == 3000


def test_the_artifact_carries_the_map_and_scores_to_the_bit(calibrated: tuple) -> None:
    raw, oracle = calibrated
    artifact = oracle.to_bytes()
    loaded = load_oracle(artifact)
    np.testing.assert_array_equal(loaded.calibration_.thresholds, oracle.calibration_.thresholds)
    context = {"amount_eur": 120.0}
    assert loaded.predict_decision(context, ACTIONS).tolist() == oracle.predict_decision(context, ACTIONS).tolist()
    frame, _, _ = miscalibrated_data(500, seed=4)
    assert loaded.predict_frame(frame).tolist() == oracle.predict_frame(frame).tolist()
    # Uncalibrated artifacts have no calibration entry at all (their bytes are unchanged by the option).
    assert b'"calibration"' not in raw.to_bytes() and raw.calibration_ is None


def test_a_tampered_map_is_refused_on_load(calibrated: tuple) -> None:
    _, oracle = calibrated
    header, _, payload = oracle.to_bytes().partition(b"\n")
    data = json.loads(payload)
    data["calibration"]["values"] = data["calibration"]["values"][::-1]  # decreasing: not a calibration
    with pytest.raises(ValueError, match="values must not decrease"):
        load_oracle(header + b"\n" + json.dumps(data).encode())
    data["calibration"] = {"method": "pickle"}
    with pytest.raises(ValueError, match="unknown calibration"):
        load_oracle(ARTIFACT_MAGIC + b"lightgbm\n" + json.dumps(data).encode())


@pytest.mark.parametrize("name", ["platt", "", "Isotonic", "sklearn.isotonic.IsotonicRegression"])
def test_only_allowed_calibrations_are_named(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown calibration .*: none or isotonic"):
        check_calibration(name)


def test_rewards_outside_zero_one_are_refused() -> None:
    with pytest.raises(ValueError, match=r"rewards must lie in \[0, 1\]"):
        IsotonicCalibration.fit(np.array([0.1, 0.2]), np.array([0.0, 2.5]))
