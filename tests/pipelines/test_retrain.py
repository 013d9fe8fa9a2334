"""Retraining on simulated payment traffic: matured rows only, revisions applied, a better generation."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.artifacts import generation_rule, load_artifact
from banditgate.ledger.decision_log import record_reward
from banditgate.ledger.models import Decision, Reward
from banditgate.ledger.reward_kinds import RewardKind
from banditgate.pipelines.retrain import NotEnoughData, RetrainOptions, retrain, trust_region_gamma
from banditgate.pipelines.training_set import load_training_set
from banditgate.policies.actions import Action
from banditgate.policies.oracles import load_oracle, sha256_hex
from banditgate.policies.oracles.calibration import IsotonicCalibration
from banditgate.service.decider import Decider
from banditgate.service.policy_cache import PolicyCache
from banditgate.simulator import PaymentWorld
from tests.support.ledger_fill import fill

WORLD = PaymentWorld("none", seed=3)
START = WORLD.epoch
DAYS = 6


@pytest.fixture
def logged(sessions: sessionmaker[Session], tmp_path: Path) -> Path:
    """Six simulated days of uniform-random decisions (generation 0) with their rewards."""
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", registry.PolicySpec(), actor="test")
    fill(sessions, tmp_path, WORLD, start=START, days=DAYS, per_day=1500, seed=1, prefix="g0-")
    return tmp_path


def test_retrain_registers_a_candidate_with_its_ope_report(sessions: sessionmaker[Session], logged: Path) -> None:
    result = retrain(sessions, logged, "default", RetrainOptions(as_of=START + timedelta(days=DAYS)))
    generation = result.generation
    assert (generation.number, generation.parent, generation.status) == (1, 0, "candidate")
    assert generation.oracle == "lightgbm" and generation.exploration == "squarecb"
    artifact = (logged / generation.artifact_path).read_bytes()
    assert sha256_hex(artifact) == generation.artifact_sha256
    load_oracle(artifact)
    counts = generation.row_counts
    assert counts["matured"] == counts["training"] + counts["held_out"] == result.training_rows + result.held_out_rows
    assert 0.5 < counts["training_positive_rate"] < 1.0
    report = generation.ope_report
    assert set(report["policies"]) == {"candidate", "candidate_greedy", "deployed", "uniform"}
    estimates = report["policies"]["uniform"]["estimates"]
    assert set(estimates) == {"ips", "clipped_ips", "snips", "dm", "dr", "sndr", "switch_dr"}
    # The logging policy is uniform: IPS of uniform is the logged mean reward.
    assert estimates["ips"]["value"] == pytest.approx(report["logged_reward"], abs=1e-9)
    with sessions() as session:
        assert registry.get_policy(session, "default").deployed_generation == 0  # retraining never deploys


def test_the_policy_declaration_reaches_the_oracle_and_the_report_says_which_keys_mattered(
    sessions: sessionmaker[Session], logged: Path
) -> None:
    declared = {"merchant_id": "excluded", "bin": {"treatment": "hashed", "buckets": 16}}
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", registry.PolicySpec(features=declared), actor="test")
    result = retrain(sessions, logged, "default", RetrainOptions(as_of=START + timedelta(days=DAYS)))
    generation = result.generation
    assert generation.oracle_params["features"] == {
        "bin": {"treatment": "hashed", "buckets": 16},
        "merchant_id": "excluded",
    }
    oracle = load_oracle((logged / generation.artifact_path).read_bytes())
    assert oracle.space_.hashed == {"c:bin": 16} and "c:merchant_id" not in oracle.space_.columns
    importance = generation.ope_report["feature_importance"]
    assert importance["method"] == "lightgbm_gain" and "merchant_id" not in importance["context"]
    assert {"bin", "issuer_country", "amount_eur"} <= set(importance["context"])
    total = sum(importance["context"].values()) + importance["action_id"] + sum(importance["action_features"].values())
    assert total == pytest.approx(1.0)


def test_only_matured_rewards_enter_and_the_latest_revision_wins(sessions: sessionmaker[Session], logged: Path) -> None:
    with sessions() as session:
        last = session.scalar(
            select(func.max(Decision.decided_at)).where(Decision.decided_at < START + timedelta(days=3))
        )
        as_of = last + timedelta(milliseconds=100)  # its authorisation arrives 0.2 to 5 s after the decision
        before = load_training_set(session, "default", as_of, timedelta(days=30))
    assert all(t < as_of for t in before.decided_at)
    assert before.decisions_in_window == len(before) + 1 and last not in set(before.decided_at)
    with sessions() as session:
        chargebacks = load_training_set(session, "default", as_of, timedelta(days=30), reward_kind="chargeback")
    assert len(chargebacks) == 0  # chargeback labels take 45 days or more

    target = before.decision_ids[10]
    old_value = before.rewards[10]
    with sessions() as session, session.begin():
        record_reward(session, target, "authorisation", 1.0 - old_value, START, received_at=START + timedelta(days=1))
        record_reward(session, target, "authorisation", old_value, START, received_at=as_of + timedelta(hours=1))
    with sessions() as session:
        after = load_training_set(session, "default", as_of, timedelta(days=30))
    assert after.rewards[after.decision_ids.index(target)] == 1.0 - old_value  # revision 2; revision 3 not yet


def test_stored_rewards_outside_their_kind_are_skipped_and_counted(
    sessions: sessionmaker[Session], logged: Path
) -> None:
    """Values an older version accepted are not learnt from: the latest valid revision wins, a decision with none
    is not matured, and the retrained generation's row counts say how many were skipped."""
    as_of = START + timedelta(days=DAYS)
    with sessions() as session:
        clean = load_training_set(session, "default", as_of, timedelta(days=30))
    revised, poisoned = clean.decision_ids[10], clean.decision_ids[20]
    with sessions() as session, session.begin():
        session.execute(
            insert(Reward).values(
                decision_id=revised, kind="authorisation", value=0.5, revision=2, observed_at=START, received_at=START
            )
        )
        session.execute(
            update(Reward).where(Reward.decision_id == poisoned, Reward.kind == "authorisation").values(value=7.0)
        )
    with sessions() as session:
        after = load_training_set(session, "default", as_of, timedelta(days=30))
        ranged = RewardKind("authorisation", binary=False)  # had it been declared [0, 1], 0.5 would count
        as_range = load_training_set(session, "default", as_of, timedelta(days=30), reward_rule=ranged)
    assert after.invalid_rewards_skipped == 2 and len(after) == len(clean) - 1 and poisoned not in after.decision_ids
    assert after.rewards[after.decision_ids.index(revised)] == clean.rewards[10]
    assert as_range.invalid_rewards_skipped == 1 and as_range.rewards[as_range.decision_ids.index(revised)] == 0.5
    result = retrain(sessions, logged, "default", RetrainOptions(as_of=as_of))
    assert result.generation.row_counts["invalid_rewards_skipped"] == 2
    assert np.isin(after.rewards, (0.0, 1.0)).all()


