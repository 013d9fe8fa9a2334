"""Generation health: per-generation realised reward, calibration, score shift, ESS, and the oscillation rule."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from banditgate.ledger import registry
from banditgate.pipelines.health import (
    calibration_metrics,
    ess_by_action,
    generation_health,
    mean_interval,
    oscillation,
    render_text,
)
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.service.commands.health import health_command
from banditgate.simulator import PaymentWorld
from tests.support.ledger_fill import fill

WORLD = PaymentWorld("none", seed=3)
START = WORLD.epoch


def _deploy_a_new_generation(sessions: sessionmaker[Session], artifact_dir: Path, day: int) -> int:
    trained = retrain(sessions, artifact_dir, "default", RetrainOptions(as_of=START + timedelta(days=day)))
    with sessions() as session, session.begin():
        registry.deploy_generation(session, "default", trained.generation.number, actor="test", reason="test")
    return trained.generation.number


def test_three_generations_are_reported(sessions: sessionmaker[Session], database_url: str, tmp_path: Path) -> None:
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", registry.PolicySpec(), actor="test")
    served = [fill(sessions, tmp_path, WORLD, start=START, days=3, per_day=600, seed=1, prefix="g0-")]
    assert _deploy_a_new_generation(sessions, tmp_path, 3) == 1
    served.append(
        fill(sessions, tmp_path, WORLD, start=START + timedelta(days=3), days=2, per_day=500, seed=2, prefix="g1-")
    )
    assert _deploy_a_new_generation(sessions, tmp_path, 5) == 2
    served.append(
        fill(sessions, tmp_path, WORLD, start=START + timedelta(days=5), days=1, per_day=500, seed=3, prefix="g2-")
    )

    report = generation_health(sessions, tmp_path, "default", as_of=START + timedelta(days=7))
    json.dumps(report)  # JSON-serialisable
    assert [entry["generation"] for entry in report["generations"]] == [0, 1, 2]
    for entry, logged in zip(report["generations"], served, strict=True):
        reward = entry["realised_reward"]
        assert entry["decisions"] == logged["decisions"]
        assert 0 < entry["matured"] <= entry["decisions"]
        assert 0.0 <= reward["mean"] <= 1.0
        assert reward["ci_low"] <= reward["mean"] <= reward["ci_high"]
        assert reward["method"] == "wilson"
        assert entry["ess_by_action"] and all(a["ess"] > 0 for a in entry["ess_by_action"].values())
        assert all(a["ess"] <= a["rows"] + 1e-9 for a in entry["ess_by_action"].values())
    gen0, gen1, gen2 = report["generations"]
    assert gen0["calibration"] is None and gen0["training_positive_rate"] is None and gen0["score_shift"] is None
    for entry in (gen1, gen2):
        assert 0.0 <= entry["calibration"]["brier"] <= 1.0 and 0.0 <= entry["calibration"]["ece"] <= 1.0
        assert entry["calibration"]["rows"] == entry["matured"]
        assert 0.5 < entry["training_positive_rate"] < 1.0
    assert gen1["score_shift"] is None  # generation 0 has no oracle to compare scores with
    shift = gen2["score_shift"]
    assert shift["previous_generation"] == 1 and shift["rows"] == gen2["matured"] and 0.0 <= shift["ks"] <= 1.0
    assert len(report["oscillation"]["changes"]) == 2
    assert "oscillation" in render_text(report)

    app = typer.Typer()
    app.command("health")(health_command)
    environment = {"BANDITGATE_DATABASE_URL": database_url, "BANDITGATE_ARTIFACT_DIR": str(tmp_path)}
    as_of = (START + timedelta(days=7)).isoformat()
    result = CliRunner().invoke(app, ["--policy", "default", "--as-of", as_of, "--json"], env=environment)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["generations"] == json.loads(json.dumps(report["generations"]))
    table = CliRunner().invoke(app, ["--as-of", as_of], env=environment)
    assert table.exit_code == 0 and "oscillation" in table.stdout, table.output
    unknown = CliRunner().invoke(app, ["--policy", "nope"], env=environment)
    assert unknown.exit_code == 1


def test_nothing_served_yet_gives_an_empty_report(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", registry.PolicySpec(), actor="test")
    report = generation_health(sessions, tmp_path, "default", as_of=START)
    assert report["generations"] == [] and report["oscillation"]["flagged"] is False


def test_unknown_policy_is_refused(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with pytest.raises(registry.UnknownPolicy):
        generation_health(sessions, tmp_path, "nope", as_of=START)


@pytest.mark.parametrize(
    ("means", "flagged", "run"),
    [
        ([0.80, 0.90, 0.80], True, 2),  # up then down, both significant
        ([0.90, 0.80, 0.90, 0.80], True, 3),
        ([0.80, 0.85, 0.90], False, 1),  # monotone
        ([0.80, 0.801, 0.80], False, 0),  # alternating but insignificant
        ([0.80, 0.90, 0.899, 0.80], False, 1),  # the alternation is broken by an insignificant change
        ([0.80, 0.90], False, 1),  # one change cannot alternate
        ([0.80], False, 0),
    ],
)
def test_oscillation_rule(means: list[float], flagged: bool, run: int) -> None:
    result = oscillation(list(range(len(means))), means, [0.005] * len(means))
    assert (result["flagged"], result["longest_run"]) == (flagged, run)
    assert len(result["changes"]) == len(means) - 1


def test_oscillation_skips_generations_without_matured_rewards() -> None:
    result = oscillation([0, 1, 2], [0.8, None, 0.9], [0.01, None, 0.01])
    assert result["flagged"] is False and all(c["change"] is None for c in result["changes"])


def test_mean_interval_and_calibration_and_ess() -> None:
    rewards = np.array([1.0] * 80 + [0.0] * 20)
    interval = mean_interval(rewards)
    assert interval["mean"] == 0.8 and interval["ci_low"] < 0.8 < interval["ci_high"] and interval["n"] == 100
    assert mean_interval(np.array([]))["mean"] is None
    assert mean_interval(np.array([0.2, 0.4, 0.6]))["method"] == "normal"
    perfect = calibration_metrics(np.full(100, 0.8), rewards)
    assert perfect["ece"] == pytest.approx(0.0) and perfect["brier"] == pytest.approx(0.16)
    off = calibration_metrics(np.full(100, 0.5), rewards)
    assert off["ece"] == pytest.approx(0.3)
    ess = ess_by_action(np.array(["a", "a", "b", "b"]), np.array([0.5, 0.5, 0.5, 0.05]))
    assert ess["a"] == {"rows": 2, "ess": pytest.approx(2.0)}
    assert 1.0 < ess["b"]["ess"] < 2.0
