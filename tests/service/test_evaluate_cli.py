"""``banditgate evaluate``: a retrained candidate judged on decisions logged after its training window."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command as alembic_command
from sqlalchemy import inspect
from typer.testing import CliRunner

from banditgate.ledger.db import make_engine
from banditgate.ledger.migrate import alembic_config
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.service.cli import app
from banditgate.simulator import PaymentWorld
from tests.support.ledger_fill import simulated_ledger

runner = CliRunner()
WORLD = PaymentWorld("none", seed=8)
TRAINED_UNTIL = WORLD.epoch + timedelta(days=3)


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """Four simulated days; generation 1 trained on the first three."""
    options = RetrainOptions(as_of=TRAINED_UNTIL, window=timedelta(days=3))
    return simulated_ledger(
        tmp_path,
        WORLD,
        days=4,
        per_day=1000,
        seed=4,
        then=lambda sessions: retrain(sessions, tmp_path / "artifacts", "default", options),
    )


def test_evaluate_writes_json_and_html_reports(environment: dict[str, str], tmp_path: Path) -> None:
    as_of = (WORLD.epoch + timedelta(days=4)).isoformat()
    arguments = ["evaluate", "--generation", "1", "--as-of", as_of, "--output", str(tmp_path / "reports"), "--json"]
    result = runner.invoke(app, arguments, env=environment)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["evaluated_from"] == TRAINED_UNTIL.isoformat()  # only rows the candidate never saw
    assert 800 <= report["n"] <= 1100
    assert set(report["policies"]) == {"candidate", "candidate_greedy", "deployed", "uniform"}
    # Generation 0 (uniform) logged every evaluated row: IPS of uniform is the logged mean.
    assert report["policies"]["uniform"]["estimates"]["ips"]["value"] == pytest.approx(report["logged_reward"])
    html = (tmp_path / "reports" / "default-generation-1-evaluation.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "switch_dr" in html
    # How retraining chose the generation's floor and gamma, with every candidate it judged.
    choice = report["exploration"]
    assert choice["floor_rule"] == "evidence" and choice["gamma_rule"] == "ope"
    assert len(choice["candidates"]) == len(RetrainOptions().gamma_candidates)
    assert "How generation 1 explores" in html and f"{choice['gamma']:.0f} (chosen)" in html
    assert json.loads((tmp_path / "reports" / "default-generation-1-evaluation.json").read_text()) == report


def test_nothing_to_evaluate_before_new_traffic(environment: dict[str, str], tmp_path: Path) -> None:
    arguments = ["evaluate", "--generation", "1", "--as-of", TRAINED_UNTIL.isoformat(), "--output", str(tmp_path)]
    result = runner.invoke(app, arguments, env=environment)
    assert result.exit_code == 1 and "after its training window" in result.output
    unknown = runner.invoke(app, ["evaluate", "--generation", "7", "--output", str(tmp_path)], env=environment)
    assert unknown.exit_code == 1 and "no generation 7" in unknown.output


@pytest.mark.parametrize("command", ["health", "evaluate"])
def test_reports_on_a_ledger_of_an_older_schema_migrate_it_first(
    environment: dict[str, str], tmp_path: Path, command: str
) -> None:
    engine = make_engine(environment["BANDITGATE_DATABASE_URL"])
    try:
        with engine.begin() as connection:
            config = alembic_config(engine)
            config.attributes["connection"] = connection
            alembic_command.downgrade(config, "0002")
        assert "segment_values" not in {c["name"] for c in inspect(engine).get_columns("decisions")}
        as_of = (WORLD.epoch + timedelta(days=4)).isoformat()
        arguments = {
            "health": ["health", "--json"],
            "evaluate": ["evaluate", "--generation", "1", "--as-of", as_of, "--output", str(tmp_path / "r"), "--json"],
        }[command]
        result = runner.invoke(app, arguments, env=environment)
        assert result.exit_code == 0, result.output
        assert "segment_values" in {c["name"] for c in inspect(engine).get_columns("decisions")}
    finally:
        engine.dispose()
