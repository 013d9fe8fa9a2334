"""The sufficiency gate through a real server: POST .../gate computes (admin, in a worker process), GET serves
what is stored, and promotion refuses without a usable evaluation."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from banditgate.ledger.models import GateEvaluation
from banditgate.monitoring import gate
from banditgate.monitoring.gate import CONCEPT_DRIFT_LIMIT
from banditgate.monitoring.proxies.feature_drift import FeatureDrift, feature_drift_proxies
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.service import gate_worker
from banditgate.service.cli import app as cli
from banditgate.service.gate_worker import GateJob
from banditgate.service.runtime import prepare_ledger
from banditgate.service.settings import Settings
from banditgate.simulator import PaymentWorld
from tests.conftest import API_KEY
from tests.support.ledger_fill import fill
from tests.support.server import LiveServer
from tests.support.templates import Build, LedgerTemplates

ADMIN = {"X-API-Key": API_KEY, "X-Actor": "carol"}
GATE = "/v1/policies/default/generations/{}/gate"
NOW = datetime.now(UTC).replace(microsecond=0)
# Traffic of the last 12 days up to now, so the gate's default window (as of now) holds it.
WORLD = PaymentWorld("none", seed=5, epoch=NOW - timedelta(days=12))
FUTURE = (NOW + timedelta(days=7)).isoformat()
runner = CliRunner()


def with_evidence(sessions: sessionmaker[Session], artifacts: Path) -> None:
    """12 days of simulated traffic, and generation 1 trained on the first 8 (a candidate)."""
    fill(sessions, artifacts, WORLD, start=WORLD.epoch, days=12, per_day=250, seed=5)
    options = RetrainOptions(as_of=WORLD.epoch + timedelta(days=8), window=timedelta(days=8))
    retrain(sessions, artifacts, "default", options)


def without_evidence(sessions: sessionmaker[Session], artifacts: Path) -> None:
    """Generation 1 trained on traffic long gone: nothing in the gate's window."""
    old = PaymentWorld("none", seed=5, epoch=NOW - timedelta(days=200))
    fill(sessions, artifacts, old, start=old.epoch, days=8, per_day=250, seed=5)
    options = RetrainOptions(as_of=old.epoch + timedelta(days=8), window=timedelta(days=8))
    retrain(sessions, artifacts, "default", options)


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory: pytest.TempPathFactory) -> LedgerTemplates:
    """The ledgers of :func:`with_evidence` and :func:`without_evidence`, filled and trained once per database
    kind for the whole module: each test serves its own copy (see :mod:`tests.support.templates`)."""
    return LedgerTemplates(tmp_path_factory.mktemp("gate_ledgers"))


def serve_copy(
    request: pytest.FixtureRequest, ledgers: LedgerTemplates, settings: Settings, build: Build
) -> Iterator[LiveServer]:
    admin_url = None if settings.database_url.startswith("sqlite") else request.getfixturevalue("postgres_admin_url")
    with LiveServer(ledgers.copy(build.__name__, build, settings, admin_url)) as live:
        yield live


@pytest.fixture
def evidence_server(
    request: pytest.FixtureRequest, ledgers: LedgerTemplates, settings: Settings
) -> Iterator[LiveServer]:
    """A server on a copy of the :func:`with_evidence` ledger."""
    yield from serve_copy(request, ledgers, settings, with_evidence)


@pytest.fixture
def stale_server(request: pytest.FixtureRequest, ledgers: LedgerTemplates, settings: Settings) -> Iterator[LiveServer]:
    """A server on a copy of the :func:`without_evidence` ledger."""
    yield from serve_copy(request, ledgers, settings, without_evidence)


def promote(server: LiveServer, **body: object) -> tuple[int, dict]:
    with server.client(timeout=120) as client:
        response = client.post(
            "/v1/policies/default/generations/1/promote", json={"reason": "OPE +2%", **body}, headers=ADMIN
        )
    return response.status_code, response.json()


