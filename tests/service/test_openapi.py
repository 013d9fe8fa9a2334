"""The served OpenAPI document and the service agree: what the document forbids is refused with a 422, what it
allows is not refused as invalid, and responses have the documented statuses and content types.

Each request is judged twice: by the document (its JSON Schema, formats included) and by the live server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.conftest import API_KEY
from tests.support.server import LiveServer

ADMIN = {"x-api-key": API_KEY}
KNOWN_DECISION = "openapi-known-decision"


@pytest.fixture
def client(module_server: LiveServer) -> Iterator[httpx.Client]:
    """A client of the module's server (its cases' answers do not depend on what the others changed)."""
    with module_server.client() as client:
        logged = client.post(
            "/v1/decisions", json={"decision_id": KNOWN_DECISION, "context": {}, "actions": [{"id": "a"}]}
        )
        assert logged.status_code == 200, logged.text
        yield client


@pytest.fixture
def document(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return document["paths"][path][method.lower()]


def body_allowed(document: dict[str, Any], method: str, path: str, body: Any) -> bool:
    """Whether the document's request body schema of the operation accepts ``body`` (formats checked)."""
    schema = operation(document, method, path)["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**schema, "components": document["components"]}, validate_formats=True)
    return validator.is_valid(body)


def query_allowed(document: dict[str, Any], method: str, path: str, name: str, value: str) -> bool:
    """Whether the document's schema of query parameter ``name`` accepts the string ``value``."""
    (parameter,) = [p for p in operation(document, method, path)["parameters"] if p["name"] == name]
    schema = {"anyOf": [s for s in parameter["schema"].get("anyOf", [parameter["schema"]]) if s.get("type") != "null"]}
    return jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(value)


REWARD = {"decision_id": KNOWN_DECISION, "reward": 1.0}
PROMOTE = "/v1/policies/{name}/generations/{number}/promote"
ROLLBACK = "/v1/policies/{name}/rollback"
OVERRIDE = {"by": "alice", "reason": "incident 42", "until": "2030-01-01T00:00:00Z"}

#: (method, template, URL, body, whether the document allows it): the cases of the issue and their neighbours.
BODIES = [
    ("POST", "/v1/rewards", "/v1/rewards", {**REWARD, "observed_at": 0}, False),
    ("POST", "/v1/rewards", "/v1/rewards", {**REWARD, "observed_at": "1700000000"}, False),
    ("POST", "/v1/rewards", "/v1/rewards", {**REWARD, "observed_at": "2026-01-05T10:00:00Z"}, True),
    ("POST", "/v1/rewards", "/v1/rewards", {**REWARD, "reward": True}, False),
    ("PUT", "/v1/policies/{name}", "/v1/policies/p", {"floor": False}, False),
    ("PUT", "/v1/policies/{name}", "/v1/policies/p", {"floor": True}, False),
    ("PUT", "/v1/policies/{name}", "/v1/policies/p", {"floor": 0}, True),
    ("PUT", "/v1/policies/{name}", "/v1/policies/p", {"floor": 0.5, "reason": ""}, True),
    ("PUT", "/v1/policies/{name}", "/v1/policies/p", {"description": "nul\u0000"}, False),
    ("POST", ROLLBACK, "/v1/policies/default/rollback", {"reason": ""}, False),
    ("POST", ROLLBACK, "/v1/policies/default/rollback", {"reason": " \t\n"}, False),
    ("POST", ROLLBACK, "/v1/policies/default/rollback", {"reason": "bad model"}, True),
    ("POST", ROLLBACK, "/v1/policies/default/rollback", {"reason": "bad model", "to": True}, False),
    ("POST", ROLLBACK, "/v1/policies/default/rollback", {"reason": "bad model", "to": 0.0}, True),
    ("POST", PROMOTE, "/v1/policies/default/generations/7/promote", {"reason": "  "}, False),
    ("POST", PROMOTE, "/v1/policies/default/generations/7/promote", {"reason": "better"}, True),
    (
        "POST",
        PROMOTE,
        "/v1/policies/default/generations/7/promote",
        {"reason": "better", "override": {**OVERRIDE, "by": " "}},
        False,
    ),
    (
        "POST",
        PROMOTE,
        "/v1/policies/default/generations/7/promote",
        {"reason": "better", "override": {**OVERRIDE, "until": 1893456000}},
        False,
    ),
    ("POST", PROMOTE, "/v1/policies/default/generations/7/promote", {"reason": "better", "override": OVERRIDE}, True),
    ("POST", "/v1/decisions", "/v1/decisions", {"context": {"k\u0000": 1}, "actions": [{"id": "a"}]}, False),
    ("POST", "/v1/decisions", "/v1/decisions", {"context": {"k": "v\u0000"}, "actions": [{"id": "a"}]}, False),
    ("POST", "/v1/decisions", "/v1/decisions", {"context": {}, "actions": [{"id": "a"}], "policy": "nope"}, True),
]


@pytest.mark.parametrize(
    ("method", "template", "url", "body", "allowed"),
    BODIES,
    ids=[f"{m} {u} {b}".replace("\u0000", "NUL") for m, _, u, b, _ in BODIES],
)
def test_document_and_service_agree_on_bodies(
    client: httpx.Client, document: dict[str, Any], method: str, template: str, url: str, body: Any, allowed: bool
) -> None:
    """A body the document forbids gets a 422; one it allows gets a documented answer that is not a 422."""
    assert body_allowed(document, method, template, body) is allowed, "the document disagrees with the test"
    response = client.request(method, url, json=body, headers=ADMIN)
    documented = operation(document, method, template)["responses"]
    assert str(response.status_code) in documented, (response.status_code, sorted(documented), response.text)
    if allowed:
        assert response.status_code != 422, response.text[:300]
    else:
        assert response.status_code == 422, response.text[:300]


def test_unknown_policy_is_a_documented_404(client: httpx.Client, document: dict[str, Any]) -> None:
    """Policies are created at run time, so the document cannot list them: an unknown one is a documented 404,
    on every operation that names a policy."""
    response = client.post("/v1/decisions", json={"context": {}, "actions": [{"id": "a"}], "policy": "nope"})
    assert response.status_code == 404 and "nope" in response.json()["message"], response.text
    for path, operations in document["paths"].items():
        for method, spec in operations.items():
            names_a_policy = "{name}" in path or (method == "post" and path == "/v1/decisions")
            if names_a_policy and not (method == "put" and path == "/v1/policies/{name}"):  # PUT creates
                assert "404" in spec["responses"], f"{method.upper()} {path} does not document 404"


@pytest.mark.parametrize(
    ("value", "allowed"), [(0.5, False), ("1700000000", False), (True, False), ("2026-01-05T10:00:00Z", True)]
)
def test_as_of_must_be_a_date_time(client: httpx.Client, document: dict[str, Any], value: Any, allowed: bool) -> None:
    """``as_of`` of a gate evaluation is a date-time: a number of seconds is refused, as the document says."""
    path = "/v1/policies/{name}/generations/{number}/gate"
    assert body_allowed(document, "POST", path, {"as_of": value}) is allowed
    # Generation 99 does not exist: a valid body gets its 404 before any evaluation starts.
    response = client.post("/v1/policies/default/generations/99/gate", json={"as_of": value}, headers=ADMIN)
    assert response.status_code == (404 if allowed else 422), response.text[:300]


def test_metrics_are_documented_as_prometheus_text(client: httpx.Client, document: dict[str, Any]) -> None:
    """``/metrics`` answers the Prometheus text format, and the document says text/plain, not JSON."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "banditgate_http_requests_total" in response.text
    assert list(operation(document, "GET", "/metrics")["responses"]["200"]["content"]) == ["text/plain"]
