"""The sufficiency gate through a real server: GET .../gate, and promotion that refuses without evidence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from banditgate.ledger.models import GateEvaluation
from banditgate.monitoring.gate import CONCEPT_DRIFT_LIMIT
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.service.cli import app as cli
from banditgate.simulator import PaymentWorld
from tests.conftest import API_KEY
from tests.support.ledger_fill import fill
from tests.support.server import LiveServer

ADMIN = {"X-API-Key": API_KEY, "X-Actor": "carol"}
NOW = datetime.now(UTC).replace(microsecond=0)
# Traffic of the last 12 days up to now, so the gate's default window (as of now) holds it.
WORLD = PaymentWorld("none", seed=5, epoch=NOW - timedelta(days=12))
FUTURE = (NOW + timedelta(days=7)).isoformat()
runner = CliRunner()


def with_evidence(server: LiveServer) -> None:
    """12 days of simulated traffic, and generation 1 trained on the first 8 (a candidate)."""
    artifacts = server.settings.artifact_dir
    fill(server.runtime.sessions, artifacts, WORLD, start=WORLD.epoch, days=12, per_day=250, seed=5)
    options = RetrainOptions(as_of=WORLD.epoch + timedelta(days=8), window=timedelta(days=8))
    retrain(server.runtime.sessions, artifacts, "default", options)


def without_evidence(server: LiveServer) -> None:
    """Generation 1 trained on traffic long gone: nothing in the gate's window."""
    artifacts = server.settings.artifact_dir
    old = PaymentWorld("none", seed=5, epoch=NOW - timedelta(days=200))
    fill(server.runtime.sessions, artifacts, old, start=old.epoch, days=8, per_day=250, seed=5)
    options = RetrainOptions(as_of=old.epoch + timedelta(days=8), window=timedelta(days=8))
    retrain(server.runtime.sessions, artifacts, "default", options)


def promote(server: LiveServer, **body: object) -> tuple[int, dict]:
    with server.client(timeout=120) as client:
        response = client.post(
            "/v1/policies/default/generations/1/promote", json={"reason": "OPE +2%", **body}, headers=ADMIN
        )
    return response.status_code, response.json()


def stored_evaluations(server: LiveServer) -> int:
    with server.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(GateEvaluation)) or 0


def test_gate_endpoint_reports_a_candidate_with_fresh_evidence(server: LiveServer) -> None:
    with_evidence(server)
    with server.client(timeout=120) as client:
        response = client.get("/v1/policies/default/generations/1/gate", params={"as_of": NOW.isoformat()})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["policy"], report["generation"], report["as_of"]) == ("default", 1, NOW.isoformat())
    assert report["level"] == "SUFFICIENT" and report["exit_code"] == 0 and report["S"] >= 0.8
    assert CONCEPT_DRIFT_LIMIT in report["limits"]
    assert stored_evaluations(server) == 0  # a read stores nothing unless asked


def test_the_cli_gives_the_same_report_and_its_level_as_exit_status(server: LiveServer, monkeypatch) -> None:
    with_evidence(server)
    with server.client(timeout=120) as client:
        served = client.get("/v1/policies/default/generations/1/gate", params={"as_of": NOW.isoformat()}).json()
    monkeypatch.setenv("BANDITGATE_DATABASE_URL", server.settings.database_url)
    monkeypatch.setenv("BANDITGATE_ARTIFACT_DIR", str(server.settings.artifact_dir))
    result = runner.invoke(cli, ["gate", "--generation", "1", "--as-of", NOW.isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed.pop("evaluation_id") == 1 and stored_evaluations(server) == 1
    assert {k: v for k, v in printed.items() if k != "computed_at"} == {
        k: v for k, v in served.items() if k != "computed_at"
    }
    insufficient = runner.invoke(cli, ["gate", "--generation", "0", "--no-store"])
    assert insufficient.exit_code == 2, insufficient.output
    assert "INSUFFICIENT" in insufficient.stdout and stored_evaluations(server) == 1


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v1/policies/nope/generations/1/gate", 404, "nope"),
        ("/v1/policies/default/generations/5/gate", 404, "no generation 5"),
        ("/v1/policies/default/generations/1/gate?what_if=sideways", 422, "what_if"),
        ("/v1/policies/default/generations/1/gate?window_days=0", 422, "window_days"),
        # Beyond pandas' timestamps (1677-2262): once a 500 from deep inside the evaluation.
        ("/v1/policies/default/generations/0/gate?as_of=9999-12-31T00:00:00Z", 422, "as_of"),
        ("/v1/policies/default/generations/0/gate?as_of=1600-01-01T00:00:00%2B00:00", 422, "supported range"),
    ],
)
def test_gate_endpoint_refuses_bad_requests(server: LiveServer, path: str, status: int, message: str) -> None:
    with server.client() as client:
        response = client.get(path)
    assert response.status_code == status and message in response.text