def compute(server: LiveServer, generation: int = 1, **body: object) -> dict:
    """POST .../gate with the admin key: the new report (stored unless ``store=False``)."""
    with server.client(timeout=180) as client:
        response = client.post(GATE.format(generation), json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def stored_evaluations(server: LiveServer) -> int:
    with server.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(GateEvaluation)) or 0


def rounded(value: object) -> object:
    """``value`` with every float rounded to 10 significant digits."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return float(f"{value:.10g}") if isinstance(value, float) else value


@pytest.fixture
def no_gate_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server runs in this process: a gate evaluation computed here, on its request path, fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the gate was evaluated in the serving process")

    monkeypatch.setattr(gate, "evaluate_gate", refuse)


def test_a_gate_evaluation_is_computed_by_a_worker_process_and_served_as_stored(
    evidence_server: LiveServer, no_gate_in_this_process: None
) -> None:
    with evidence_server.client() as client:
        before = client.get(GATE.format(1))
    assert before.status_code == 404 and "banditgate gate --policy default --generation 1" in before.text
    report = compute(evidence_server, as_of=NOW.isoformat())
    assert (report["policy"], report["generation"], report["as_of"]) == ("default", 1, NOW.isoformat())
    assert report["level"] == "SUFFICIENT" and report["exit_code"] == 0 and report["S"] >= 0.8
    assert CONCEPT_DRIFT_LIMIT in report["limits"]
    assert report["evaluation_id"] == 1 and stored_evaluations(evidence_server) == 1
    with evidence_server.client() as client:
        latest = client.get(GATE.format(1))
        by_id = client.get(GATE.format(1) + "/1")
        missing = [client.get(GATE.format(1) + "/2"), client.get(GATE.format(0) + "/1")]
    assert latest.status_code == 200 and latest.json() == report and by_id.json() == report
    assert [r.status_code for r in missing] == [404, 404]
    unstored = compute(evidence_server, as_of=NOW.isoformat(), store=False)
    assert "evaluation_id" not in unstored and stored_evaluations(evidence_server) == 1


def test_the_worker_runs_the_drift_tests_without_evidently_s_report(
    evidence_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker sends back only the JSON report: the HTML report's evidently Report (a plotly figure per
    column, most of the evaluation on a small ledger) would be built and thrown away."""
    asked = []

    def drift(*args: object, **kwargs: Any) -> FeatureDrift:
        asked.append(kwargs.get("report", True))
        return feature_drift_proxies(*args, **kwargs)

    monkeypatch.setattr(gate, "feature_drift_proxies", drift)
    settings = evidence_server.settings
    job = GateJob("default", 1, settings.gate_for("default").model_dump(mode="json"), as_of=NOW.isoformat())
    payload = {
        "database_url": settings.database_url,
        "sqlite_synchronous": settings.sqlite_synchronous,
        "artifact_dir": str(settings.artifact_dir),
        "job": asdict(job),
    }
    report = gate_worker.run_job(payload)["report"]
    assert asked == [False]
    assert report["level"] == "SUFFICIENT" and report["evaluation_id"] == 1
    assert "drifted_columns_share" in json.dumps(report)  # the drift tests ran


