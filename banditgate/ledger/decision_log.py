"""The decision log: where decisions and rewards go.

Routes depend on the :class:`DecisionLog` interface only. The embedded implementation,
:class:`DatabaseDecisionLog`, is the ledger database itself; a streaming implementation (Kafka with a
durable local outbox) plugs in behind the same interface.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.models import Decision, Reward
from banditgate.ledger.records import DecisionRecord, RewardRecord, RewardResult, RewardStatus
from banditgate.ledger.types import utcnow
from banditgate.ledger.writer import BatchingWriter

log = logging.getLogger(__name__)


class UnknownDecision(LookupError):
    """A reward names a decision the log has never seen."""

    def __init__(self, decision_id: str) -> None:
        super().__init__(f"unknown decision_id {decision_id!r}")
        self.decision_id = decision_id


class DecisionLog(ABC):
    """Durable log of decisions and rewards; every method returns only once the write is durable."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections and background workers."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Flush what is pending and release resources."""

    @abstractmethod
    async def log_decision(self, record: DecisionRecord) -> DecisionRecord:
        """Log a decision. If its ``decision_id`` is already logged, write nothing and return the stored one."""

    @abstractmethod
    async def log_reward(
        self, decision_id: str, kind: str, value: float, observed_at: datetime, received_at: datetime | None = None
    ) -> RewardResult:
        """Record a reward; a duplicate value is a no-op, a different value becomes a new revision.

        Raises :class:`UnknownDecision` when the decision is not in the log.
        """

    @abstractmethod
    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        """The logged decision, or ``None``."""

    @abstractmethod
    def get_rewards(self, decision_id: str) -> list[RewardRecord]:
        """Every revision of every reward kind of a decision, oldest first."""


class DatabaseDecisionLog(DecisionLog):
    """The embedded decision log: rows in the ledger database, written by one batching writer."""

    def __init__(self, sessions: sessionmaker[Session], writer: BatchingWriter) -> None:
        self._sessions = sessions
        self._writer = writer

    async def log_decision(self, record: DecisionRecord) -> DecisionRecord:
        return await self._writer.write_decision(record)

    async def log_reward(
        self, decision_id: str, kind: str, value: float, observed_at: datetime, received_at: datetime | None = None
    ) -> RewardResult:
        for attempt in range(3):
            try:
                return await self._writer.call(
                    lambda s: record_reward(s, decision_id, kind, value, observed_at, received_at)
                )
            except IntegrityError:
                # Another process wrote the same revision number first; recount and try again.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        with self._sessions() as session:
            row = session.get(Decision, decision_id)
            return DecisionRecord.from_row(row) if row is not None else None

    def get_rewards(self, decision_id: str) -> list[RewardRecord]:
        with self._sessions() as session:
            rows = session.scalars(
                select(Reward).where(Reward.decision_id == decision_id).order_by(Reward.kind, Reward.revision)
            ).all()
            return [RewardRecord.from_row(row) for row in rows]


def record_reward(
    session: Session,
    decision_id: str,
    kind: str,
    value: float,
    observed_at: datetime,
    received_at: datetime | None = None,
) -> RewardResult:
    """Apply the reward rules inside the caller's transaction (see :meth:`DecisionLog.log_reward`)."""
    if session.scalar(select(func.count()).where(Decision.decision_id == decision_id)) == 0:
        raise UnknownDecision(decision_id)
    latest = session.scalars(
        select(Reward)
        .where(Reward.decision_id == decision_id, Reward.kind == kind)
        .order_by(Reward.revision.desc())
        .limit(1)
    ).first()
    if latest is not None and latest.value == value:
        return RewardResult(RewardStatus.DUPLICATE, RewardRecord.from_row(latest))
    row = Reward(
        decision_id=decision_id,
        kind=kind,
        value=value,
        revision=1 if latest is None else latest.revision + 1,
        observed_at=observed_at.astimezone(UTC),
        received_at=received_at or utcnow(),
    )
    session.add(row)
    session.flush()
    status = RewardStatus.RECORDED if latest is None else RewardStatus.REVISED
    if status is RewardStatus.REVISED:
        log.info("reward revised: decision=%s kind=%s %s -> %s", decision_id, kind, latest.value, value)
    return RewardResult(status, RewardRecord.from_row(row))