def test_an_as_of_outside_the_supported_range_is_a_usage_error_of_the_cli(server: LiveServer, monkeypatch) -> None:
    monkeypatch.setenv("BANDITGATE_DATABASE_URL", server.settings.database_url)
    monkeypatch.setenv("BANDITGATE_ARTIFACT_DIR", str(server.settings.artifact_dir))
    result = runner.invoke(cli, ["gate", "--generation", "0", "--as-of", "9999-12-31", "--no-store"])
    # A usage error (the CLI library's own exit status), not a crash (exit 1 reads as DEGRADED).
    assert result.exit_code not in (0, 1) and isinstance(result.exception, SystemExit | None), result.exception
    said = " ".join(result.output.replace("│", " ").split())  # the message, out of its wrapped box
    assert "--as-of '9999-12-31'" in said and "outside the supported range" in said


def test_promotion_without_evidence_is_refused_with_the_gate_report(server: LiveServer) -> None:
    without_evidence(server)
    status, body = promote(server)
    assert status == 409
    report = body["detail"]["gate_report"]
    assert (report["gate"], report["allowed"], report["level"]) == ("sufficiency", False, "INSUFFICIENT")
    assert report["report"]["dimensions"]["completeness"]["n"] == 0  # no decision in the window
    assert report["evaluation_id"] == 1 and stored_evaluations(server) == 1
    with server.client() as client:
        assert client.get("/v1/policies/default/generations/1").json()["status"] == "candidate"
        assert [e["action"] for e in client.get("/v1/policies/default/audit").json()] == ["create"]


def test_an_override_names_who_why_and_until_when_and_is_recorded(server: LiveServer) -> None:
    without_evidence(server)
    override = {"by": "risk-officer dana", "reason": "incident INC-42: old model misroutes NL", "until": FUTURE}
    status, body = promote(server, override=override)
    assert status == 200, body
    gate = body["audit_event"]["details"]["gate"]
    assert gate["allowed"] and gate["level"] == "INSUFFICIENT"
    assert gate["override"] == {**override, "until": datetime.fromisoformat(FUTURE).isoformat()}
    assert gate["evaluation_id"] == 1
    assert body["generation"]["gate_report"] == gate and body["generation"]["status"] == "deployed"


def test_once_the_override_expires_the_deployed_generation_alerts(server: LiveServer) -> None:
    without_evidence(server)
    override = {"by": "dana", "reason": "incident", "until": FUTURE}
    assert promote(server, override=override)[0] == 200
    later = (datetime.fromisoformat(FUTURE) + timedelta(days=1)).isoformat()
    with server.client(timeout=120) as client:
        before = client.get("/v1/policies/default/generations/1/gate").json()
        after = client.get("/v1/policies/default/generations/1/gate", params={"as_of": later}).json()
    assert before["override"]["expired"] is False and not [a for a in before["alerts"] if a["kind"] == "override"]
    assert after["override"]["expired"] is True and after["level"] == "INSUFFICIENT"
    assert [a["message"] for a in after["alerts"] if a["kind"] == "override"] == [
        f"generation 1 was promoted under an override by dana that expired at "
        f"{datetime.fromisoformat(FUTURE).isoformat()}; its evidence is still INSUFFICIENT"
    ]


def test_an_expired_override_does_not_count(server: LiveServer) -> None:
    without_evidence(server)
    past = (NOW - timedelta(hours=1)).isoformat()
    status, body = promote(server, override={"by": "dana", "reason": "late", "until": past})
    assert status == 409 and "expired" in body["detail"]["gate_report"]["message"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"by": "dana", "reason": "x"}, "until"),
        ({"by": "dana", "reason": "x", "until": "2030-01-01T00:00:00"}, "timezone"),
        ({"by": " ", "reason": "x", "until": FUTURE}, "responsibility"),
        ({"reason": "x", "until": FUTURE}, "by"),
    ],
)
def test_an_incomplete_override_is_refused(server: LiveServer, override: dict, message: str) -> None:
    status, body = promote(server, override=override)
    assert status == 422 and message in str(body)