def test_the_cli_gives_the_same_report_and_its_level_as_exit_status(evidence_server: LiveServer, monkeypatch) -> None:
    served = compute(evidence_server, as_of=NOW.isoformat(), store=False)
    monkeypatch.setenv("BANDITGATE_DATABASE_URL", evidence_server.settings.database_url)
    monkeypatch.setenv("BANDITGATE_ARTIFACT_DIR", str(evidence_server.settings.artifact_dir))
    # "candidate": the newest candidate, generation 1 here
    result = runner.invoke(cli, ["gate", "--generation", "candidate", "--as-of", NOW.isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["generation"] == 1
    assert printed.pop("evaluation_id") == 1 and stored_evaluations(evidence_server) == 1
    assert "for reading only" in result.stderr  # as of a chosen time: no promotion relies on it
    # The worker is another process: sums over categories may run in another order (string hashing differs
    # between processes), which moves the last digits of a few drift distances.
    assert rounded({k: v for k, v in printed.items() if k != "computed_at"}) == rounded(
        {k: v for k, v in served.items() if k != "computed_at"}
    )
    insufficient = runner.invoke(cli, ["gate", "--generation", "0", "--no-store"])
    assert insufficient.exit_code == 2, insufficient.output
    assert "INSUFFICIENT" in insufficient.stdout and stored_evaluations(evidence_server) == 1


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        (["--generation", "newest"], 64, "--generation must be a number or 'candidate'"),
        (["--generation", "1", "--every", "0h"], 64, "--every: interval '0h'"),
        (["--generation", "candidate"], 4, "policy 'default' has no candidate generation"),
    ],
)
def test_the_cli_refuses_what_it_cannot_judge(
    tmp_path: Path, monkeypatch, arguments: list[str], status: int, message: str
) -> None:
    monkeypatch.setenv("BANDITGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("BANDITGATE_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    prepare_ledger(Settings())
    result = runner.invoke(cli, ["gate", *arguments])
    assert result.exit_code == status and message in result.stderr, result.output


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/v1/policies/nope/generations/1/gate", None, 404, "nope"),
        ("GET", GATE.format(5), None, 404, "no generation 5"),
        ("GET", GATE.format(0), None, 404, "POST /v1/policies/default/generations/0/gate"),
        ("GET", GATE.format(1) + "/0", None, 422, "evaluation_id"),
        ("POST", "/v1/policies/nope/generations/1/gate", {}, 404, "nope"),
        ("POST", GATE.format(5), {}, 404, "no generation 5"),
        ("POST", GATE.format(1), {"what_if": "sideways"}, 422, "what_if"),
        ("POST", GATE.format(1), {"window_days": 0}, 422, "window_days"),
        ("POST", GATE.format(1), {"as_of": "2026-01-01T00:00:00"}, 422, "as_of"),
        # Beyond pandas' timestamps (1677-2262): once a 500 from deep inside the evaluation.
        ("POST", GATE.format(0), {"as_of": "9999-12-31T00:00:00Z"}, 422, "as_of"),
        ("POST", GATE.format(0), {"as_of": "1600-01-01T00:00:00+00:00"}, 422, "supported range"),
        ("POST", GATE.format(1), {"store": True, "force": 1}, 422, "force"),
    ],
)
def test_gate_endpoints_refuse_bad_requests(
    server: LiveServer, method: str, path: str, body: dict | None, status: int, message: str
) -> None:
    with server.client() as client:
        response = client.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == status and message in response.text
    assert stored_evaluations(server) == 0


def test_computing_or_storing_an_evaluation_needs_the_api_key(evidence_server: LiveServer) -> None:
    """The evidence a promotion relies on is chosen by the admin, not by whoever can reach the evidence_server."""
    with evidence_server.client() as client:
        # What used to compute and store an evaluation as of a time and window of the client's choosing.
        chosen = {"store": "true", "as_of": NOW.isoformat(), "window_days": "1"}
        read = client.get(GATE.format(1), params=chosen)
        unauthenticated = client.post(GATE.format(1), json={"window_days": 1})
        empty_key = client.post(GATE.format(1), json={}, headers={"X-API-Key": ""})
        wrong_key = client.post(GATE.format(1), json={}, headers={"X-API-Key": "not-the-admin-key"})
    assert read.status_code == 404
    assert (unauthenticated.status_code, empty_key.status_code, wrong_key.status_code) == (401, 401, 403)
    assert stored_evaluations(evidence_server) == 0


def test_a_busy_gate_worker_answers_503_with_retry_after(server: LiveServer) -> None:
    lock = server.settings.artifact_dir / "gate-cache" / "worker.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another serving process of this host computing one
        with server.client() as client:
            busy = client.post(GATE.format(0), json={}, headers=ADMIN)
    assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
    assert "already running" in busy.json()["message"] and stored_evaluations(server) == 0


