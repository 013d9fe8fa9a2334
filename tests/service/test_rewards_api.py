"""POST /v1/rewards through a real uvicorn server."""

from __future__ import annotations

from banditgate.service.settings import Settings
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


def test_a_value_outside_its_kind_and_an_unknown_kind_are_refused_and_not_stored(server: LiveServer) -> None:
    """Binary kinds take 0 or 1: a 0.5 once reached the ledger and broke every gate evaluation after it."""
    with server.client() as client:
        client.post("/v1/decisions", json=BODY)
        half = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 0.5})
        chargeback = client.post("/v1/rewards", json={"decision_id": "tx", "reward": -1, "kind": "chargeback"})
        unknown = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 1, "kind": "authorization"})
        ghost = client.post("/v1/rewards", json={"decision_id": "ghost", "reward": 2})
    assert (half.status_code, half.json()["message"]) == (
        422,
        "reward: 0.5 is not a valid authorisation reward: authorisation rewards are 0 or 1",
    )
    assert chargeback.status_code == 422 and "chargeback rewards are 0 or 1" in chargeback.json()["message"]
    assert unknown.status_code == 422
    assert unknown.json()["message"].startswith("kind: unknown reward kind 'authorization'; known kinds: ")
    assert "authorisation, chargeback" in unknown.json()["message"]
    assert ghost.status_code == 422  # the value is refused before the decision is looked up
    assert server.runtime.decision_log.get_rewards("tx") == []


def test_a_kind_declared_with_a_range_takes_any_value_in_it(settings: Settings) -> None:
    kinds = {"authorisation": "binary", "chargeback": "binary", "margin_eur": (-50.0, 500.0)}
    with LiveServer(settings.model_copy(update={"reward_kinds": kinds})) as server, server.client() as client:
        client.post("/v1/decisions", json=BODY)
        inside = client.post("/v1/rewards", json={"decision_id": "tx", "reward": -12.5, "kind": "margin_eur"})
        outside = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 500.01, "kind": "margin_eur"})
    assert inside.status_code == 201 and inside.json()["reward"] == -12.5
    assert outside.status_code == 422
    message = outside.json()["message"]
    assert message == "reward: 500.01 is not a valid margin_eur reward: margin_eur rewards lie in [-50, 500]"


def test_revisions_are_bounded_per_decision_and_kind(settings: Settings) -> None:
    with LiveServer(settings.model_copy(update={"max_reward_revisions": 3})) as server, server.client() as client:
        client.post("/v1/decisions", json=BODY)
        kept = [client.post("/v1/rewards", json={"decision_id": "tx", "reward": r}) for r in (1, 0, 1)]
        refused = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 0})
        duplicate = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 1})
        other_kind = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 0, "kind": "chargeback"})
        detail = client.get("/v1/decisions/tx").json()
    assert [r.json()["revision"] for r in kept] == [1, 2, 3]
    assert refused.status_code == 409
    message = refused.json()["message"]
    assert "3 revisions of its authorisation reward" in message and "max_reward_revisions = 3" in message
    assert "1.0, stands" in message
    assert (duplicate.status_code, duplicate.json()["status"]) == (200, "duplicate")
    assert other_kind.status_code == 201
    assert [r["revision"] for r in detail["rewards"] if r["kind"] == "authorisation"] == [1, 2, 3]


def lose_every_race(server: LiveServer) -> None:
    """Make every chargeback insert fail as if another writer had just taken its revision number."""
    with server.runtime.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "CREATE TRIGGER lose_every_race BEFORE INSERT ON rewards WHEN NEW.kind = 'chargeback' BEGIN "
                "SELECT RAISE(ABORT, 'UNIQUE constraint failed: rewards.decision_id, rewards.kind, rewards.revision');"
                " END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION lose_every_race() RETURNS trigger AS $$ BEGIN RAISE unique_violation USING "
                "MESSAGE = 'duplicate key value violates unique constraint'; END $$ LANGUAGE plpgsql"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER lose_every_race BEFORE INSERT ON rewards FOR EACH ROW "
                "WHEN (NEW.kind = 'chargeback') EXECUTE FUNCTION lose_every_race()"
            )


def test_concurrent_revisions_that_keep_conflicting_are_a_409_to_retry(server: LiveServer) -> None:
    """Once the retries are spent, the client is told to retry (409, Retry-After), not that the log is down."""
    with server.client() as client:
        client.post("/v1/decisions", json=BODY)
        lose_every_race(server)
        response = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 1, "kind": "chargeback"})
        unaffected = client.post("/v1/rewards", json={"decision_id": "tx", "reward": 1})
    assert response.status_code == 409, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["message"].startswith("conflicting concurrent revisions of the chargeback reward")
    assert response.json()["message"].endswith("nothing was recorded, retry")
    assert unaffected.status_code == 201
    assert [r.kind for r in server.runtime.decision_log.get_rewards("tx")] == ["authorisation"]
