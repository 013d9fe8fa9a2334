"""Retraining on simulated payment traffic: matured rows only, revisions applied, a better generation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.decision_log import record_reward
from banditgate.ledger.models import Decision
from banditgate.pipelines.retrain import NotEnoughData, RetrainOptions, retrain
from banditgate.pipelines.training_set import load_training_set
from banditgate.policies.oracles import load_oracle, sha256_hex
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