def test_a_gate_evaluation_over_its_time_limit_is_stopped(settings) -> None:
    with LiveServer(settings.model_copy(update={"gate_timeout_seconds": 0.05})) as live, live.client() as client:
        response = client.post(GATE.format(0), json={}, headers=ADMIN)
        assert stored_evaluations(live) == 0
    assert response.status_code == 503 and "was stopped" in response.json()["message"]


def test_promotion_without_a_stored_evaluation_is_refused_and_computes_nothing(
    evidence_server: LiveServer, no_gate_in_this_process: None
) -> None:
    status, body = promote(evidence_server)
    assert status == 409
    report = body["detail"]["gate_report"]
    assert (report["allowed"], report["evaluation_id"]) == (False, None)
    assert "banditgate gate --policy default --generation 1" in report["message"]
    assert stored_evaluations(evidence_server) == 0


def test_an_as_of_outside_the_supported_range_is_a_usage_error_of_the_cli(server: LiveServer, monkeypatch) -> None:
    monkeypatch.setenv("BANDITGATE_DATABASE_URL", server.settings.database_url)
    monkeypatch.setenv("BANDITGATE_ARTIFACT_DIR", str(server.settings.artifact_dir))
    result = runner.invoke(cli, ["gate", "--generation", "0", "--as-of", "9999-12-31", "--no-store"])
    # A usage error, not a crash (exit 1 reads as DEGRADED, 2 as INSUFFICIENT).
    assert result.exit_code == 64 and isinstance(result.exception, SystemExit | None), result.exception
    said = " ".join(result.output.replace("│", " ").split())  # the message, out of its wrapped box
    assert "--as-of '9999-12-31'" in said and "outside the supported range" in said


def test_promotion_without_evidence_is_refused_with_the_gate_report(stale_server: LiveServer) -> None:
    assert compute(stale_server)["level"] == "INSUFFICIENT"
    status, body = promote(stale_server)
    assert status == 409
    report = body["detail"]["gate_report"]
    assert (report["gate"], report["allowed"], report["level"]) == ("sufficiency", False, "INSUFFICIENT")
    assert report["report"]["dimensions"]["completeness"]["n"] == 0  # no decision in the window
    assert report["evaluation_id"] == 1 and stored_evaluations(stale_server) == 1
    with stale_server.client() as client:
        assert client.get("/v1/policies/default/generations/1").json()["status"] == "candidate"
        assert [e["action"] for e in client.get("/v1/policies/default/audit").json()] == ["create"]


def test_an_override_names_who_why_and_until_when_and_is_recorded(stale_server: LiveServer) -> None:
    compute(stale_server)
    override = {"by": "risk-officer dana", "reason": "incident INC-42: old model misroutes NL", "until": FUTURE}
    status, body = promote(stale_server, override=override)
    assert status == 200, body
    gate = body["audit_event"]["details"]["gate"]
    assert gate["allowed"] and gate["level"] == "INSUFFICIENT"
    assert gate["override"] == {**override, "until": datetime.fromisoformat(FUTURE).isoformat()}
    assert gate["evaluation_id"] == 1
    assert body["generation"]["gate_report"] == gate and body["generation"]["status"] == "deployed"


def test_once_the_override_expires_the_deployed_generation_alerts(stale_server: LiveServer) -> None:
    override = {"by": "dana", "reason": "incident", "until": FUTURE}
    assert promote(stale_server, override=override)[0] == 200
    later = (datetime.fromisoformat(FUTURE) + timedelta(days=1)).isoformat()
    before = compute(stale_server, store=False)
    after = compute(stale_server, as_of=later, store=False)
    assert before["override"]["expired"] is False and not [a for a in before["alerts"] if a["kind"] == "override"]
    assert after["override"]["expired"] is True and after["level"] == "INSUFFICIENT"
    assert [a["message"] for a in after["alerts"] if a["kind"] == "override"] == [
        f"generation 1 was promoted under an override by dana that expired at "
        f"{datetime.fromisoformat(FUTURE).isoformat()}; its evidence is still INSUFFICIENT"
    ]