def test_too_few_matured_rows_is_refused(sessions: sessionmaker[Session], logged: Path) -> None:
    with pytest.raises(NotEnoughData, match="matured decisions"):
        retrain(
            sessions, logged, "default", RetrainOptions(as_of=START + timedelta(days=DAYS), reward_kind="chargeback")
        )


@pytest.mark.parametrize("schedule", ["sqrt", "budget"])
def test_gamma_schedules(sessions: sessionmaker[Session], logged: Path, schedule: str) -> None:
    options = RetrainOptions(as_of=START + timedelta(days=DAYS), gamma_schedule=schedule, gamma0=2.0)
    result = retrain(sessions, logged, "default", options)
    gamma = result.generation.exploration_params["gamma"]
    if schedule == "sqrt":
        assert gamma == pytest.approx(2.0 * np.sqrt(result.training_rows))
    else:
        assert 1e-3 < gamma < 1e7


def test_a_retrained_generation_earns_more_than_uniform_on_fresh_traffic(
    sessions: sessionmaker[Session], logged: Path
) -> None:
    options = RetrainOptions(as_of=START + timedelta(days=DAYS), gamma_schedule="budget", exploration_budget=0.1)
    generation = retrain(sessions, logged, "default", options).generation
    with sessions() as session, session.begin():
        registry.put_policy(session, "baseline", registry.PolicySpec(), actor="test")
        registry.deploy_generation(session, "default", generation.number, actor="test", reason="test")
    fresh = START + timedelta(days=DAYS + 1)
    learned = fill(sessions, logged, WORLD, start=fresh, days=1, per_day=3000, seed=99, prefix="g1-")
    uniform = fill(sessions, logged, WORLD, start=fresh, days=1, per_day=3000, seed=99, prefix="u-", policy="baseline")
    print(
        f"expected authorisation rate: generation 1 {learned['expected_reward']:.4f}, "
        f"uniform {uniform['expected_reward']:.4f}"
    )
    assert learned["expected_reward"] > uniform["expected_reward"] + 0.003


