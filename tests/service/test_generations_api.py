"""Promotion, rollback, generations and the audit trail through a real uvicorn server, and the CLI commands."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from banditgate.ledger import promotion, registry
from banditgate.ledger.models import Generation, Policy
from banditgate.service.cli import app as cli
from banditgate.service.routes import generations
from tests.conftest import API_KEY
from tests.service.helpers import ACTIONS, train_oracle, without_gate
from tests.support.server import LiveServer

ADMIN = {"X-API-Key": API_KEY, "X-Actor": "alice"}
DECISION = {"context": {"amount_eur": 20.0, "issuer_country": "NL"}, "actions": ACTIONS}
runner = CliRunner()


@pytest.fixture(autouse=True)
def _ungated(request: pytest.FixtureRequest) -> None:
    """These tests are about the mechanics of promotion; the sufficiency gate has its own tests."""
    if "server" in request.fixturenames:
        without_gate(request.getfixturevalue("server"))


@functools.cache
def oracle_bytes(seed: int) -> tuple[bytes, str, dict]:
    oracle = train_oracle(seed)
    return oracle.to_bytes(), oracle.kind, oracle.hyperparameters()


def add_candidate(server: LiveServer, seed: int = 0, corrupt: bool = False) -> tuple[int, str]:
    """Store and register a trained oracle as the next candidate of ``default`` (not deployed): number, sha256."""
    data, kind, params = oracle_bytes(seed)
    artifact_dir = server.runtime.settings.artifact_dir

    def register(session: Session) -> tuple[int, str]:
        number = len(registry.list_generations(session, "default"))
        path, digest = registry.store_artifact(artifact_dir, "default", number, data)
        if corrupt:
            (artifact_dir / path).write_bytes(data[:-10])
        generation = registry.register_generation(
            session,
            "default",
            artifact_path=path,
            artifact_sha256=digest,
            oracle=kind,
            oracle_params=params,
            exploration="squarecb",
            exploration_params={"gamma": 50.0},
        )
        return generation.number, digest

    return server.runtime.writer.submit(register).result(timeout=30)


def decide(client: httpx.Client) -> dict:
    response = client.post("/v1/decisions", json=DECISION)
    assert response.status_code == 200, response.text
    return response.json()


def statuses(client: httpx.Client) -> list[tuple[int, str]]:
    return [(g["number"], g["status"]) for g in client.get("/v1/policies/default/generations").json()]


def test_generations_and_audit_trail_are_readable_without_a_key(server: LiveServer) -> None:
    with server.client() as client:
        listed = client.get("/v1/policies/default/generations")
        zero = client.get("/v1/policies/default/generations/0")
        trail = client.get("/v1/policies/default/audit")
        missing = [
            client.get("/v1/policies/default/generations/3"),
            client.get("/v1/policies/nope/generations"),
            client.get("/v1/policies/nope/generations/0"),
            client.get("/v1/policies/nope/audit"),
        ]
    assert listed.status_code == 200 and [(g["number"], g["status"]) for g in listed.json()] == [(0, "deployed")]
    assert zero.status_code == 200
    assert {k: zero.json()[k] for k in ("number", "exploration", "oracle", "gate_report", "artifact_path")} == {
        "number": 0,
        "exploration": "uniform",
        "oracle": None,
        "gate_report": None,
        "artifact_path": None,
    }
    assert [(e["action"], e["actor"]) for e in trail.json()] == [("create", "settings")]
    assert [r.status_code for r in missing] == [404, 404, 404, 404]
    assert "no generation 3" in missing[0].json()["message"] and "nope" in missing[1].json()["message"]


def test_a_promoted_candidate_serves_the_next_decision(server: LiveServer) -> None:
    number, digest = add_candidate(server)
    with server.client() as client:
        before = decide(client)
        assert statuses(client) == [(0, "deployed"), (1, "candidate")]
        response = client.post(
            f"/v1/policies/default/generations/{number}/promote", json={"reason": "OPE +3%"}, headers=ADMIN
        )
        after = decide(client)
        generation = client.get("/v1/policies/default/generations/1").json()
        policy = client.get("/v1/policies/default").json()
        assert statuses(client) == [(0, "retired"), (1, "deployed")]
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["policy"], body["action"]) == ("default", "promote")
    assert (body["generation"]["number"], body["generation"]["status"]) == (1, "deployed")
    assert (body["replaced"]["number"], body["replaced"]["status"]) == (0, "retired")
    assert (body["generation"]["promoted_by"], body["generation"]["promoted_reason"]) == ("alice", "OPE +3%")
    assert "no sufficiency gate configured yet" in body["generation"]["gate_report"]["message"]
    assert body["audit_event"]["details"] == {"from": 0, "to": 1, "gate": body["generation"]["gate_report"]}
    assert generation == body["generation"] and policy["deployed_generation"] == 1
    assert (before["generation"], before["model_sha256"]) == (0, None)
    assert (after["generation"], after["model_sha256"], after["exploration"]) == (1, digest, "squarecb")


def test_rollback_returns_to_the_previous_generation_and_decisions_follow(server: LiveServer) -> None:
    _, first = add_candidate(server, seed=1)
    _, second = add_candidate(server, seed=2)
    with server.client() as client:
        for number in (1, 2):
            promoted = client.post(
                f"/v1/policies/default/generations/{number}/promote", json={"reason": "go"}, headers=ADMIN
            )
            assert promoted.status_code == 200, promoted.text
        assert (decide(client)["generation"], decide(client)["model_sha256"]) == (2, second)

        back = client.post("/v1/policies/default/rollback", json={"reason": "declines up"}, headers=ADMIN)
        assert back.status_code == 200, back.text
        assert (back.json()["generation"]["number"], back.json()["replaced"]["number"]) == (1, 2)
        assert (decide(client)["generation"], decide(client)["model_sha256"]) == (1, first)

        cold = client.post("/v1/policies/default/rollback", json={"reason": "incident", "to": 0}, headers=ADMIN)
        assert cold.status_code == 200, cold.text
        decision = decide(client)
        assert (decision["generation"], decision["model_sha256"], decision["exploration"]) == (0, None, "uniform")
        assert statuses(client) == [(0, "deployed"), (1, "retired"), (2, "retired")]


def test_the_audit_trail_records_who_when_and_why(server: LiveServer) -> None:
    add_candidate(server)
    start = datetime.now(UTC)
    with server.client() as client:
        client.post("/v1/policies/default/generations/1/promote", json={"reason": "OPE +3%"}, headers=ADMIN)
        client.post(
            "/v1/policies/default/rollback", json={"reason": "chargebacks"}, headers={**ADMIN, "X-Actor": "bob"}
        )
        client.post("/v1/policies/default/rollback", json={"reason": "fixed"}, headers={"X-API-Key": API_KEY})
        trail = client.get("/v1/policies/default/audit").json()
        latest = client.get("/v1/policies/default/audit", params={"limit": 1}).json()
        generation = client.get("/v1/policies/default/generations/1").json()
    end = datetime.now(UTC)
    assert [(e["action"], e["actor"], e["reason"]) for e in trail] == [
        ("rollback", "api-key", "fixed"),
        ("rollback", "bob", "chargebacks"),
        ("promote", "alice", "OPE +3%"),
        ("create", "settings", "created at start-up from settings"),
    ]
    assert [(e["details"]["from"], e["details"]["to"]) for e in trail[:3]] == [(0, 1), (1, 0), (0, 1)]
    assert trail[0]["details"]["gate"] is None and trail[2]["details"]["gate"]["gate"] == "none"
    times = [datetime.fromisoformat(e["at"]) for e in trail[:3]]
    assert start <= times[2] <= times[1] <= times[0] <= end
    assert latest == trail[:1]
    assert (generation["promoted_by"], generation["promoted_reason"]) == ("api-key", "fixed")
    assert datetime.fromisoformat(generation["promoted_at"]) == times[0]


PROMOTE = "/v1/policies/default/generations/{}/promote"
ROLLBACK = "/v1/policies/default/rollback"
REASON = {"reason": "because"}


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "message"),
    [
        pytest.param(
            "/v1/policies/nope/generations/1/promote", REASON, ADMIN, 404, "nope", id="promote-unknown-policy"
        ),
        pytest.param(PROMOTE.format(7), REASON, ADMIN, 404, "no generation 7", id="promote-unknown-generation"),
        pytest.param(PROMOTE.format(1), REASON, ADMIN, 409, "already deployed", id="promote-deployed"),
        pytest.param(PROMOTE.format(0), REASON, ADMIN, 409, "rollback to 0", id="promote-retired"),
        pytest.param(PROMOTE.format(-1), REASON, ADMIN, 422, "number", id="negative-generation"),
        pytest.param(PROMOTE.format(2**40), REASON, ADMIN, 422, "number", id="huge-generation"),
        pytest.param(PROMOTE.format("one"), REASON, ADMIN, 422, "number", id="not-a-number"),
        pytest.param(PROMOTE.format(2), {"reason": ""}, ADMIN, 422, "reason", id="empty-reason"),
        pytest.param(PROMOTE.format(2), {"reason": "  "}, ADMIN, 422, "say why", id="blank-reason"),
        pytest.param(PROMOTE.format(2), {}, ADMIN, 422, "reason", id="missing-reason"),
        pytest.param(PROMOTE.format(2), {**REASON, "force": True}, ADMIN, 422, "force", id="unknown-field"),
        pytest.param(PROMOTE.format(2), REASON, {}, 401, "X-API-Key", id="promote-no-key"),
        pytest.param(PROMOTE.format(2), REASON, {"X-API-Key": "wrong"}, 403, "wrong API key", id="promote-wrong-key"),
        pytest.param("/v1/policies/nope/rollback", REASON, ADMIN, 404, "nope", id="rollback-unknown-policy"),
        pytest.param(ROLLBACK, {**REASON, "to": 9}, ADMIN, 404, "no generation 9", id="rollback-unknown-generation"),
        pytest.param(ROLLBACK, {**REASON, "to": 1}, ADMIN, 409, "already deployed", id="rollback-to-deployed"),
        pytest.param(ROLLBACK, {**REASON, "to": 2}, ADMIN, 409, "promote it instead", id="rollback-to-candidate"),
        pytest.param(ROLLBACK, {**REASON, "to": -1}, ADMIN, 422, "to", id="rollback-negative"),
        pytest.param(ROLLBACK, {**REASON, "to": "zero"}, ADMIN, 422, "to", id="rollback-not-a-number"),
        pytest.param(ROLLBACK, {"to": 0}, ADMIN, 422, "reason", id="rollback-missing-reason"),
        pytest.param(ROLLBACK, REASON, {}, 401, "X-API-Key", id="rollback-no-key"),
    ],
)
def test_refusals_change_nothing(
    server: LiveServer, path: str, body: dict, headers: dict, status: int, message: str
) -> None:
    """Set-up: generation 0 retired, 1 deployed, 2 candidate."""
    add_candidate(server, seed=1)
    add_candidate(server, seed=2)
    with server.client() as client:
        assert client.post(PROMOTE.format(1), json=REASON, headers=ADMIN).status_code == 200
        before = (client.get("/v1/policies/default").json(), client.get("/v1/policies/default/audit").json())
        response = client.post(path, json=body, headers=headers)
        after = (client.get("/v1/policies/default").json(), client.get("/v1/policies/default/audit").json())
        assert decide(client)["generation"] == 1
    assert response.status_code == status, response.text
    assert message in response.json()["message"]
    assert after == before


def test_nothing_to_roll_back_to(server: LiveServer) -> None:
    add_candidate(server)
    with server.client() as client:
        response = client.post(ROLLBACK, json=REASON, headers=ADMIN)
        assert statuses(client) == [(0, "deployed"), (1, "candidate")]
    assert response.status_code == 409 and "nothing to roll back to" in response.json()["message"]


def test_a_generation_whose_artifact_cannot_be_loaded_is_not_promoted(server: LiveServer) -> None:
    number, _ = add_candidate(server, corrupt=True)
    with server.client() as client:
        response = client.post(PROMOTE.format(number), json=REASON, headers=ADMIN)
        assert statuses(client) == [(0, "deployed"), (1, "candidate")]
        assert decide(client)["generation"] == 0
    assert response.status_code == 409
    assert "cannot serve" in response.json()["message"] and "sha256" in response.json()["message"]


class RefusingGate:
    def check(self, session: Session, policy: Policy, generation: Generation) -> promotion.GateVerdict:
        return promotion.GateVerdict(False, {"gate": "sufficiency", "level": "INSUFFICIENT", "S": 0.42})


def test_a_refusing_gate_gives_409_with_its_report(server: LiveServer) -> None:
    add_candidate(server)
    server.app.dependency_overrides[generations.promotion_gate] = RefusingGate
    with server.client() as client:
        response = client.post(PROMOTE.format(1), json=REASON, headers=ADMIN)
        generation = client.get("/v1/policies/default/generations/1").json()
        trail = client.get("/v1/policies/default/audit").json()
    refused = runner.invoke(
        cli,
        [
            "promote",
            "--policy",
            "default",
            "--generation",
            "1",
            "--reason",
            "x",
            "--url",
            server.url,
            "--api-key",
            API_KEY,
        ],
    )
    assert response.status_code == 409
    assert response.json() == {
        "message": "the promotion gate refused generation 1 of policy 'default'",
        "detail": {"gate_report": {"gate": "sufficiency", "level": "INSUFFICIENT", "S": 0.42}},
    }
    assert (generation["status"], generation["gate_report"]) == ("candidate", None)
    assert [e["action"] for e in trail] == ["create"]
    assert refused.exit_code == 1 and "gate refused" in refused.output and "INSUFFICIENT" in refused.output


@pytest.mark.parametrize("command", ["promote", "rollback", "generations"])
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output and "--policy" in result.output


def test_cli_promote_rollback_and_generations(server: LiveServer) -> None:
    add_candidate(server)
    admin = ["--actor", "alice", "--url", server.url, "--api-key", API_KEY]
    promoted = runner.invoke(
        cli, ["promote", "--policy", "default", "--generation", "1", "--reason", "OPE +3%", *admin]
    )
    assert promoted.exit_code == 0, promoted.output
    assert "default: promoted generation 1 (generation 0 retired) by alice" in promoted.stdout
    assert "OPE +3%" in promoted.stdout and "no sufficiency gate configured yet" in promoted.stdout

    listed = runner.invoke(cli, ["generations", "--policy", "default", "--url", server.url])
    assert listed.exit_code == 0, listed.output
    header, zero, one = listed.stdout.splitlines()
    assert header.split()[:3] == ["GEN", "STATUS", "PARENT"]
    assert zero.split()[:5] == ["0", "retired", "-", "-", "uniform"]
    assert one.split()[:6] == ["1", "deployed", "0", "lightgbm", "squarecb", "alice"] and one.endswith("OPE +3%")

    again = runner.invoke(cli, ["promote", "--policy", "default", "--generation", "1", "--reason", "again", *admin])
    assert again.exit_code == 1 and "HTTP 409" in again.output and "already deployed" in again.output

    back = runner.invoke(cli, ["rollback", "--policy", "default", "--reason", "declines up", *admin])
    assert back.exit_code == 0, back.output
    assert "default: rolled back to generation 0 (generation 1 retired) by alice" in back.stdout
    with server.client() as client:
        assert decide(client)["generation"] == 0

    no_key = ["rollback", "--policy", "default", "--to", "1", "--reason", "x", "--url", server.url]
    refused = runner.invoke(cli, no_key, env={"BANDITGATE_API_KEY": ""})
    assert refused.exit_code == 64 and "API key" in refused.output
    as_json = runner.invoke(cli, ["generations", "--policy", "default", "--json", "--url", server.url])
    assert [g["status"] for g in json.loads(as_json.stdout)] == ["deployed", "retired"]
    unknown = runner.invoke(cli, ["generations", "--policy", "nope", "--url", server.url])
    assert unknown.exit_code == 1 and "HTTP 404" in unknown.output
