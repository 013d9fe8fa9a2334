"""Ground truth: authorisation probabilities, best actions by segment, policy values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditgate.simulator import PaymentWorld, TrafficBatch


def best_in(frame: pd.DataFrame, mask: pd.Series) -> pd.Series:
    return frame.loc[mask, "best_action"].value_counts(normalize=True)


def test_probabilities_are_plausible(week_p: np.ndarray, week_frame: pd.DataFrame) -> None:
    assert np.all((week_p > 0.0) & (week_p < 1.0))
    none = pd.Series(week_p[:, 0], index=week_frame.index)
    assert 0.85 < none.mean() < 0.95
    by_device = none.groupby(week_frame["device"], observed=True).mean()
    assert by_device["pos"] > by_device["app"] > by_device["moto"]
    assert none[week_frame["is_cross_border"]].mean() < none[~week_frame["is_cross_border"]].mean()
    assert none[week_frame["risk_score"] > 0.3].mean() < none[week_frame["risk_score"] < 0.05].mean()


def test_the_best_action_differs_across_segments(week_frame: pd.DataFrame) -> None:
    f = week_frame
    shares = f["best_action"].value_counts(normalize=True)
    assert (shares > 0.01).sum() >= 8
    assert shares.max() < 0.4  # no action is best almost everywhere

    ecommerce = f["device"].isin(["web", "app"]) & ~f["is_recurring"]
    sca = f["issuer_country"].isin(["NL", "DE", "FR", "GB", "ES", "IT", "BE", "SE", "PL"])
    low_risk_small = ecommerce & sca & (f["amount_eur"] < 30) & (f["risk_score"] < 0.05)
    assert best_in(f, low_risk_small).idxmax() == "3ds_exempt"
    risky_large = ecommerce & f["is_cross_border"] & (f["amount_eur"] > 200) & (f["risk_score"] > 0.2)
    assert best_in(f, risky_large).filter(like="3ds_force").sum() > 0.7
    brazil = (f["issuer_country"] == "BR") & f["is_cross_border"] & f["card_brand"].isin(["visa", "mastercard"])
    assert best_in(f, brazil).idxmax() == "route_local_acquirer"
    stale = f["stored_credential"] & (f["credential_age_months"] > 40) & f["card_brand"].isin(["visa", "mastercard"])
    assert best_in(f, stale).filter(like="account_updater").sum() > 0.8
    card_present = f["device"] == "pos"
    assert best_in(f, card_present & ~f["issuer_country"].isin(["US", "GB", "CA", "AU"])).idxmax() == "none"


def test_retries_help_only_some_issuers(world: PaymentWorld, week: list[TrafficBatch]) -> None:
    j = world.catalogue.position("retry_instant")
    gains = {}
    for batch in week:
        eligible = batch.eligible[:, j]
        issuers = world.cards.issuer[batch.contexts["bin"][eligible]]
        gain = batch.p_authorisation[eligible, j] - batch.p_authorisation[eligible, 0]
        for issuer, g in zip(issuers.tolist(), gain.tolist(), strict=True):
            gains.setdefault(issuer, []).append(g)
    mean_gain = np.array([np.mean(g) for g in gains.values()])
    assert (mean_gain > 0.005).mean() > 0.15
    assert (mean_gain < -0.005).mean() > 0.15


def test_scalar_and_batch_paths_agree(world: PaymentWorld, week: list[TrafficBatch]) -> None:
    for tx in list(week[2].transactions())[:50]:
        everything = world.authorisation_probabilities(tx.context, None, tx.t)
        np.testing.assert_allclose(everything, tx.batch.p_authorisation[tx.row], rtol=1e-12)
        for action_id in tx.eligible:
            p = world.authorisation_probability(tx.context, action_id, tx.t)
            assert p == pytest.approx(tx.authorisation_probability(action_id), rel=1e-12)
            q = world.chargeback_probability(tx.context, action_id, tx.t)
            assert q == pytest.approx(tx.chargeback_probability(action_id), rel=1e-12)
        assert world.best_action(tx.context, tx.eligible, tx.t) == tx.best_action()
        assert world.best_action(tx.context, None, tx.t) == tx.best_action()


def test_best_action_respects_the_given_eligible_set(world: PaymentWorld, week: list[TrafficBatch]) -> None:
    tx = next(tx for tx in week[0].transactions() if tx.best_action() != "none")
    assert world.best_action(tx.context, ["none", "iso_reformat"], tx.t) in ("none", "iso_reformat")
    with pytest.raises(ValueError, match="not eligible"):
        tx.authorisation_probability(next(a for a in world.catalogue.ids if a not in tx.eligible))


def test_policy_value_is_the_probability_weighted_authorisation(world: PaymentWorld, week: list[TrafficBatch]) -> None:
    tx = next(week[1].transactions())
    uniform = {a: 1.0 / len(tx.eligible) for a in tx.eligible}
    p = world.authorisation_probabilities(tx.context, tx.eligible, tx.t)
    assert world.policy_value(tx.context, uniform, tx.t) == pytest.approx(p.mean(), rel=1e-12)
    assert tx.expected_reward(uniform) == pytest.approx(p.mean(), rel=1e-12)
    greedy = {tx.best_action(): 1.0}
    assert tx.expected_reward(greedy) == pytest.approx(p.max(), rel=1e-12)

    batch = week[1]
    pi = batch.eligible / batch.eligible.sum(axis=1, keepdims=True)
    values = batch.expected_reward(pi)
    assert values[0] == pytest.approx(p.mean(), rel=1e-12)
    best = batch.p_authorisation[np.arange(len(batch)), batch.best_actions()]
    assert np.all(values <= best + 1e-12)
    assert 0.01 < (best - values).mean() < 0.1  # exploring uniformly costs a few points of authorisation
    with pytest.raises(ValueError, match="ineligible"):
        batch.expected_reward(np.full(batch.eligible.shape, 0.1))
