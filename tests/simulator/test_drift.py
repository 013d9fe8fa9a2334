"""Drift scenarios change what they should, and nothing else."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from banditgate.simulator import PRESETS, DriftRamp, DriftScenario, PaymentWorld, TrafficBatch
from banditgate.simulator.contexts import FEATURES

LATE_DAY = 100  # every default scenario is at full strength
SEED = 5
N = 6000


def late_batch(scenario: str) -> TrafficBatch:
    return PaymentWorld(scenario).day_batch(day=LATE_DAY, decisions_per_day=N, seed=SEED)


@pytest.fixture(scope="module")
def batches() -> dict[str, TrafficBatch]:
    return {name: late_batch(name) for name in PRESETS}


def same_contexts(a: TrafficBatch, b: TrafficBatch) -> bool:
    return len(a) == len(b) and all(np.array_equal(a.contexts[k], b.contexts[k]) for k in FEATURES)


def psi(expected: pd.Series, actual: pd.Series) -> float:
    e, a = expected.value_counts(normalize=True).align(actual.value_counts(normalize=True), fill_value=0.0)
    e, a = e.clip(lower=1e-4), a.clip(lower=1e-4)
    return float(((a - e) * np.log(a / e)).sum())


def test_defaults_follow_the_design() -> None:
    assert PRESETS["covariate"].covariate == DriftRamp(0.6, 15, 90.0)
    assert PRESETS["concept"].concept == DriftRamp(0.8, 10, 90.0)
    assert PRESETS["mixed"].covariate == DriftRamp(0.4, 15) and PRESETS["mixed"].concept == DriftRamp(0.5, 20)
    assert PRESETS["prior"].prior == DriftRamp(0.5, 15)
    assert PRESETS["none"].effects(1000.0) == PRESETS["none"].effects(0.0)
    with pytest.raises(ValueError, match="unknown drift scenario"):
        DriftScenario.preset("sideways")
    with pytest.raises(ValueError, match=r"magnitude must be in \[0, 1\]"):
        DriftRamp(1.5, 0)


@given(
    magnitude=st.floats(0.0, 1.0),
    onset=st.floats(-50.0, 200.0),
    ramp=st.floats(0.0, 200.0),
    day=st.floats(-100.0, 400.0),
)
def test_ramp_follows_the_blind_period_formula(magnitude: float, onset: float, ramp: float, day: float) -> None:
    effect = DriftRamp(magnitude, onset, ramp).effect(day)
    expected = magnitude * (float(day >= onset) if ramp == 0 else min(1.0, max(0.0, (day - onset) / ramp)))
    assert effect == pytest.approx(expected, abs=1e-12)
    assert 0.0 <= effect <= magnitude
    assert DriftRamp(magnitude, onset, ramp).effect(day + 1.0) >= effect


def test_preset_overrides_apply_to_every_component() -> None:
    mixed = DriftScenario.preset("mixed", magnitude=0.3, onset_day=5, ramp_days=10)
    assert mixed.covariate == DriftRamp(0.3, 5, 10) == mixed.concept
    effects = mixed.effects(np.array([0.0, 10.0, 20.0]))
    np.testing.assert_allclose(effects.covariate, [0.0, 0.15, 0.3])


def test_nothing_changes_before_onset() -> None:
    day0 = {name: PaymentWorld(name).day_batch(day=5, decisions_per_day=1000, seed=SEED) for name in PRESETS}
    for name, batch in day0.items():
        assert same_contexts(batch, day0["none"]), name
        np.testing.assert_array_equal(batch.p_authorisation, day0["none"].p_authorisation)


def test_covariate_drift_moves_contexts_but_not_p_y_given_x(batches: dict[str, TrafficBatch]) -> None:
    drifted, base = batches["covariate"], batches["none"]
    assert not same_contexts(drifted, base)
    np.testing.assert_array_equal(drifted.micros, base.micros)  # same arrivals
    f0, f1 = base.to_frame(), drifted.to_frame()
    assert psi(f0["issuer_country"], f1["issuer_country"]) > 0.15
    assert f1["is_cross_border"].mean() > f0["is_cross_border"].mean() + 0.1
    assert f1["amount_eur"].median() > 1.3 * f0["amount_eur"].median()
    assert (f1["device"] == "app").mean() > (f0["device"] == "app").mean()
    # P(Y|X) unchanged: the drifted world scores any fixed context exactly as the stable one does.
    stable, moved = PaymentWorld("none"), PaymentWorld("covariate")
    t = stable.epoch + timedelta(days=LATE_DAY)
    contexts = drifted.contexts.take(slice(0, 300))
    times = np.full(len(contexts), drifted.micros[0])
    np.testing.assert_array_equal(
        moved.authorisation_matrix(contexts, times), stable.authorisation_matrix(contexts, times)
    )
    np.testing.assert_array_equal(moved.chargeback_matrix(contexts, times), stable.chargeback_matrix(contexts, times))
    context = contexts.records()[0]
    assert moved.authorisation_probability(context, "none", t) == stable.authorisation_probability(context, "none", t)


def test_concept_drift_keeps_contexts_but_changes_the_best_action(batches: dict[str, TrafficBatch]) -> None:
    drifted, base = batches["concept"], batches["none"]
    assert same_contexts(drifted, base)  # label-free detectors cannot see it
    np.testing.assert_array_equal(drifted.eligible, base.eligible)
    np.testing.assert_array_equal(drifted.noise, base.noise)
    changed = drifted.best_actions() != base.best_actions()
    assert changed.mean() > 0.3
    assert abs(drifted.p_authorisation[:, 0].mean() - base.p_authorisation[:, 0].mean()) < 0.01  # not a prior shift
    rows = np.arange(len(base))
    stale = drifted.p_authorisation[rows, base.best_actions()]
    fresh = drifted.p_authorisation[rows, drifted.best_actions()]
    assert (fresh - stale).mean() > 0.01  # yesterday's best policy now loses authorisations
    np.testing.assert_array_equal(drifted.p_chargeback, base.p_chargeback)


def test_concept_drift_ramps_in_after_onset() -> None:
    world, stable = PaymentWorld("concept"), PaymentWorld("none")
    gaps = []
    for day in (5, 9, 40, 70, 100, 120):  # day d covers [d, d + 1)
        a = world.day_batch(day=day, decisions_per_day=500, seed=SEED)
        b = stable.day_batch(day=day, decisions_per_day=500, seed=SEED)
        gaps.append(float(np.abs(a.p_authorisation - b.p_authorisation).mean()))
    assert gaps[0] == gaps[1] == 0.0
    assert gaps[2] < gaps[3] < gaps[4]
    assert gaps[5] == pytest.approx(gaps[4], rel=0.2)  # full strength after onset + 90 days


def test_prior_drift_moves_base_rates_but_not_contexts_or_rankings(batches: dict[str, TrafficBatch]) -> None:
    drifted, base = batches["prior"], batches["none"]
    assert same_contexts(drifted, base)
    assert drifted.p_authorisation.mean() < base.p_authorisation.mean() - 0.02
    assert drifted.p_chargeback.mean() > 1.2 * base.p_chargeback.mean()
    np.testing.assert_array_equal(drifted.best_actions(), base.best_actions())


def test_mixed_drift_moves_both(batches: dict[str, TrafficBatch]) -> None:
    drifted, base = batches["mixed"], batches["none"]
    assert not same_contexts(drifted, base)
    moved = PaymentWorld("mixed").authorisation_matrix(base.contexts, base.micros)
    assert np.abs(moved - base.p_authorisation).max() > 0.05
