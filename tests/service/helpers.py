"""Deploying a trained generation behind a live server, the way the retraining job will."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from banditgate.ledger import promotion, registry
from banditgate.policies.actions import Action
from banditgate.policies.oracles import LightGBMOracle, RewardOracle, records_to_frame
from banditgate.service.routes.generations import promotion_gate
from banditgate.service.settings import Settings
from tests.support.server import LiveServer

ACTIONS = [
    {"id": "route_a", "features": {"fee_bps": 10}},
    {"id": "route_b", "features": {"fee_bps": 14}},
    {"id": "3ds"},
]


@functools.cache
def train_oracle(seed: int = 0, n: int = 3000) -> RewardOracle:
    """Route B is best in NL, 3-D Secure for large amounts, route A otherwise.

    Trained once per ``(seed, n)`` in a test session: the tests only predict with it and store its bytes."""
    rng = np.random.default_rng(seed)
    contexts = [
        {"amount_eur": float(rng.lognormal(4, 1)), "issuer_country": str(rng.choice(["NL", "DE", "FR"]))}
        for _ in range(n)
    ]
    actions = [Action(ACTIONS[i]["id"], ACTIONS[i].get("features", {})) for i in rng.integers(0, 3, n)]
    best = [
        "route_b" if c["issuer_country"] == "NL" else "3ds" if c["amount_eur"] > 200 else "route_a" for c in contexts
    ]
    rewards = np.array([float(rng.random() < (0.9 if a.id == b else 0.4)) for a, b in zip(actions, best, strict=True)])
    return LightGBMOracle(num_boost_round=30).fit(records_to_frame(contexts, actions), rewards)


def deploy(server: LiveServer, policy: str, oracle: RewardOracle, exploration_params: dict | None = None) -> int:
    """Store, register and deploy ``oracle`` as the next generation of ``policy``; reload the server's policies."""
    runtime = server.runtime
    artifact_dir = runtime.settings.artifact_dir

    def register(session):
        current = registry.get_policy(session, policy)
        number = len(registry.list_generations(session, policy))
        path, digest = registry.store_artifact(artifact_dir, policy, number, oracle.to_bytes())
        generation = registry.register_generation(
            session,
            policy,
            artifact_path=path,
            artifact_sha256=digest,
            oracle=oracle.kind,
            oracle_params=oracle.hyperparameters(),
            exploration=current.exploration,
            exploration_params=exploration_params or {},
        )
        registry.deploy_generation(session, policy, generation.number, actor="test", reason="test deploy")
        return generation.number

    number = runtime.writer.submit(register).result(timeout=30)
    server.call(runtime.refresh_policies())
    return number


def without_gate(server: LiveServer) -> None:
    """Promote without the sufficiency gate: for tests of the mechanics of promotion (the gate has its own)."""
    server.app.dependency_overrides[promotion_gate] = lambda: promotion.NO_GATE


@pytest.fixture(name="settings", params=[False, True], ids=["in-process", "decision-process"])
def settings_in_both_modes(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The test settings, deciding in the serving process and then in a decision process: import it into a test
    module to run its tests both ways. Without the standby decision process, which only matters when a decision
    process dies (test_decision_process.py and test_durability.py keep it): starting it imports the models'
    libraries in one more process per server, seconds of CPU each time on a 2-core machine."""
    return settings.model_copy(update={"decision_process": request.param, "decision_process_standby": False})
