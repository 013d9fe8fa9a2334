"""``banditgate retrain`` on a ledger of simulated traffic."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from banditgate.service.cli import app
from banditgate.simulator import PaymentWorld
from tests.support.ledger_fill import fill

runner = CliRunner()
WORLD = PaymentWorld("none", seed=5)


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", registry.PolicySpec(), actor="test")
    fill(sessions, tmp_path / "artifacts", WORLD, start=WORLD.epoch, days=3, per_day=1000, seed=2)
    engine.dispose()
    return {"BANDITGATE_DATABASE_URL": url, "BANDITGATE_ARTIFACT_DIR": str(tmp_path / "artifacts")}


def test_retrain_prints_the_candidate_and_its_ope_report(environment: dict[str, str]) -> None:
    as_of = (WORLD.epoch + timedelta(days=3)).isoformat()
    result = runner.invoke(app, ["retrain", "--policy", "default", "--as-of", as_of, "--json"], env=environment)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["generation"] == 1 and summary["status"] == "candidate"
    assert set(summary["ope_report"]["policies"]) == {"candidate", "candidate_greedy", "deployed", "uniform"}
    table = runner.invoke(app, ["retrain", "--as-of", as_of], env=environment)
    assert table.exit_code == 0 and "candidate generation 2" in table.stdout and "banditgate promote" in table.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--policy", "nope"], "unknown policy"),
        (["--reward-kind", "chargeback"], "matured decisions"),
        (["--every", "often"], "interval"),
        (["--as-of", "yesterday"], "ISO 8601"),
        (["--gamma-schedule", "cosine"], "gamma schedule"),
    ],
)
def test_refusals_exit_non_zero_with_a_reason(environment: dict[str, str], arguments: list[str], message: str) -> None:
    as_of = ["--as-of", (WORLD.epoch + timedelta(days=3)).isoformat()] if "--as-of" not in arguments else []
    result = runner.invoke(app, ["retrain", *as_of, *arguments], env=environment)
    assert result.exit_code != 0
    assert message in result.output