def test_sufficient_evidence_promotes_without_override_and_reuses_a_recent_evaluation(server: LiveServer) -> None:
    with_evidence(server)
    with server.client(timeout=120) as client:
        stored = client.get("/v1/policies/default/generations/1/gate", params={"store": True}).json()
    status, body = promote(server)
    assert status == 200, body
    gate = body["audit_event"]["details"]["gate"]
    assert (gate["level"], gate["evaluation_id"]) == ("SUFFICIENT", stored["evaluation_id"])
    assert "override" not in gate and stored_evaluations(server) == 1


def test_cli_promote_with_an_override(server: LiveServer) -> None:
    without_evidence(server)
    base = ["promote", "--policy", "default", "--generation", "1", "--reason", "hotfix"]
    common = ["--url", server.url, "--api-key", API_KEY]
    refused = runner.invoke(cli, [*base, *common])
    assert refused.exit_code == 1 and "INSUFFICIENT" in refused.output
    partial = runner.invoke(cli, [*base, "--override-by", "dana", *common])
    assert partial.exit_code == 64 and "--override-until" in partial.output
    promoted = runner.invoke(
        cli,
        [*base, "--override-by", "dana", "--override-reason", "incident", "--override-until", FUTURE, *common],
    )
    assert promoted.exit_code == 0, promoted.output
    assert "promoted generation 1" in promoted.output and "override by dana" in promoted.output


def test_a_refused_promotion_prints_the_verdict_and_its_reasons_and_keeps_the_report(
    server: LiveServer, tmp_path
) -> None:
    without_evidence(server)
    base = ["promote", "--policy", "default", "--generation", "1", "--reason", "hotfix"]
    common = ["--url", server.url, "--api-key", API_KEY]
    kept = tmp_path / "gate.json"
    refused = runner.invoke(cli, [*base, *common, "--report", str(kept)])
    assert refused.exit_code == 1 and refused.stdout == ""
    lines = refused.stderr.splitlines()
    # A few lines (the report itself is tens of kilobytes of JSON): the refusal, the verdict, the reasons.
    assert len(refused.stderr) < 3_000 and len(lines) < 15, refused.stderr
    assert lines[0] == "HTTP 409: the promotion gate refused generation 1 of policy 'default'"
    assert lines[1].startswith("verdict: INSUFFICIENT (S = 0.000, evaluation 1 as of ")
    assert any("too little evidence to judge: 0 decisions in the window" in line for line in lines)
    assert any("completeness cannot reach S = 0.80 by itself" in line for line in lines)
    report = json.loads(kept.read_text())
    assert report["level"] == "INSUFFICIENT" and report["report"]["dimensions"]["completeness"]["n"] == 0
    as_json = runner.invoke(cli, [*base, *common, "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["detail"]["gate_report"]["report"]["evidence_size"]["decisions"] == 0


def test_a_gate_that_cannot_load_a_model_refuses_with_409(server: LiveServer) -> None:
    with_evidence(server)
    assert promote(server, override={"by": "dana", "reason": "first model", "until": FUTURE})[0] == 200
    options = RetrainOptions(as_of=WORLD.epoch + timedelta(days=10), window=timedelta(days=10))
    retrain(server.runtime.sessions, server.settings.artifact_dir, "default", options)
    # Generation 1's artifact, which the gate of generation 2 reads for the disagreement proxies.
    deployed = server.settings.artifact_dir / "default" / "generation-00001.oracle"
    deployed.write_bytes(deployed.read_bytes()[:-10])
    with server.client(timeout=120) as client:
        response = client.post("/v1/policies/default/generations/2/promote", json={"reason": "next"}, headers=ADMIN)
        statuses = [g["status"] for g in client.get("/v1/policies/default/generations").json()]
    assert response.status_code == 409
    assert "sufficiency gate cannot be evaluated" in response.json()["message"] and "sha256" in response.text
    assert statuses == ["retired", "deployed", "candidate"]
