"""/v1/policies through a real uvicorn server: reads are open, changes need the API key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from banditgate.policies.actions import Action
from banditgate.policies.oracles import make_oracle, records_to_frame
from banditgate.service.settings import Settings
from tests.conftest import API_KEY
from tests.service.helpers import ACTIONS, deploy, train_oracle
from tests.support.server import LiveServer

ADMIN = {"X-API-Key": API_KEY, "X-Actor": "alice"}
SOFTMAX = {"exploration": "softmax", "exploration_params": {"temperature": 0.05}, "floor": 0.05, "reason": "test"}


def test_default_policy_exists_out_of_the_box(server: LiveServer) -> None:
    with server.client() as client:
        policies = client.get("/v1/policies").json()
        detail = client.get("/v1/policies/default").json()
    assert [p["name"] for p in policies] == ["default"]
    assert detail["deployed_generation"] == 0
    assert [(g["number"], g["status"], g["exploration"]) for g in detail["generations"]] == [(0, "deployed", "uniform")]


def test_create_and_change_a_policy(server: LiveServer) -> None:
    with server.client() as client:
        created = client.put("/v1/policies/fraud.routing", json=SOFTMAX, headers=ADMIN)
        changed = client.put("/v1/policies/fraud.routing", json={**SOFTMAX, "floor": 0.1}, headers=ADMIN)
        decision = client.post(
            "/v1/decisions", json={"context": {}, "actions": [{"id": "a"}], "policy": "fraud.routing"}
        )
    assert created.status_code == 201 and created.json()["revision"] == 1
    assert changed.status_code == 200 and changed.json()["floor"] == 0.1 and changed.json()["revision"] == 2
    assert decision.status_code == 200 and decision.json()["policy"] == "fraud.routing"


def test_a_configuration_change_applies_to_the_next_decision(server: LiveServer) -> None:
    deploy(server, "default", train_oracle())
    body = {"context": {"amount_eur": 20.0, "issuer_country": "NL"}, "actions": ACTIONS}
    with server.client() as client:
        before = client.post("/v1/decisions", json=body).json()
        client.put("/v1/policies/default", json={**SOFTMAX, "floor": 0.2}, headers=ADMIN)
        after = client.post("/v1/decisions", json=body).json()
    assert before["exploration"] == "squarecb" and after["exploration"] == "softmax"
    assert min(after["probabilities"].values()) >= 0.2 - 1e-12
    assert not np.allclose(list(before["probabilities"].values()), list(after["probabilities"].values()))


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "X-API-Key"),
        ({"X-API-Key": "wrong"}, 403, "wrong API key"),
    ],
    ids=["missing-key", "wrong-key"],
)
def test_changes_need_the_api_key(server: LiveServer, headers: dict, status: int, message: str) -> None:
    with server.client() as client:
        response = client.put("/v1/policies/default", json=SOFTMAX, headers=headers)
        unchanged = client.get("/v1/policies/default").json()
    assert response.status_code == status and message in response.json()["message"]
    assert unchanged["exploration"] == "squarecb"


@pytest.mark.parametrize("key", [None, ""], ids=["unset", "empty"])
def test_an_empty_key_keeps_the_admin_endpoints_closed(settings: Settings, key: str | None) -> None:
    """``BANDITGATE_API_KEY=`` used to let an empty ``X-API-Key:`` header through."""
    closed = Settings(**{**settings.model_dump(exclude={"api_key"}), "api_key": key})
    with LiveServer(closed) as live, live.client() as client:
        empty = client.put("/v1/policies/default", json=SOFTMAX, headers={"X-API-Key": ""})
        guessed = client.put("/v1/policies/default", json=SOFTMAX, headers={"X-API-Key": "anything"})
        unchanged = client.get("/v1/policies/default").json()
    assert (empty.status_code, guessed.status_code) == (401, 403)
    assert "BANDITGATE_API_KEY" in guessed.json()["message"] and unchanged["exploration"] == "squarecb"


def test_an_empty_key_header_is_no_key(server: LiveServer) -> None:
    with server.client() as client:
        response = client.put("/v1/policies/default", json=SOFTMAX, headers={"X-API-Key": ""})
    assert response.status_code == 401 and "X-API-Key" in response.json()["message"]


def test_admin_is_disabled_when_the_server_has_no_key(settings: Settings) -> None:
    with LiveServer(settings.model_copy(update={"api_key": None})) as live, live.client() as client:
        response = client.put("/v1/policies/default", json=SOFTMAX, headers={"X-API-Key": "anything"})
    assert response.status_code == 403 and "BANDITGATE_API_KEY" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"exploration": "thompson"}, "unknown exploration rule"),
        ({"exploration": "softmax", "exploration_params": {"temperature": -1}}, "temperature"),
        ({"oracle": "xgboost"}, "unknown oracle"),
        ({"floor": 1.5}, "floor"),
        ({"exploration_params": {"floor": 0.1}}, "'floor' field"),
        ({"oracle_params": {"features": {"bin": "excluded"}}}, "'features' field"),
    ],
)
def test_bad_configuration_is_refused(server: LiveServer, body: dict, message: str) -> None:
    with server.client() as client:
        response = client.put("/v1/policies/default", json=body, headers=ADMIN)
    assert response.status_code == 422 and message in response.json()["message"]


def test_a_policy_declares_how_its_context_keys_are_used(server: LiveServer) -> None:
    declared = {"bin": "hashed", "merchant_id": "excluded", "mcc": {"treatment": "hashed", "buckets": 16}}
    with server.client() as client:
        created = client.put("/v1/policies/keys", json={"features": declared, "reason": "t"}, headers=ADMIN)
        shown = client.get("/v1/policies/keys").json()
        listed = {p["name"]: p for p in client.get("/v1/policies").json()}
    canonical = {
        "bin": {"treatment": "hashed", "buckets": 64},
        "mcc": {"treatment": "hashed", "buckets": 16},
        "merchant_id": "excluded",
    }
    assert created.status_code == 201 and created.json()["features"] == canonical
    assert shown["features"] == canonical and listed["keys"]["features"] == canonical
    assert listed["default"]["features"] == {}


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"bin": "ordinal"}, "features.bin"),
        ({"bin": {"treatment": "hashed", "buckets": 1}}, "buckets"),
        ({"bin": {"treatment": "hashed", "buckets": 8, "salt": 1}}, "salt"),
        ({"k" * 129: "numeric"}, "at most 128"),
        ({f"k{i}": "numeric" for i in range(257)}, "at most 256"),
    ],
)
def test_bad_declarations_are_refused(server: LiveServer, features: dict, message: str) -> None:
    with server.client() as client:
        response = client.put("/v1/policies/default", json={"features": features}, headers=ADMIN)
    assert response.status_code == 422 and message in response.json()["message"], response.json()


def test_a_policy_cannot_name_code_to_run(server: LiveServer, tmp_path: Path) -> None:
    """The oracle configuration once accepted any importable name under ``sklearn.`` with any arguments: this
    request ran the given Python as the server's user and answered 201."""
    marker = tmp_path / "code-ran"
    payload = f"open({str(marker)!r}, 'w').close()"
    exploit = {
        "oracle": "sklearn",
        "oracle_params": {
            "estimator": "sklearn.utils._testing.assert_run_python_script_without_output",
            "estimator_params": {"source_code": payload},
        },
        "reason": "t",
    }
    with server.client() as client:
        response = client.put("/v1/policies/x", json=exploit, headers=ADMIN)
        river = client.put(
            "/v1/policies/x",
            json={
                "oracle": "river",
                "oracle_params": {"model": "river.compat.convert_sklearn_to_river"},
                "reason": "t",
            },
            headers=ADMIN,
        )
        created = client.get("/v1/policies/x")
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "module path" in message and "hist_gradient_boosting, hist_gradient_boosting_classifier" in message
    assert river.status_code == 422 and "module path" in river.json()["message"]
    assert created.status_code == 404
    assert not marker.exists()


