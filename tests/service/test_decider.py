"""The in-process decision path: sampling frequencies, fallbacks, artifact integrity."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.stats import chisquare

from banditgate.ledger import registry
from banditgate.service.runtime import Runtime
from banditgate.service.settings import GateSettings, PolicySettings, Settings
from tests.service.helpers import ACTIONS, deploy, train_oracle
from tests.support.server import LiveServer

CONTEXT = {"amount_eur": 500.0, "issuer_country": "DE"}


def test_twenty_thousand_draws_match_the_logged_probabilities(server: LiveServer) -> None:
    """Chi-square goodness of fit of the chosen actions against the (non-uniform) probability vector."""
    deploy(server, "default", train_oracle(), exploration_params={"gamma": 20.0})
    decider = server.runtime.decider
    records = [decider.decide(CONTEXT, ACTIONS, decision_id=f"chi-{i}")[0] for i in range(20_000)]
    probabilities = np.array(records[0].probabilities)
    assert all(r.probabilities == records[0].probabilities for r in records)
    assert probabilities.max() < 0.9 and probabilities.min() > 0.01  # a real, non-trivial vector
    counts = Counter(r.action_id for r in records)
    observed = [counts[a["id"]] for a in ACTIONS]
    assert chisquare(observed, probabilities * len(records)).pvalue > 0.001
    assert all(r.propensity == r.probabilities[[a["id"] for a in ACTIONS].index(r.action_id)] for r in records)


def test_a_failing_oracle_falls_back_to_uniform(server: LiveServer) -> None:
    deploy(server, "default", train_oracle())
    # An action feature of a type the model cannot take (a list): the oracle raises, the payment still goes on.
    actions = [{"id": "route_a", "features": {"fee_bps": [1, 2]}}, {"id": "route_b"}]
    record, exploited = server.runtime.decider.decide(CONTEXT, actions, decision_id="fallback")
    assert record.exploration == "uniform" and "fallback" in record.exploration_params
    assert record.probabilities == [0.5, 0.5] and not exploited
    assert server.runtime.decider.fallbacks == 1


def test_a_tampered_artifact_is_not_served(server: LiveServer) -> None:
    runtime: Runtime = server.runtime
    deploy(server, "default", train_oracle())
    assert runtime.cache.get("default").generation == 1

    def tamper_and_deploy_next(session):
        path, _ = registry.store_artifact(runtime.settings.artifact_dir, "default", 2, train_oracle(seed=1).to_bytes())
        generation = registry.register_generation(
            session,
            "default",
            artifact_path=path,
            artifact_sha256="0" * 64,
            oracle="lightgbm",
            oracle_params={},
            exploration="squarecb",
            exploration_params={},
        )
        registry.deploy_generation(session, "default", generation.number, actor="mallory", reason="sneaky")

    runtime.writer.submit(tamper_and_deploy_next).result(timeout=30)
    server.call(runtime.refresh_policies())
    assert runtime.cache.get("default").generation == 1, "a generation whose sha256 does not match must not serve"


def test_each_decision_logs_the_values_its_policy_gate_segments_by(settings: Settings) -> None:
    """Global gate settings for one policy, its own for another: the logged segment values follow each."""
    settings = settings.model_copy(
        update={
            "gate": GateSettings(segment_keys=["issuer_country", "card_brand"]),
            "policies": {"default": PolicySettings(), "cards": PolicySettings(gate=GateSettings(segment_keys=["mcc"]))},
        }
    )
    context = {**CONTEXT, "card_brand": "visa", "mcc": "5411"}
    with LiveServer(settings) as live:
        default, _ = live.runtime.decider.decide(context, ACTIONS, decision_id="seg-default")
        cards, _ = live.runtime.decider.decide(context, ACTIONS, decision_id="seg-cards", policy="cards")
        missing, _ = live.runtime.decider.decide(CONTEXT, ACTIONS, decision_id="seg-missing")
    assert default.segment_values == {"issuer_country": "DE", "card_brand": "visa"}
    assert cards.segment_values == {"mcc": "5411"}
    assert missing.segment_values == {"issuer_country": "DE", "card_brand": None}
