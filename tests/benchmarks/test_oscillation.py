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
from benchmarks.oscillation import SETTINGS, ShiftedWorld, configurations


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
