"""POST /v1/decisions and GET /v1/decisions/{id} through a real uvicorn server."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sqlalchemy import func, select

from banditgate.ledger.models import Decision
from banditgate.ledger.registry import get_generation
from banditgate.policies.actions import Action
from banditgate.policies.exploration import SquareCB
from banditgate.policies.oracles import load_oracle, sha256_hex
from banditgate.policies.sampling import choose, uniform_draw
from tests.service.helpers import (
    ACTIONS,
    deploy,
    settings_in_both_modes,  # noqa: F401 - a fixture: both decision modes
    train_oracle,
)
from tests.support.server import LiveServer

BODY = {
    "context": {"amount_eur": 42.5, "issuer_country": "NL", "card_brand": "visa", "is_recurring": False},
    "actions": ACTIONS,
}


def decision_rows(server: LiveServer) -> int:
    with server.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(Decision))


def test_generation_zero_is_uniform_and_the_response_is_complete(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/decisions", json={**BODY, "decision_id": "tx-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision_id"] == "tx-1" and body["policy"] == "default" and body["generation"] == 0
    assert body["exploration"] == "uniform" and body["model_sha256"] is None
    assert body["probabilities"] == {"route_a": 1 / 3, "route_b": 1 / 3, "3ds": 1 / 3}
    assert abs(sum(body["probabilities"].values()) - 1) <= 1e-9
    assert body["propensity"] == body["probabilities"][body["action_id"]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["decided_at"])


def test_the_decision_is_logged_before_the_response(server: LiveServer) -> None:
    with server.client() as client:
        for i in range(20):
            body = client.post("/v1/decisions", json={**BODY, "decision_id": f"tx-{i}"}).json()
            record = server.runtime.decision_log.get_decision(body["decision_id"])
            assert record is not None and record.action_id == body["action_id"]
            assert record.probabilities == [body["probabilities"][a["id"]] for a in record.actions]


def test_same_decision_id_returns_the_identical_response_and_writes_nothing(server: LiveServer) -> None:
    with server.client() as client:
        first = client.post("/v1/decisions", json={**BODY, "decision_id": "idem"})
        rows = decision_rows(server)
        again = [client.post("/v1/decisions", json={**BODY, "decision_id": "idem"}) for _ in range(3)]
    assert all(r.status_code == 200 and r.content == first.content for r in again)
    assert decision_rows(server) == rows


def test_concurrent_retries_of_one_id_write_one_row(server: LiveServer) -> None:
    def post(_: int) -> bytes:
        with server.client() as client:
            return client.post("/v1/decisions", json={**BODY, "decision_id": "race"}).content

    with ThreadPoolExecutor(8) as pool:
        responses = set(pool.map(post, range(16)))
    assert len(responses) == 1
    with server.runtime.sessions() as session:
        assert session.scalar(select(func.count()).where(Decision.decision_id == "race")) == 1


def test_reusing_an_id_for_a_different_request_is_a_conflict(server: LiveServer) -> None:
    with server.client() as client:
        client.post("/v1/decisions", json={**BODY, "decision_id": "reused"})
        other = {**BODY, "decision_id": "reused", "context": {"amount_eur": 99.0}}
        response = client.post("/v1/decisions", json=other)
    assert response.status_code == 409
    assert "already used" in response.json()["message"]


def test_decisions_without_an_id_get_fresh_unique_ones(server: LiveServer) -> None:
    with server.client() as client:
        ids = {client.post("/v1/decisions", json=BODY).json()["decision_id"] for _ in range(50)}
    assert len(ids) == 50
    assert decision_rows(server) == 50


def test_get_decision_returns_the_full_log_entry(server: LiveServer) -> None:
    with server.client() as client:
        decided = client.post("/v1/decisions", json={**BODY, "decision_id": "full"}).json()
        detail = client.get("/v1/decisions/full").json()
        missing = client.get("/v1/decisions/nope")
    assert {k: detail[k] for k in decided} == decided
    assert detail["context"] == BODY["context"]
    assert [a["id"] for a in detail["actions"]] == ["route_a", "route_b", "3ds"]
    assert detail["actions"][0]["features"] == {"fee_bps": 10}
    assert detail["rewards"] == []
    assert missing.status_code == 404 and "nope" in missing.json()["message"]


def test_a_deployed_generation_serves_with_its_model_and_exploration(server: LiveServer) -> None:
    oracle = train_oracle()
    number = deploy(server, "default", oracle, exploration_params={"gamma": 50.0})
    with server.client() as client:
        bodies = [client.post("/v1/decisions", json={**BODY, "decision_id": f"g-{i}"}).json() for i in range(200)]
    first = bodies[0]
    assert first["generation"] == number == 1
    assert first["exploration"] == "squarecb"
    assert first["model_sha256"] == sha256_hex(oracle.to_bytes())
    probabilities = np.array(list(first["probabilities"].values()))
    assert abs(probabilities.sum() - 1) <= 1e-9 and probabilities.min() >= 0.01 - 1e-12
    assert max(first["probabilities"], key=first["probabilities"].get) == "route_b"  # NL: route B is best
    chosen = [b["action_id"] for b in bodies]
    assert chosen.count("route_b") > 100 and len(set(chosen)) == 3  # mostly exploiting, still exploring


def test_any_decision_can_be_replayed_from_the_log_and_the_artifact(server: LiveServer) -> None:
    deploy(server, "default", train_oracle(), exploration_params={"gamma": 50.0})
    with server.client() as client:
        client.post("/v1/decisions", json={**BODY, "decision_id": "audit-me"})
        detail = client.get("/v1/decisions/audit-me").json()
    artifact_dir = server.settings.artifact_dir
    with server.runtime.sessions() as session:
        generation = get_generation(session, "default", detail["generation"])
    artifact = (artifact_dir / generation.artifact_path).read_bytes()
    assert sha256_hex(artifact) == detail["model_sha256"]
    actions = [Action(a["id"], a["features"]) for a in detail["actions"]]
    scores = load_oracle(artifact).predict_decision(detail["context"], actions)
    replayed = SquareCB(**detail["exploration_params"]).probabilities(scores)
    assert replayed.tolist() == [a["probability"] for a in detail["actions"]]
    draw = uniform_draw(detail["decision_id"], detail["policy"], detail["generation"])
    assert draw == detail["draw"]
    assert actions[choose(replayed, draw)].id == detail["action_id"]


def test_unknown_policy_is_refused(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/decisions", json={**BODY, "policy": "nope"})
    assert response.status_code == 404
    assert "unknown policy 'nope'" in response.json()["message"]