def mean_tv(
    sessions: sessionmaker[Session], artifact_dir: Path, new: int, old: int, as_of: datetime, window: timedelta
) -> float:
    """Mean total-variation distance between two generations as they serve, on the last 1,000 matured decisions."""
    with sessions() as session:
        policy = registry.get_policy(session, "default")
        served = []
        for number in (new, old):
            generation = registry.get_generation(session, "default", number)
            oracle = load_artifact(generation, artifact_dir) if generation.oracle is not None else None
            served.append((oracle, generation_rule(policy, generation)))
        recent = load_training_set(session, "default", as_of, window, actions_for_last=1000)
    assert len(recent.actions) == 1000
    distances = []
    for row, candidates in recent.actions.items():
        context = recent.context(row)
        actions = [Action(a["id"], a.get("features") or {}) for a in candidates]
        p, q = (
            rule.probabilities(
                oracle.predict_decision(context, actions) if oracle is not None else np.zeros(len(actions))
            )
            for oracle, rule in served
        )
        distances.append(0.5 * np.abs(p - q).sum())
    return float(np.mean(distances))


def test_a_trust_region_caps_the_distance_to_a_uniform_deployed_generation(
    sessions: sessionmaker[Session], logged: Path
) -> None:
    as_of, window = START + timedelta(days=DAYS), timedelta(days=14)
    fixed = {"gamma_schedule": "fixed", "floor_schedule": "policy"}  # the policy's gamma 100 and floor
    free = retrain(sessions, logged, "default", RetrainOptions(as_of=as_of, **fixed)).generation
    capped = retrain(sessions, logged, "default", RetrainOptions(as_of=as_of, trust_region=0.05, **fixed)).generation
    free_tv = mean_tv(sessions, logged, free.number, 0, as_of, window)
    capped_tv = mean_tv(sessions, logged, capped.number, 0, as_of, window)
    print(f"mean TV to uniform: gamma 100 {free_tv:.4f}, capped {capped_tv:.4f}")
    assert free_tv > 0.1  # gamma 100 moves well away from uniform
    assert capped_tv <= 0.05 + 1e-12
    trust = capped.row_counts["trust_region"]
    assert trust["met"] and trust["cap"] == 0.05 and trust["contexts"] == 1000
    assert trust["tv_after"] == pytest.approx(capped_tv, abs=1e-9)
    assert trust["tv_before"] > 0.05 and trust["gamma_before"] == 100.0
    # The cap binds: gamma is the boundary, lowered from the policy's 100 (the distance rises with gamma).
    assert trust["tv_after"] > 0.05 - 1e-4 and 0.0 < trust["gamma"] < 100.0
    assert capped.exploration_params["gamma"] == trust["gamma"]
    assert capped.row_counts["options"]["trust_region"] == 0.05
    assert "trust_region" not in free.row_counts


def test_a_trust_region_that_no_gamma_meets_keeps_the_smallest_distance(
    sessions: sessionmaker[Session], logged: Path
) -> None:
    fixed = {"gamma_schedule": "fixed", "floor_schedule": "policy"}  # the policy's gamma 100 and floor
    first = retrain(sessions, logged, "default", RetrainOptions(as_of=START + timedelta(days=DAYS), **fixed)).generation
    with sessions() as session, session.begin():
        registry.deploy_generation(session, "default", first.number, actor="test", reason="test")
    fill(sessions, logged, WORLD, start=START + timedelta(days=DAYS), days=2, per_day=1500, seed=2, prefix="g1-")
    as_of = START + timedelta(days=DAYS + 2)
    # Generation 1 is sharp (gamma 100) and the next oracle disagrees with it on some best actions.
    second = retrain(sessions, logged, "default", RetrainOptions(as_of=as_of, trust_region=0.01, **fixed)).generation
    trust = second.row_counts["trust_region"]
    measured = mean_tv(sessions, logged, second.number, first.number, as_of, timedelta(days=14))
    print(f"mean TV to generation 1: {trust['tv_before']:.4f} at gamma 100, {measured:.4f} at {trust['gamma']:.3g}")
    assert not trust["met"]
    assert trust["tv_after"] == pytest.approx(measured, abs=1e-9)
    assert 0.01 < trust["tv_after"] <= trust["tv_before"]
    assert second.exploration_params["gamma"] == trust["gamma"] <= 100.0


def test_the_trust_region_search_finds_the_largest_gamma_within_the_cap() -> None:
    # Not monotone, as against a sharp deployed generation: 0.3 at gamma = 0, lowest (0.05) at gamma = 10.
    def distance(gamma: float) -> float:
        return 0.3 if gamma == 0.0 else 0.3 - 0.25 * math.exp(-((math.log10(gamma) - 1.0) ** 2))

    within = trust_region_gamma(0.1, 1000.0, distance)
    # 0.3 - 0.25 exp(-(x - 1)^2) <= 0.1 for |x - 1| <= sqrt(ln 1.25): the largest gamma is 10^(1 + 0.4724).
    assert within["met"] and within["gamma"] == pytest.approx(10.0 ** (1.0 + math.sqrt(math.log(1.25))), rel=1e-5)
    assert within["tv_before"] == pytest.approx(distance(1000.0)) and within["tv_after"] <= 0.1
    beyond = trust_region_gamma(0.01, 1000.0, distance)
    assert not beyond["met"] and beyond["gamma"] == pytest.approx(10.0) and beyond["tv_after"] == pytest.approx(0.05)
    unchanged = trust_region_gamma(0.5, 1000.0, distance)
    assert unchanged["met"] and unchanged["gamma"] == 1000.0 and unchanged["tv_after"] == unchanged["tv_before"]


