"""Generation health: per-generation realised reward, calibration, score shift, ESS, lift, and the oscillation rule."""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import pairwise
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
    holm,
    mean_interval,
    oscillation,
    render_text,
)
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.service.commands.health import health_command
from banditgate.simulator import PaymentWorld
from tests.support.ledger_fill import fill, fill_two_segments

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
    assert report["lift_model"]["rows"] == sum(e["matured"] for e in report["generations"])
    assert gen0["lift"]["rows"] == gen0["matured"]
    assert all(entry["lift"]["standard_error"] > 0 for entry in report["generations"])
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
    assert report["lift_model"] is None


def test_unknown_policy_is_refused(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with pytest.raises(registry.UnknownPolicy):
        generation_health(sessions, tmp_path, "nope", as_of=START)


@pytest.mark.parametrize(
    ("lifts", "alternating", "run"),
    [
        ([0.00, 0.10, 0.00], True, 2),  # up then down, both significant after Holm
        ([0.10, 0.00, 0.10, 0.00], True, 3),
        ([0.00, 0.05, 0.10], False, 1),  # monotone
        ([0.00, 0.001, 0.00], False, 0),  # alternating but insignificant
        ([0.00, 0.10, 0.099, 0.00], False, 1),  # the alternation is broken by an insignificant change
        ([0.00, 0.10], False, 1),  # one change cannot alternate
        ([0.00], False, 0),
    ],
)
def test_oscillation_alternation_rule(lifts: list[float], alternating: bool, run: int) -> None:
    result = oscillation(list(range(len(lifts))), lifts, [0.005] * len(lifts))
    assert (result.alternating, result.longest_run) == (alternating, run)
    assert len(result.changes) == len(lifts) - 1
    assert result.flagged == (result.alternating or result.declining)


def test_holm_correction_keeps_changes_that_one_test_alone_would_call_significant() -> None:
    # Two standard errors apart (p = 0.046 each, two-sided): significant alone, not among 3 changes at 0.025.
    se = 0.01 / (2.0 * 2**0.5)
    result = oscillation([0, 1, 2, 3], [0.0, 0.01, 0.0, 0.01], [se] * 4)
    assert all(0.04 < c.p_value < 0.05 for c in result.changes)
    assert not any(c.significant for c in result.changes) and not result.flagged
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert holm([], 0.05) == []


def test_decline_of_lift_across_learned_generations_is_flagged() -> None:
    # Generation 0 is uniform (lift 0, not learned); the learned ones decline by 0.004 a generation, each
    # change far inside its noise (no single change is significant).
    lifts = [0.0, 0.030, 0.027, 0.021, 0.019, 0.013, 0.011]
    result = oscillation(list(range(7)), lifts, [0.004] * 7, learned=[False] + [True] * 6)
    assert result.changes[0].significant  # learning from uniform's logs
    assert not any(c.significant for c in result.changes[1:]) and not result.alternating
    assert result.trend is not None and result.trend.generations == 6
    assert result.trend.slope == pytest.approx(-0.0039, abs=2e-4) and result.declining and result.flagged
    # Learning from uniform (0 -> 0.03) is a rise, and is not counted in the trend.
    rising = oscillation(list(range(4)), [0.0, 0.03, 0.031, 0.03], [0.004] * 4, learned=[False, True, True, True])
    assert rising.trend is None and not rising.flagged


def test_stationary_noisy_lifts_raise_few_false_alarms() -> None:
    # Equally good generations (lift 0.01, sampling noise 0.004, as for a day of 1,500 decisions), 30 of them:
    # the flag's family-wise level is 0.05.
    rng = np.random.default_rng(5)
    fired = 0
    for _ in range(400):
        lifts = list(0.01 + rng.normal(0.0, 0.004, 30))
        fired += oscillation(list(range(30)), lifts, [0.004] * 30).flagged
    assert fired / 400 < 0.08


def test_oscillation_skips_generations_without_a_lift() -> None:
    result = oscillation([0, 1, 2], [0.8, None, 0.9], [0.01, None, 0.01])
    assert result.flagged is False and all(c.change is None for c in result.changes) and result.trend is None
    with pytest.raises(ValueError, match="alpha"):
        oscillation([0], [0.0], [0.0], alpha=1.0)


def _two_segment_generations(
    sessions: sessionmaker[Session], artifact_dir: Path, low_shares: list[float], advantages: list[float]
) -> list[float]:
    """Generation g serves day g with the given share of low-rate traffic; a new generation each day."""
    spec = registry.PolicySpec(exploration_params={"gamma": 50.0}, floor=0.05, oracle_params={"num_threads": 1})
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", spec, actor="test")
    realised = []
    for day, (share, advantage) in enumerate(zip(low_shares, advantages, strict=True)):
        start = START + timedelta(days=day)
        served = fill_two_segments(
            sessions,
            artifact_dir,
            start=start,
            decisions=800,
            low_share=share,
            advantage=advantage,
            seed=day,
            prefix=f"g{day}-",
        )
        realised.append(served["realised_reward"])
        if day + 1 < len(low_shares):
            assert _deploy_a_new_generation(sessions, artifact_dir, day + 1) == day + 1
    return realised


def test_a_traffic_mix_that_alternates_does_not_flag_equally_good_generations(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Weekday, weekend, weekday, ...: the realised reward alternates by about 0.2 (significant, 800 decisions
    # a day), which the former rule on realised rewards flagged as an oscillation. Every learned generation is
    # as good as the next (action a is better by 0.05 everywhere), and their lifts say so.
    shares = [0.1, 0.8, 0.1, 0.8, 0.1, 0.8]
    realised = _two_segment_generations(sessions, tmp_path, shares, [0.05] * 6)
    changes = np.diff(realised)
    assert all(abs(c) > 0.12 for c in changes) and all(a * b < 0 for a, b in pairwise(changes))

    report = generation_health(sessions, tmp_path, "default", as_of=START + timedelta(days=7))
    assert report["lift_model"]["folds"] == 2
    lifts = [entry["lift"]["mean"] for entry in report["generations"]]
    assert all(abs(lift - 0.05 * 0.95) < 0.06 for lift in lifts[1:])  # mostly a, the floor aside
    flag = report["oscillation"]
    assert flag["flagged"] is False, flag
    assert flag["trend"]["generations"] == 5


def test_a_decline_of_the_learned_generations_is_flagged(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    # Action a's edge shrinks and turns into a loss after generation 1 learned it: later generations, still
    # choosing a from what earlier logs taught, do worse and worse against the same baseline, with the mix fixed.
    advantages = [0.15, 0.15, 0.05, -0.05, -0.15, -0.25]
    _two_segment_generations(sessions, tmp_path, [0.3] * 6, advantages)
    report = generation_health(sessions, tmp_path, "default", as_of=START + timedelta(days=7))
    flag = report["oscillation"]
    assert flag["declining"] is True and flag["flagged"] is True, flag
    assert flag["trend"]["slope"] < 0 and flag["trend"]["p_value"] < flag["alpha"] / 2


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