@pytest.mark.parametrize(
    ("oracle_params", "message"),
    [
        ({"estimator": "ridge", "estimator_params": {"alpha": "1; import os"}}, "ridge.alpha must be a number"),
        ({"estimator": "ridge", "estimator_params": {"positive": True}}, "unknown parameter 'positive'"),
        ({"estimator": "svr"}, "unknown estimator 'svr'; allowed: hist_gradient_boosting"),
    ],
)
def test_sklearn_estimators_and_their_parameters_are_checked(server: LiveServer, oracle_params, message) -> None:
    body = {"oracle": "sklearn", "oracle_params": oracle_params, "reason": "t"}
    with server.client() as client:
        response = client.put("/v1/policies/x", json=body, headers=ADMIN)
    assert response.status_code == 422 and message in response.json()["message"]


def test_an_allowed_estimator_is_configured_and_serves(server: LiveServer) -> None:
    body = {"oracle": "sklearn", "oracle_params": {"estimator": "ridge", "estimator_params": {"alpha": 2}}}
    with server.client() as client:
        created = client.put("/v1/policies/ridge", json={**body, "reason": "t"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["oracle_params"] == body["oracle_params"]
    frame, rewards = logged_frame()
    deploy(server, "ridge", make_oracle("sklearn", created.json()["oracle_params"]).fit(frame, rewards))
    with server.client() as client:
        decision = client.post(
            "/v1/decisions", json={"context": {"amount_eur": 20.0}, "actions": ACTIONS, "policy": "ridge"}
        ).json()
    assert decision["generation"] == 1 and decision["exploration"] == "squarecb"


def test_unknown_policy_is_404(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get("/v1/policies/nope")
    assert response.status_code == 404 and "nope" in response.json()["message"]


def logged_frame(n: int = 600) -> tuple:
    rng = np.random.default_rng(0)
    contexts = [{"amount_eur": float(a)} for a in rng.uniform(1, 500, n)]
    actions = [Action(ACTIONS[i]["id"], ACTIONS[i].get("features", {})) for i in rng.integers(0, len(ACTIONS), n)]
    rewards = np.array([float(a.id == "3ds") * c["amount_eur"] / 500 for c, a in zip(contexts, actions, strict=True)])
    return records_to_frame(contexts, actions), rewards
