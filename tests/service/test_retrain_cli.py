"""``banditgate retrain`` on a ledger of simulated traffic."""

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from banditgate.ledger import registry
from banditgate.ledger.artifacts import load_artifact
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.monitoring.gate import evaluate_gate
from banditgate.pipelines.training_set import load_training_set
from banditgate.policies.actions import Action
from banditgate.policies.exploration import make_rule
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
    importance = summary["ope_report"]["feature_importance"]
    assert importance["method"] == "lightgbm_gain" and "issuer_country" in importance["context"]
    table = runner.invoke(app, ["retrain", "--as-of", as_of], env=environment)
    assert table.exit_code == 0 and "candidate generation 2" in table.stdout and "banditgate promote" in table.stdout
    assert "feature importance (lightgbm_gain): " in table.stdout and "action id" in table.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--policy", "nope"], "unknown policy"),
        (["--reward-kind", "chargeback"], "matured decisions"),
        (["--every", "often"], "interval"),
        (["--as-of", "yesterday"], "ISO 8601"),
        (["--gamma-schedule", "cosine"], "gamma schedule"),
        (["--trust-region", "0"], "trust region must be a total-variation distance in (0, 1)"),
        (["--trust-region", "1.5"], "trust region must be a total-variation distance in (0, 1)"),
        (["--trust-region", "wide"], "Invalid value for '--trust-region'"),
    ],
)
def test_refusals_exit_non_zero_with_a_reason(environment: dict[str, str], arguments: list[str], message: str) -> None:
    as_of = ["--as-of", (WORLD.epoch + timedelta(days=3)).isoformat()] if "--as-of" not in arguments else []
    result = runner.invoke(app, ["retrain", *as_of, *arguments], env=environment)
    assert result.exit_code != 0
    assert message in result.output


@pytest.mark.parametrize("value", ["platt", "ISOTONIC", "sklearn.isotonic.IsotonicRegression"])
def test_an_unknown_calibration_is_a_usage_error(environment: dict[str, str], value: str) -> None:
    result = runner.invoke(app, ["retrain", "--calibration", value], env=environment)
    assert result.exit_code == 64, result.output
    assert "unknown calibration" in result.output and "none or isotonic" in result.output


def test_isotonic_calibration_is_recorded_and_reported(environment: dict[str, str]) -> None:
    arguments = ["retrain", "--as-of", (WORLD.epoch + timedelta(days=3)).isoformat(), "--calibration", "isotonic"]
    result = runner.invoke(app, [*arguments, "--json"], env=environment)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["row_counts"]["options"]["calibration"] == "isotonic"
    calibration = summary["ope_report"]["calibration"]
    assert calibration["method"] == "isotonic" and calibration["rows"] == summary["row_counts"]["held_out"]
    table = runner.invoke(app, arguments, env=environment)
    assert table.exit_code == 0, table.output
    assert "calibration isotonic: " in table.stdout and "held-out decisions" in table.stdout


def test_a_trust_region_caps_the_distance_to_the_deployed_generation(environment: dict[str, str]) -> None:
    as_of = WORLD.epoch + timedelta(days=3)
    arguments = ["retrain", "--as-of", as_of.isoformat(), "--trust-region", "0.04"]
    result = runner.invoke(app, [*arguments, "--json"], env=environment)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    trust = summary["row_counts"]["trust_region"]
    assert trust["met"] and trust["cap"] == 0.04 and trust["tv_before"] > 0.04 and trust["contexts"] == 1000
    assert summary["exploration_params"]["gamma"] == trust["gamma"] < trust["gamma_before"]
    # The floor retraining chose from the evidence is the generation's own (young window: above the policy's).
    floor = summary["exploration_params"]["floor"]
    assert floor == summary["ope_report"]["exploration"]["floor"] > registry.PolicySpec().floor

    # Measured independently: generation 0 is uniform, so TV = 1/2 sum_a |p(a) - 1/K|, p as generation 1 serves.
    engine = make_engine(environment["BANDITGATE_DATABASE_URL"])
    with make_sessionmaker(engine)() as session:
        generation = registry.get_generation(session, "default", summary["generation"])
        oracle = load_artifact(generation, Path(environment["BANDITGATE_ARTIFACT_DIR"]))
        recent = load_training_set(session, "default", as_of, timedelta(days=14), actions_for_last=1000)
    engine.dispose()
    rule = make_rule("squarecb", {"gamma": trust["gamma"], "floor": floor})
    distances = []
    for row, candidates in recent.actions.items():
        actions = [Action(a["id"], a.get("features") or {}) for a in candidates]
        p = rule.probabilities(oracle.predict_decision(recent.context(row), actions))
        distances.append(0.5 * np.abs(p - 1.0 / len(p)).sum())
    assert np.mean(distances) <= 0.04 + 1e-12
    assert np.mean(distances) == pytest.approx(trust["tv_after"], abs=1e-9)

    table = runner.invoke(app, arguments, env=environment)
    assert table.exit_code == 0, table.output
    assert "trust region 0.04: mean TV to generation 0 on 1,000 recent decisions" in " ".join(table.stdout.split())


def test_a_trust_region_is_refused_for_a_rule_without_gamma(environment: dict[str, str]) -> None:
    engine = make_engine(environment["BANDITGATE_DATABASE_URL"])
    spec = registry.PolicySpec(exploration="softmax", exploration_params={"temperature": 0.05})
    with make_sessionmaker(engine)() as session, session.begin():
        registry.put_policy(session, "boltzmann", spec, actor="test")
    engine.dispose()
    result = runner.invoke(app, ["retrain", "--policy", "boltzmann", "--trust-region", "0.1"], env=environment)
    assert result.exit_code == 1
    assert "not retrained: boltzmann: the trust region tunes SquareCB's gamma; this policy explores with softmax" in (
        " ".join(result.output.split())
    )


def test_retrain_prepares_the_gate_reference_so_the_first_evaluation_reads_it_from_the_cache(
    environment: dict[str, str],
) -> None:
    as_of = WORLD.epoch + timedelta(days=3)
    result = runner.invoke(app, ["retrain", "--as-of", as_of.isoformat(), "--json"], env=environment)
    assert result.exit_code == 0, result.output
    assert "gate reference prepared" in result.stderr
    cache = Path(environment["BANDITGATE_ARTIFACT_DIR"]) / "gate-cache"
    entries = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.pickle")}
    assert len(entries) == 2  # the reference sample, and the candidate's scores on it
    engine = make_engine(environment["BANDITGATE_DATABASE_URL"])
    try:
        with make_sessionmaker(engine)() as session, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            report = evaluate_gate(session, cache.parent, "default", 1, as_of=as_of).report
    finally:
        engine.dispose()
    assert report["windows"]["reference"]["sampled"] > 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.pickle")} == entries  # read, not recomputed
