"""POST /v1/rewards through a real uvicorn server."""

from __future__ import annotations

from tests.service.helpers import settings_in_both_modes  # noqa: F401 - a fixture: both decision modes
from tests.support.server import LiveServer

BODY = {"decision_id": "tx", "context": {"amount_eur": 10.0}, "actions": [{"id": "a"}, {"id": "b"}]}


def test_reward_lifecycle(server: LiveServer) -> None:
    with server.client() as client:
        client.post("/v1/decisions", json=BODY)
        recorded = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 1})
        duplicate = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 1.0})
        revised = client.post(
            "/v1/rewards", json={"decision_id": "tx", "reward": 0, "observed_at": "2026-12-01T10:00:00+01:00"}
        )
        chargeback = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 0, "kind": "chargeback"})
        detail = client.get("/v1/decisions/tx").json()
    assert (recorded.status_code, recorded.json()["status"], recorded.json()["revision"]) == (201, "recorded", 1)
    assert (duplicate.status_code, duplicate.json()["status"], duplicate.json()["revision"]) == (200, "duplicate", 1)
    assert (revised.status_code, revised.json()["status"], revised.json()["revision"]) == (201, "revised", 2)
    assert revised.json()["observed_at"] == "2026-12-01T09:00:00Z"
    assert chargeback.json()["kind"] == "chargeback" and chargeback.json()["revision"] == 1
    assert [(r["kind"], r["revision"], r["reward"]) for r in detail["rewards"]] == [
        ("authorisation", 1, 1.0),
        ("authorisation", 2, 0.0),
        ("chargeback", 1, 0.0),
    ]


def test_reward_for_an_unknown_decision_is_404_and_not_stored(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/rewards", json={"decision_id": "ghost", "reward": 1})
    assert response.status_code == 404
    assert "ghost" in response.json()["message"]
    assert server.runtime.decision_log.get_rewards("ghost") == []
