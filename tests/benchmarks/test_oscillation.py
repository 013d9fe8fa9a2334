"""The oscillation benchmark's settings: the shifted worlds move every authorisation logit by the same amount, and
every configuration keeps the policy's own sharp gamma and floor (retraining's defaults would choose them from the
evidence, which is not the setting the benchmark studies)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from banditgate.pipelines.retrain import RetrainOptions
from banditgate.simulator import PaymentWorld
from banditgate.simulator.drift import DriftScenario
from benchmarks.oscillation import SETTINGS, ShiftedWorld, StrongActionsWorld, configurations, make_world


def _batch(world: PaymentWorld):
    return next(iter(world.traffic_batches(world.epoch, 1, 300, 5, "t")))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def test_adyen_world_is_the_prior_drift_step():
    step = PaymentWorld(DriftScenario.preset("prior", magnitude=1.0, onset_day=0, ramp_days=0), seed=21)
    shifted = _batch(ShiftedWorld(-1.0, 21))
    reference = _batch(step)
    np.testing.assert_array_equal(shifted.p_authorisation, reference.p_authorisation)
    np.testing.assert_array_equal(shifted.p_chargeback, reference.p_chargeback)


def test_imbalanced_world_raises_every_authorisation_logit_by_one():
    plain, raised = _batch(PaymentWorld("none", seed=21)), _batch(ShiftedWorld(1.0, 21))
    np.testing.assert_allclose(_logit(raised.p_authorisation) - _logit(plain.p_authorisation), 1.0, atol=1e-6)
    # Rarer declines under uniform random: the class imbalance the setting is for.
    assert (1.0 - raised.p_authorisation).mean() < 0.6 * (1.0 - plain.p_authorisation).mean()


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_configurations_keep_the_policys_gamma_and_floor(setting):
    known = configurations(setting)
    assert next(iter(known)) == setting
    for name, config in known.items():
        options = RetrainOptions(**config["options"])
        assert options.gamma_schedule == "fixed" and options.floor_schedule == "policy", name
        assert config["shift"] == SETTINGS[setting]["shift"]
        pooled = name.startswith("pooled")
        assert options.pool_generations is pooled and (options.window == timedelta(days=1)) is not pooled, name
    assert known["floor 0.05"]["floor"] == 0.05 and known[setting]["floor"] == 0.001


def test_strong_actions_world_scales_every_actions_effect_around_the_neutral_action():
    plain, strong = PaymentWorld("none", seed=21), StrongActionsWorld(5.0, -0.5, 21)
    before, after = _batch(plain), _batch(strong)
    none = plain.catalogue.position("none")
    effect_before = _logit(before.p_authorisation) - _logit(before.p_authorisation[:, [none]])
    effect_after = _logit(after.p_authorisation) - _logit(after.p_authorisation[:, [none]])
    np.testing.assert_allclose(effect_after, 5.0 * effect_before, atol=1e-6)
    np.testing.assert_allclose(
        _logit(after.p_authorisation[:, none]) - _logit(before.p_authorisation[:, none]), -0.5, atol=1e-6
    )
    # The ranking of the eligible actions (hence the best action) is unchanged; chargebacks are the simulator's.
    np.testing.assert_array_equal(after.best_actions(), before.best_actions())
    np.testing.assert_array_equal(after.p_chargeback, before.p_chargeback)
    with pytest.raises(ValueError, match="scale"):
        StrongActionsWorld(0.0, 0.0, 21)


def test_strong_setting_makes_a_good_policy_cut_the_declines_of_its_logs_by_far_more_than_half():
    config = configurations("strong")["strong"]
    world = make_world(config, 21)
    assert isinstance(world, StrongActionsWorld) and isinstance(
        make_world(configurations("adyen")["adyen"], 21), ShiftedWorld
    )
    batch = next(iter(world.traffic_batches(world.epoch, 1, 2000, 5, "t")))
    uniform = batch.expected_reward(batch.eligible / batch.eligible.sum(axis=1, keepdims=True)).mean()
    best = batch.p_authorisation[np.arange(len(batch)), batch.best_actions()].mean()
    assert 0.85 < uniform < 0.92 and 0.97 < best < 0.99, (uniform, best)
    assert 1.0 - best < 0.3 * (1.0 - uniform)
