"""Outcomes: authorisation and chargeback events, their delays and rates, common random numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from banditgate.simulator import AUTHORISATION, CHARGEBACK, Outcome, PaymentWorld, TrafficBatch, combined_reward
from banditgate.simulator.outcomes import (
    AUTHORISATION_DELAY_S,
    CHARGEBACK_DELAY_DAYS,
    OutcomeNoise,
    authorisation_delay,
    realise,
)


@pytest.fixture(scope="module")
def outcomes(week: list[TrafficBatch]) -> list[Outcome]:
    """The outcome of the first eligible action ("none") of every transaction of the week."""
    return [tx.outcome(tx.eligible[0]) for batch in week for tx in batch.transactions()]


def test_events_have_the_right_kinds_and_values(outcomes: list[Outcome]) -> None:
    for out in outcomes:
        auth = out.events[0]
        assert auth.kind == AUTHORISATION and auth.value == float(out.authorised)
        if out.authorised:
            assert len(out.events) == 2
            cb = out.events[1]
            assert cb.kind == CHARGEBACK and cb.value == float(out.chargeback)
        else:
            assert out.chargeback is None and len(out.events) == 1
        for event in out.events:
            assert event.decision_id == out.decision_id
            assert event.observed_at.tzinfo is not None


def test_authorisation_delays_are_seconds(outcomes: list[Outcome]) -> None:
    delays = np.array([out.events[0].delay.total_seconds() for out in outcomes])
    assert delays.min() >= 0.2 and delays.max() <= 5.0
    assert 0.3 < np.median(delays) < 1.5


def test_forced_3ds_answers_later() -> None:
    u = np.linspace(0.01, 0.99, 99)
    assert np.all(authorisation_delay(1720.0, u) >= authorisation_delay(320.0, u))


def test_chargeback_delays_are_45_to_180_days_and_right_skewed(outcomes: list[Outcome]) -> None:
    days = np.array([out.events[1].delay / timedelta(days=1) for out in outcomes if out.authorised])
    assert days.min() >= 45.0 and days.max() <= 180.0
    assert 60 < np.median(days) < 85
    assert np.mean(days) > np.median(days)
    assert stats.skew(days) > 0.5
    law = CHARGEBACK_DELAY_DAYS.quantile(np.linspace(0, 1, 10_001))
    assert law[0] == 45.0 and law[-1] == 180.0 and np.all(np.diff(law) >= 0)
    assert AUTHORISATION_DELAY_S.quantile(0.0) == 0.2


def test_observed_at_is_decision_time_plus_delay(week: list[TrafficBatch]) -> None:
    tx = next(week[0].transactions())
    for event in tx.outcome("none").events:
        assert event.observed_at == tx.t + event.delay


def test_rates_match_the_true_probabilities(outcomes: list[Outcome]) -> None:
    p = np.array([out.p_authorisation for out in outcomes])
    authorised = np.array([out.authorised for out in outcomes])
    assert abs(authorised.mean() - p.mean()) < 4 * np.sqrt(p.mean() * (1 - p.mean()) / p.size)
    chargebacks = np.array([out.chargeback for out in outcomes if out.authorised])
    q = np.array([out.p_chargeback for out in outcomes if out.authorised])
    assert 0.003 < chargebacks.mean() < 0.03
    assert abs(chargebacks.sum() - q.sum()) < 4 * np.sqrt(q.sum())


def test_chargeback_rates_depend_on_context_and_action(world: PaymentWorld, week: list[TrafficBatch]) -> None:
    q = np.vstack([b.p_chargeback for b in week])
    eligible = np.vstack([b.eligible for b in week])
    median = np.median(q[:, 0])
    assert 0.003 < median < 0.01 and np.quantile(q[:, 0], 0.9) > 0.02
    j = world.catalogue.position("3ds_force")
    assert np.all(q[eligible[:, j], j] < q[eligible[:, j], 0])  # authenticated: liability shifts to the issuer


def test_outcomes_are_deterministic_and_use_common_random_numbers(week: list[TrafficBatch]) -> None:
    batch = week[3]
    for tx in list(batch.transactions())[:500]:
        assert tx.outcome(tx.eligible[-1]) == tx.outcome(tx.eligible[-1])
        # One uniform per transaction: an action with a higher probability is authorised whenever a lower one is.
        outs = sorted((tx.outcome(a) for a in tx.eligible), key=lambda o: o.p_authorisation)
        authorised = [o.authorised for o in outs]
        assert authorised == sorted(authorised)


def test_clean_labels_can_be_confirmed_at_a_fixed_age() -> None:
    world = PaymentWorld(clean_label_delay_days=120.0)
    batch = world.day_batch(decisions_per_day=1000, seed=2)
    for tx in batch.transactions():
        out = tx.outcome("none")
        if out.authorised and not out.chargeback:
            assert out.events[1].delay == timedelta(days=120)
        elif out.chargeback:
            assert timedelta(days=45) <= out.events[1].delay <= timedelta(days=180)


def test_realise_and_payload() -> None:
    at = datetime(2026, 1, 5, tzinfo=UTC)
    declined = realise("d-1", "none", at, 320.0, 0.3, 0.5, OutcomeNoise(0.9, 0.5, 0.0, 0.5))
    assert not declined.authorised and declined.chargeback is None
    assert declined.events[0].payload() == {
        "decision_id": "d-1",
        "reward": 0.0,
        "kind": "authorisation",
        "observed_at": (at + declined.events[0].delay).isoformat(),
    }
    assert combined_reward(1.0, 1.0, penalty=10.0) == -9.0


@pytest.mark.parametrize("law,median", [(CHARGEBACK_DELAY_DAYS, None), (AUTHORISATION_DELAY_S, 1.72)])
def test_scalar_and_vector_quantiles_agree(law, median) -> None:
    u = np.linspace(0.0, 1.0, 501)
    vector = law.quantile(u, None if median is None else np.full(u.size, median))
    scalar = [law.quantile(float(x), median) for x in u]
    np.testing.assert_allclose(vector, scalar, rtol=1e-12)
