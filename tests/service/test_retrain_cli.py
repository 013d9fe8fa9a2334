"""``banditgate retrain`` on a ledger of simulated traffic."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from banditgate.service.cli import app
from banditgate.simulator import PaymentWorld
from tests.support.ledger_fill import simulated_ledger

runner = CliRunner()
WORLD = PaymentWorld("none", seed=5)


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    return simulated_ledger(tmp_path, WORLD, days=3, per_day=1000, seed=2)


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