@pytest.mark.parametrize("cap", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_invalid_trust_regions_are_refused(cap: float) -> None:
    with pytest.raises(ValueError, match=r"trust region must be a total-variation distance in \(0, 1\)"):
        RetrainOptions(trust_region=cap)


def test_a_trust_region_needs_squarecb(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    spec = registry.PolicySpec(exploration="epsilon_greedy", exploration_params={"epsilon": 0.1})
    with sessions() as session, session.begin():
        registry.put_policy(session, "exploring", spec, actor="test")
    with pytest.raises(ValueError, match="the trust region tunes SquareCB's gamma; this policy explores with epsilon"):
        retrain(sessions, tmp_path, "exploring", RetrainOptions(trust_region=0.1))


def test_isotonic_calibration_is_fitted_on_the_held_out_rows_stored_and_served(
    sessions: sessionmaker[Session], logged: Path
) -> None:
    as_of = START + timedelta(days=DAYS)
    generation = retrain(sessions, logged, "default", RetrainOptions(as_of=as_of, calibration="isotonic")).generation
    assert generation.row_counts["options"]["calibration"] == "isotonic"
    report = generation.ope_report["calibration"]
    assert report["method"] == "isotonic" and report["rows"] == generation.row_counts["held_out"]
    with sessions() as session:
        oracle = load_artifact(registry.get_generation(session, "default", generation.number), logged)
        training = load_training_set(session, "default", as_of, timedelta(days=14), actions_for_last=50)
    assert len(training.actions) == 50
    assert report["thresholds"] == len(oracle.calibration_.thresholds) > 1

    # The map is the isotonic fit of the raw model's held-out scores, not of its training rows'.
    raw = load_oracle((logged / generation.artifact_path).read_bytes())
    raw.calibration_ = None
    _, held_out = training.split(0.2)
    refit = IsotonicCalibration.fit(
        raw.predict_frame(training.frame.iloc[held_out].reset_index(drop=True)), training.rewards[held_out]
    )
    np.testing.assert_array_equal(refit.thresholds, oracle.calibration_.thresholds)
    np.testing.assert_array_equal(refit.values, oracle.calibration_.values)

    # Served through the real decision path: the logged probabilities are the rule's on the calibrated scores,
    # to the bit, so a replay from the artifact reproduces them.
    with sessions() as session, session.begin():
        registry.deploy_generation(session, "default", generation.number, actor="test", reason="test")
    cache = PolicyCache(sessions, logged)
    cache.refresh()
    decider = Decider(cache, "default")
    with sessions() as session:
        rule = generation_rule(registry.get_policy(session, "default"), generation)
    moved = 0
    for row in sorted(training.actions):
        context = {k: v.item() if isinstance(v, np.generic) else v for k, v in training.context(row).items()}
        candidates = training.actions[row]
        record, _ = decider.decide(context, candidates, decision_id=f"calibrated-{row}")
        actions = [Action(a["id"], a.get("features") or {}) for a in candidates]
        assert record.probabilities == rule.probability_list(oracle.predict_decision(context, actions).tolist())
        moved += record.probabilities != rule.probability_list(raw.predict_decision(context, actions).tolist())
    assert moved > 0


def test_the_default_is_uncalibrated_and_calibration_needs_an_oracle_that_has_it(
    sessions: sessionmaker[Session], logged: Path
) -> None:
    generation = retrain(sessions, logged, "default", RetrainOptions(as_of=START + timedelta(days=DAYS))).generation
    assert generation.row_counts["options"]["calibration"] == "none"
    assert generation.ope_report["calibration"] == {"method": "none"}
    assert b'"calibration"' not in (logged / generation.artifact_path).read_bytes()
    spec = registry.PolicySpec(oracle="sklearn", oracle_params={"estimator": "ridge"})
    with sessions() as session, session.begin():
        registry.put_policy(session, "linear", spec, actor="test")
    options = RetrainOptions(as_of=START + timedelta(days=DAYS), calibration="isotonic")
    with pytest.raises(ValueError, match="isotonic calibration is not available for the sklearn oracle"):
        retrain(sessions, logged, "linear", options)


@pytest.mark.parametrize("name", ["platt", "Isotonic", "none; drop table"])
def test_unknown_calibrations_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown calibration"):
        RetrainOptions(calibration=name)  # type: ignore[arg-type]
