"""The action catalogue and the eligibility rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditgate.simulator import FEATURES, ActionCatalogue, ActionSpec, PaymentWorld, TrafficBatch
from banditgate.simulator.actions import EXEMPTION_LIMIT_EUR
from banditgate.simulator.markets import COUNTRIES

SCA_COUNTRIES = {c.code for c in COUNTRIES if c.sca}
LOCAL_ACQUIRER_COUNTRIES = {c.code for c in COUNTRIES if c.local_acquirer}


def eligible_frame(frame: pd.DataFrame, eligible: np.ndarray, world: PaymentWorld) -> pd.DataFrame:
    return pd.DataFrame(eligible, columns=list(world.catalogue.ids), index=frame.index)


def test_catalogue_has_ten_actions_with_nine_features_each(world: PaymentWorld) -> None:
    catalogue = world.catalogue
    assert len(catalogue) == 10
    assert {"none", "route_secondary", "route_local_acquirer", "3ds_force", "3ds_exempt", "retry_instant",
            "iso_reformat", "account_updater", "route_secondary+3ds_force",
            "retry_instant+account_updater"} == set(catalogue.ids)  # fmt: skip
    for action_id in catalogue.ids:
        features = catalogue.features(action_id)
        assert len(features) == 9
        assert all(isinstance(v, str | int | float | bool) for v in features.values())
    assert len(FEATURES) + 9 == 31  # context + action features, plus the action id: the model's ~30 columns
    combo = catalogue.features("route_secondary+3ds_force")
    assert combo["acquirer"] == "secondary" and combo["is_3ds"] and combo["n_interventions"] == 2
    assert catalogue.features("3ds_force")["latency_ms"] > catalogue.features("none")["latency_ms"] + 1000


def test_unknown_actions_and_bad_catalogues_are_refused() -> None:
    catalogue = ActionCatalogue()
    with pytest.raises(ValueError, match="unknown action 'teleport'"):
        catalogue.features("teleport")
    with pytest.raises(ValueError, match="'none' and 'iso_reformat'"):
        ActionCatalogue((ActionSpec("none"), ActionSpec("route_secondary", acquirer="secondary")))
    with pytest.raises(ValueError, match="acquirer"):
        ActionSpec("x", acquirer="moon")


def test_at_least_two_actions_always_eligible(week_eligible: np.ndarray) -> None:
    counts = week_eligible.sum(axis=1)
    assert counts.min() >= 2
    assert week_eligible[:, 0].all()  # "none"


def test_the_eligible_set_varies(week_eligible: np.ndarray, week_frame: pd.DataFrame) -> None:
    counts = week_eligible.sum(axis=1)
    assert len(np.unique(counts)) >= 6
    assert counts.max() >= 8
    distinct_sets = {tuple(row) for row in week_eligible.tolist()}
    assert len(distinct_sets) >= 20
    assert 2 <= week_frame["n_eligible"].median() <= 8


def test_eligibility_rules_hold(world: PaymentWorld, week_frame: pd.DataFrame, week_eligible: np.ndarray) -> None:
    f = week_frame
    e = eligible_frame(f, week_eligible, world)
    ecommerce = f["device"].isin(["web", "app"])
    scheme = f["card_brand"].isin(["visa", "mastercard", "maestro"])

    assert e["iso_reformat"].all()
    assert (e["route_secondary"] == scheme).all()  # no Amex / Discover on the secondary acquirer
    local_ok = scheme & f["is_cross_border"] & f["issuer_country"].isin(LOCAL_ACQUIRER_COUNTRIES)
    assert (e["route_local_acquirer"] == local_ok).all()
    force_ok = ecommerce & ~f["is_recurring"] & ~f["mcc"].isin(["4111", "4121"])
    assert (e["3ds_force"] == force_ok).all()
    exempt_ok = ecommerce & ~f["is_recurring"] & f["issuer_country"].isin(SCA_COUNTRIES)
    assert (e["3ds_exempt"] == (exempt_ok & (f["amount_eur"] <= EXEMPTION_LIMIT_EUR))).all()
    assert not e.loc[f["amount_eur"] > EXEMPTION_LIMIT_EUR, "3ds_exempt"].any()
    assert not e.loc[~f["issuer_country"].isin(SCA_COUNTRIES), "3ds_exempt"].any()
    retry_ok = (f["retry_count"].between(1, 2) | (f["is_recurring"] & (f["retry_count"] <= 2))) & (f["mcc"] != "7995")
    assert (e["retry_instant"] == retry_ok).all()
    assert (e["account_updater"] == (f["stored_credential"] & scheme)).all()
    assert (e["route_secondary+3ds_force"] == (e["route_secondary"] & e["3ds_force"])).all()
    assert (e["retry_instant+account_updater"] == (e["retry_instant"] & e["account_updater"])).all()
    # Each rule actually bites somewhere.
    for action_id in world.catalogue.ids:
        if action_id not in ("none", "iso_reformat"):
            assert 0.0 < e[action_id].mean() < 1.0, action_id


def test_transaction_eligible_ids_match_the_matrix(world: PaymentWorld, week: list[TrafficBatch]) -> None:
    batch = week[0]
    for tx, row in zip(batch.transactions(), batch.eligible, strict=False):
        assert tx.eligible == tuple(a for a, ok in zip(world.catalogue.ids, row, strict=True) if ok)
        assert world.eligible_actions(tx.context) == tx.eligible
        if tx.row == 300:
            break


def test_decision_request_body(week: list[TrafficBatch]) -> None:
    tx = next(week[0].transactions())
    body = tx.decision_request(policy="default")
    assert body["decision_id"] == tx.id and body["policy"] == "default"
    assert body["context"] is tx.context
    assert [a["id"] for a in body["actions"]] == list(tx.eligible)
    assert all(len(a["features"]) == 9 for a in body["actions"])
    assert 1 <= len(body["actions"]) <= 64
