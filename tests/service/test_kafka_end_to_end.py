"""A scaled-out deployment end to end: two serving instances with their own outboxes, one broker, one joiner,
one central PostgreSQL ledger. Decisions on instance A, their rewards on instance B, all joined as the
clients were told; a generation deployed in the central ledger is served by both."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from banditgate.ledger.db import make_engine
from banditgate.ledger.join import JoinWriter
from banditgate.ledger.models import Decision, Reward
from banditgate.service.joiner import Joiner, JoinerMetrics, JoinerOptions
from banditgate.service.settings import Settings
from tests.service.helpers import ACTIONS, deploy, train_oracle
from tests.service.test_joiner import running, wait_for
from tests.support import postgres
from tests.support.kafka import Broker
from tests.support.server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def body(decision_id: str, country: str) -> dict[str, object]:
    return {
        "decision_id": decision_id,
        "context": {"amount_eur": 40.0, "issuer_country": country},
        "actions": [{"id": a["id"], "features": a.get("features", {})} for a in ACTIONS],
    }


def test_decisions_on_one_instance_rewards_on_another_all_joined(
    kafka_broker: Broker, postgres_admin_url: str, tmp_path: Path
) -> None:
    central = postgres.fresh_database(postgres_admin_url)
    suffix = uuid.uuid4().hex[:8]
    common = {
        "database_url": central,
        "artifact_dir": tmp_path / "artifacts",  # a volume every instance mounts
        "decision_process": False,
        "kafka_bootstrap_servers": kafka_broker.bootstrap_servers,
        "kafka_decisions_topic": f"decisions-{suffix}",
        "kafka_rewards_topic": f"rewards-{suffix}",
        "kafka_partitions": 2,
        "policy_refresh_seconds": 0.5,
    }
    settings_a = Settings(**common, outbox_path=tmp_path / "a" / "outbox.db", instance_id="serve-a")
    settings_b = Settings(**common, outbox_path=tmp_path / "b" / "outbox.db", instance_id="serve-b")
    options = JoinerOptions(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        decisions_topic=settings_a.kafka_decisions_topic,
        rewards_topic=settings_a.kafka_rewards_topic,
        group_id=f"joiner-{suffix}",
        partitions=2,
        poll_seconds=0.2,
    )
    engine = make_engine(central)
    told: dict[str, dict] = {}
    rewards: dict[str, float] = {}
    try:
        with (
            LiveServer(settings_a) as a,
            LiveServer(settings_b) as b,
            a.client() as client_a,
            b.client() as client_b,
            running(Joiner(JoinWriter(engine), options, JoinerMetrics())) as outcome,
        ):
            for i in range(40):
                response = client_a.post("/v1/decisions", json=body(f"a-{i}", "NL" if i % 2 else "DE"))
                assert response.status_code == 200, response.text
                told[f"a-{i}"] = response.json()
            for decision_id in told:  # B never saw these decisions
                value = float(int(decision_id.split("-")[1]) % 3 == 0)
                response = client_b.post("/v1/rewards", json={"decision_id": decision_id, "reward": value})
                assert response.status_code == 202 and response.json()["status"] == "pending join", response.text
                rewards[decision_id] = value
            # A generation deployed in the central ledger (through A) reaches B by its policy refresh.
            number = deploy(a, "default", train_oracle())
            probes = iter(range(1000))

            def b_serves_it() -> bool:
                decision_id = f"b-{next(probes)}"
                answer = client_b.post("/v1/decisions", json=body(decision_id, "NL")).json()
                told[decision_id] = answer
                return answer["generation"] == number

            wait_for(b_serves_it, "instance B to serve the new generation", timeout=60)
            after = client_a.post("/v1/decisions", json=body("a-after", "FR"))
            assert after.json()["generation"] == number and after.json()["model_sha256"]
            told["a-after"] = after.json()
            response = client_a.post("/v1/rewards", json={"decision_id": "a-after", "reward": 1})
            assert response.status_code == 201  # A made it: recorded
            rewards["a-after"] = 1.0

            def joined() -> bool:
                assert "error" not in outcome, outcome
                with engine.connect() as connection:
                    decisions = connection.execute(select(Decision.decision_id)).scalars().all()
                    labelled = connection.execute(select(Reward.decision_id)).scalars().all()
                return len(decisions) >= len(told) and len(labelled) >= len(rewards)

            wait_for(joined, "the joiner to land every event in the ledger", timeout=180)
        with engine.connect() as connection:
            decisions = {row.decision_id: row for row in connection.execute(select(Decision))}
            joined_rewards = connection.execute(select(Reward.decision_id, Reward.value, Reward.revision)).all()
        assert set(decisions) == set(told)
        for decision_id, answer in told.items():
            row = decisions[decision_id]
            assert (row.action_id, row.propensity, row.generation, row.model_sha256) == (
                answer["action_id"],
                answer["propensity"],
                answer["generation"],
                answer["model_sha256"],
            )
            assert dict(zip([x["id"] for x in row.actions], row.probabilities, strict=True)) == answer["probabilities"]
        assert sorted(joined_rewards) == sorted((d, v, 1) for d, v in rewards.items())
    finally:
        engine.dispose()
