"""Contexts: feature set, plausible marginals, seasonality, consistency between related features."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from banditgate.simulator import FEATURES, PaymentWorld, TrafficBatch
from banditgate.simulator.cards import BIN_PREFIXES, BRAND_INDEX
from banditgate.simulator.markets import CURRENCY_RATE


def test_every_context_has_the_22_features_as_flat_scalars(week: list[TrafficBatch]) -> None:
    tx = next(week[0].transactions())
    assert list(tx.context) == list(FEATURES)
    assert len(FEATURES) == 22
    kinds = {"float": float, "int": int, "bool": bool, "category": str}
    for name, kind in FEATURES.items():
        assert type(tx.context[name]) is kinds[kind], name


def test_amounts_are_lognormal_with_a_plausible_median(week_frame: pd.DataFrame) -> None:
    eur = week_frame["amount_eur"]
    assert 20 < eur.median() < 60
    assert eur.mean() > 1.5 * eur.median()  # right-skewed
    assert eur.min() > 0
    log_eur = np.log(eur)
    assert abs(float(((log_eur - log_eur.mean()) ** 3).mean() / log_eur.std() ** 3)) < 0.5  # roughly log-symmetric


def test_amount_eur_is_the_converted_amount(week: list[TrafficBatch]) -> None:
    contexts = week[0].contexts
    rate = CURRENCY_RATE[contexts["currency"]]
    np.testing.assert_allclose(contexts["amount_eur"], contexts["amount"] / rate, atol=0.006)


def test_categorical_marginals_are_varied(week_frame: pd.DataFrame) -> None:
    shares = {c: week_frame[c].value_counts(normalize=True) for c in week_frame.columns}
    assert (shares["currency"] > 0.001).sum() >= 6
    assert shares["currency"].idxmax() == "EUR"
    assert (shares["issuer_country"] > 0.005).sum() >= 10
    assert {"visa", "mastercard", "amex", "maestro"} <= set(shares["card_brand"][shares["card_brand"] > 0.02].index)
    assert shares["card_brand"].idxmax() == "visa"
    assert set(shares["device"].index) == {"web", "app", "moto", "pos"}
    assert week_frame["mcc"].nunique() == 12
    assert week_frame["bin"].nunique() > 150
    assert week_frame["merchant_id"].nunique() > 150
    assert 0.05 < week_frame["is_recurring"].mean() < 0.25
    assert 0.15 < week_frame["is_cross_border"].mean() < 0.45
    assert 0.8 < (week_frame["retry_count"] == 0).mean() < 0.95
    assert 0.0 < week_frame["risk_score"].median() < 0.15 < week_frame["risk_score"].quantile(0.95) < 1.0


def test_related_features_agree(world: PaymentWorld, week_frame: pd.DataFrame) -> None:
    f = week_frame
    assert (f["card_present"] == (f["device"] == "pos")).all()
    assert (f["is_cross_border"] == (f["issuer_country"].astype(str) != f["merchant_country"].astype(str))).all()
    assert not (f["is_recurring"] & f["device"].isin(["pos", "moto"])).any()
    assert (f.loc[f["is_recurring"], "stored_credential"]).all()
    assert (f.loc[~f["stored_credential"], "credential_age_months"] == 0).all()
    assert (f["credential_age_months"] <= f["customer_tenure_days"] / 30.44 + 1).all()
    # A BIN is tied to one brand, country and card type, following the scheme's prefix ranges.
    cards = world.cards
    index = {b: i for i, b in enumerate(cards.bins)}
    rows = f[["bin", "card_brand", "issuer_country", "card_type"]].drop_duplicates()
    for bin_, brand, country, card_type in rows.itertuples(index=False):
        i = index[bin_]
        assert cards.brand[i] == BRAND_INDEX[brand]
        assert world.schema.categories["issuer_country"][cards.country[i]] == country
        assert world.schema.categories["card_type"][cards.card_type[i]] == card_type
        assert len(bin_) == 6 and bin_.isdigit()
        assert bin_.startswith(BIN_PREFIXES[brand])


def test_hour_of_day_seasonality(week_frame: pd.DataFrame) -> None:
    volume = week_frame["hour_of_day"].value_counts().reindex(range(24), fill_value=0)
    assert volume[3] * 5 < volume[20]  # night trough, evening peak
    assert volume[12] > 2 * volume[6]
    # The mix moves with the hour: card-present shopping by day, subscription billing at night.
    pos_by_hour = (week_frame["device"] == "pos").groupby(week_frame["hour_of_day"]).mean()
    assert pos_by_hour[11] > 2 * pos_by_hour[3]
    recurring = week_frame["is_recurring"].groupby(week_frame["hour_of_day"]).mean()
    assert recurring[3] > 2 * recurring[15]
    foreign_us = (week_frame["issuer_country"] == "US").groupby(week_frame["hour_of_day"]).mean()
    assert foreign_us[2] > 2 * foreign_us[10]  # American cardholders shop in the European night


def test_weekday_seasonality(week_frame: pd.DataFrame) -> None:
    volume = week_frame["day_of_week"].value_counts()
    assert volume[4] > volume[0]  # Friday busier than Monday
    grocery = (week_frame["mcc"] == "5411").groupby(week_frame["day_of_week"]).mean()
    assert grocery[6] < 0.7 * grocery[5]  # shops are quiet on Sunday


def test_hour_and_weekday_are_in_the_worlds_time_zone() -> None:
    rng = np.random.default_rng(0)
    summer = PaymentWorld().sample_context(datetime(2026, 7, 1, 10, tzinfo=UTC), rng)  # CEST
    winter = PaymentWorld().sample_context(datetime(2026, 1, 7, 10, tzinfo=UTC), rng)  # CET
    assert (summer["hour_of_day"], summer["day_of_week"]) == (12, 2)
    assert (winter["hour_of_day"], winter["day_of_week"]) == (11, 2)
    utc = PaymentWorld(timezone="UTC").sample_context(datetime(2026, 1, 7, 10, tzinfo=UTC), rng)
    assert utc["hour_of_day"] == 10


def test_encode_round_trips_and_rejects_unknown_values(world: PaymentWorld, week: list[TrafficBatch]) -> None:
    batch = week[0].contexts.take(slice(0, 200))
    again = world.encode(batch.records())
    for name in FEATURES:
        np.testing.assert_array_equal(again[name], batch[name])
    context = batch.records()[0]
    with pytest.raises(ValueError, match="unknown bin"):
        world.encode({**context, "bin": "000000"})
    with pytest.raises(ValueError, match="missing feature 'mcc'"):
        world.encode({k: v for k, v in context.items() if k != "mcc"})


def test_structure_depends_on_the_world_seed() -> None:
    a, b = PaymentWorld(seed=0), PaymentWorld(seed=1)
    assert a.cards.bins != b.cards.bins
    assert PaymentWorld(seed=0).cards.bins == a.cards.bins
