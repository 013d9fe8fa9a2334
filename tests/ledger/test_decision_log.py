from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.decision_log import DatabaseDecisionLog, UnknownDecision
from banditgate.ledger.records import RewardStatus
from banditgate.ledger.writer import BatchingWriter
from tests.ledger.conftest import make_record

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop):
    return loop.run_until_complete


@pytest.fixture
def log(sessions: sessionmaker[Session], writer: BatchingWriter, run) -> DatabaseDecisionLog:
    log = DatabaseDecisionLog(sessions, writer)
    run(log.log_decision(make_record("tx")))
    return log


def test_get_decision(log: DatabaseDecisionLog) -> None:
    assert log.get_decision("tx") == make_record("tx")
    assert log.get_decision("nope") is None


def test_reward_for_unknown_decision_is_refused(log: DatabaseDecisionLog, run) -> None:
    with pytest.raises(UnknownDecision, match="nope"):
        run(log.log_reward("nope", "authorisation", 1.0, T0))
    assert log.get_rewards("nope") == []


def test_reward_duplicates_and_revisions(log: DatabaseDecisionLog, run) -> None:
    first = run(log.log_reward("tx", "authorisation", 1.0, T0))
    duplicate = run(log.log_reward("tx", "authorisation", 1.0, T0 + timedelta(seconds=5)))
    revised = run(log.log_reward("tx", "authorisation", 0.0, T0 + timedelta(days=1)))
    chargeback = run(log.log_reward("tx", "chargeback", 0.0, T0 + timedelta(days=60)))
    assert [first.status, duplicate.status, revised.status, chargeback.status] == [
        RewardStatus.RECORDED,
        RewardStatus.DUPLICATE,
        RewardStatus.REVISED,
        RewardStatus.RECORDED,
    ]
    assert duplicate.reward == first.reward
    rewards = log.get_rewards("tx")
    assert [(r.kind, r.revision, r.value) for r in rewards] == [
        ("authorisation", 1, 1.0),
        ("authorisation", 2, 0.0),
        ("chargeback", 1, 0.0),
    ]
    assert rewards[1].observed_at == T0 + timedelta(days=1)


def test_concurrent_conflicting_rewards_keep_every_revision(log: DatabaseDecisionLog, run) -> None:
    async def race() -> list:
        return await asyncio.gather(*(log.log_reward("tx", "authorisation", float(i % 2), T0) for i in range(20)))

    run(race())
    revisions = [r.revision for r in log.get_rewards("tx")]
    assert revisions == list(range(1, len(revisions) + 1))
    assert len(revisions) == 20  # the value alternates, so every post is a revision