def test_an_expired_override_does_not_count(stale_server: LiveServer) -> None:
    past = (NOW - timedelta(hours=1)).isoformat()
    status, body = promote(stale_server, override={"by": "dana", "reason": "late", "until": past})
    assert status == 409 and "expired" in body["detail"]["gate_report"]["message"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"by": "dana", "reason": "x"}, "until"),
        ({"by": "dana", "reason": "x", "until": "2030-01-01T00:00:00"}, "timezone"),
        ({"by": " ", "reason": "x", "until": FUTURE}, "override.by: must not be blank"),
        ({"reason": "x", "until": FUTURE}, "by"),
    ],
)
def test_an_incomplete_override_is_refused(server: LiveServer, override: dict, message: str) -> None:
    status, body = promote(server, override=override)
    assert status == 422 and message in str(body)


def test_sufficient_evidence_promotes_without_override_and_reuses_a_recent_evaluation(
    evidence_server: LiveServer,
) -> None:
    stored = compute(evidence_server)
    status, body = promote(evidence_server)
    assert status == 200, body
    gate = body["audit_event"]["details"]["gate"]
    assert (gate["level"], gate["evaluation_id"]) == ("SUFFICIENT", stored["evaluation_id"])
    assert "override" not in gate and stored_evaluations(evidence_server) == 1


def test_cli_promote_with_an_override(stale_server: LiveServer) -> None:
    compute(stale_server)
    base = ["promote", "--policy", "default", "--generation", "1", "--reason", "hotfix"]
    common = ["--url", stale_server.url, "--api-key", API_KEY]
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
    stale_server: LiveServer, tmp_path
) -> None:
    compute(stale_server)
    base = ["promote", "--policy", "default", "--generation", "1", "--reason", "hotfix"]
    common = ["--url", stale_server.url, "--api-key", API_KEY]
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


def test_a_gate_that_cannot_load_a_model_answers_409_and_nothing_is_promoted(evidence_server: LiveServer) -> None:
    assert promote(evidence_server, override={"by": "dana", "reason": "first model", "until": FUTURE})[0] == 200
    options = RetrainOptions(as_of=WORLD.epoch + timedelta(days=10), window=timedelta(days=10))
    retrain(evidence_server.runtime.sessions, evidence_server.settings.artifact_dir, "default", options)
    # Generation 1's artifact, which the gate of generation 2 reads for the disagreement proxies.
    deployed = evidence_server.settings.artifact_dir / "default" / "generation-00001.oracle"
    deployed.write_bytes(deployed.read_bytes()[:-10])
    with evidence_server.client(timeout=120) as client:
        evaluation = client.post(GATE.format(2), json={}, headers=ADMIN)
        response = client.post("/v1/policies/default/generations/2/promote", json={"reason": "next"}, headers=ADMIN)
        statuses = [g["status"] for g in client.get("/v1/policies/default/generations").json()]
    assert evaluation.status_code == 409 and "sha256" in evaluation.json()["message"]
    assert response.status_code == 409 and "no usable gate evaluation" in response.text
    assert statuses == ["retired", "deployed", "candidate"]


@pytest.mark.slow
def test_the_scheduled_gate_says_when_there_is_no_candidate_and_keeps_running(tmp_path: Path) -> None:
    """``gate --generation candidate --every``: a policy without a candidate is logged, not a silent loop."""
    environment = {
        **os.environ,
        "BANDITGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "BANDITGATE_ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }
    command = [sys.executable, "-m", "banditgate.service.cli", "gate", "--generation", "candidate", "--every", "1h"]
    with subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True) as scheduled:
        deadline = threading.Timer(180, scheduled.kill)  # a loaded machine takes seconds to import and migrate
        deadline.start()
        try:
            assert scheduled.stderr is not None
            logged = []
            while not any("default: no candidate generation to judge" in line for line in logged):
                line = scheduled.stderr.readline()
                assert line, f"the scheduled gate ended without saying so:\n{''.join(logged)}"
                logged.append(line)
            assert scheduled.poll() is None, "the schedule goes on"
        finally:
            deadline.cancel()
            scheduled.kill()
