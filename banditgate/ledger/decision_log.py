"""The decision log: where decisions and rewards go.

Routes depend on the :class:`DecisionLog` interface only. The embedded implementation,
:class:`DatabaseDecisionLog`, is the ledger database itself; a streaming implementation (Kafka with a
durable local outbox) plugs in behind the same interface.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.models import Decision, Reward
from banditgate.ledger.records import DecisionRecord, RewardRecord, RewardResult, RewardStatus
from banditgate.ledger.reward_kinds import DEFAULT_REWARD_KINDS, RewardKind
from banditgate.ledger.types import utcnow
from banditgate.ledger.writer import BatchingWriter

log = logging.getLogger(__name__)

#: Revisions kept per decision and reward kind unless configured otherwise (``max_reward_revisions``).
DEFAULT_MAX_REVISIONS = 20
#: Attempts at a reward revision that other writers keep beating to the same revision number.
_REVISION_ATTEMPTS = 5


class UnknownDecision(LookupError):
    """A reward names a decision the log has never seen."""

    def __init__(self, decision_id: str) -> None:
        super().__init__(f"unknown decision_id {decision_id!r}")
        self.decision_id = decision_id


class RewardRefused(Exception):
    """A reward the log will not record; ``status`` is the HTTP status to answer with, ``retry_after`` the
    seconds after which the same request may succeed (``None``: it will not, as it stands)."""

    status = 409
    retry_after: int | None = None


class InvalidReward(RewardRefused, ValueError):
    """An unknown reward kind, or a value outside its kind's rule; the message starts with the field's name."""

    status = 422


class TooManyRevisions(RewardRefused):
    """The decision already has the most revisions of this reward kind that are kept."""


class ConcurrentRevisions(RewardRefused):
    """Other writers kept revising the same reward at the same time; sending it again is safe."""

    retry_after = 1


#: Every refusal by name, so that one raised in the decision process is raised again in the serving process.
REFUSALS: dict[str, type[RewardRefused]] = {
    cls.__name__: cls for cls in (RewardRefused, InvalidReward, TooManyRevisions, ConcurrentRevisions)
}


def check_reward(kinds: Mapping[str, RewardKind], kind: str, value: float) -> None:
    """Raise :class:`InvalidReward` unless ``kind`` is declared in ``kinds`` and ``value`` obeys its rule.

    >>> try:
    ...     check_reward(DEFAULT_REWARD_KINDS, "authorisation", 0.5)
    ... except InvalidReward as exc:
    ...     print(exc)
    reward: 0.5 is not a valid authorisation reward: authorisation rewards are 0 or 1
    """
    declared = kinds.get(kind)
    if declared is None:
        raise InvalidReward(
            f"kind: unknown reward kind {kind!r}; known kinds: {', '.join(sorted(kinds))} "
            "(declare others in the reward_kinds setting)"
        )
    if not declared.accepts(value):
        raise InvalidReward(f"reward: {value!r} is not a valid {kind} reward: {declared.rule}")


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

        Raises :class:`UnknownDecision` when the decision is not in the log, and a :class:`RewardRefused`
        (:class:`InvalidReward`, :class:`TooManyRevisions`, :class:`ConcurrentRevisions`) when it refuses it.
        """

    @abstractmethod
    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        """The logged decision, or ``None``."""

    @abstractmethod
    def get_rewards(self, decision_id: str) -> list[RewardRecord]:
        """Every revision of every reward kind of a decision, oldest first."""


class DatabaseDecisionLog(DecisionLog):
    """The embedded decision log: rows in the ledger database, written by one batching writer.

    Parameters
    ----------
    reward_kinds
        The reward kinds accepted, by name, with the values each takes.
    max_revisions
        Most revisions kept per decision and reward kind; a further different value is refused.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        writer: BatchingWriter,
        reward_kinds: Mapping[str, RewardKind] = DEFAULT_REWARD_KINDS,
        max_revisions: int = DEFAULT_MAX_REVISIONS,
    ) -> None:
        self._sessions = sessions
        self._writer = writer
        self.reward_kinds = reward_kinds
        self.max_revisions = max_revisions

    async def log_decision(self, record: DecisionRecord) -> DecisionRecord:
        return await self._writer.write_decision(record)

    async def log_reward(
        self, decision_id: str, kind: str, value: float, observed_at: datetime, received_at: datetime | None = None
    ) -> RewardResult:
        check_reward(self.reward_kinds, kind, value)  # before it takes a turn of the writer
        for _ in range(_REVISION_ATTEMPTS):
            try:
                return await self._writer.call(
                    lambda s: record_reward(
                        s, decision_id, kind, value, observed_at, received_at, self.reward_kinds, self.max_revisions
                    )
                )
            except IntegrityError as exc:
                # Another process wrote the same revision number first; recount and try again.
                log.info("reward revision of %s (%s) lost a race (%s); retrying", decision_id, kind, exc.orig)
        raise ConcurrentRevisions(
            f"conflicting concurrent revisions of the {kind} reward of decision {decision_id!r}: other writers "
            f"revised it at the same time {_REVISION_ATTEMPTS} times in a row; nothing was recorded, retry"
        )

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


def reward_revision(
    decision_id: str, kind: str, value: float, latest: RewardRecord | None, max_revisions: int = DEFAULT_MAX_REVISIONS
) -> tuple[RewardStatus, int]:
    """The reward rule: what a new ``value`` of a decision's ``kind`` reward does, given its ``latest`` revision.

    The same value as the latest is a duplicate (nothing is written); a first value is revision 1; a different
    value is the next revision, and wins. Raises :class:`TooManyRevisions` past ``max_revisions``.

    >>> reward_revision("tx-1", "authorisation", 1.0, None)
    (<RewardStatus.RECORDED: 'recorded'>, 1)
    """
    if latest is None:
        return RewardStatus.RECORDED, 1
    if latest.value == value:
        return RewardStatus.DUPLICATE, latest.revision
    if latest.revision >= max_revisions:
        raise TooManyRevisions(
            f"reward: decision {decision_id!r} already has {latest.revision} revisions of its {kind} reward, the "
            f"most kept (max_reward_revisions = {max_revisions}); its latest value, {latest.value!r}, stands"
        )
    return RewardStatus.REVISED, latest.revision + 1


def record_reward(
    session: Session,
    decision_id: str,
    kind: str,
    value: float,
    observed_at: datetime,
    received_at: datetime | None = None,
    reward_kinds: Mapping[str, RewardKind] = DEFAULT_REWARD_KINDS,
    max_revisions: int = DEFAULT_MAX_REVISIONS,
) -> RewardResult:
    """Apply the reward rules inside the caller's transaction (see :meth:`DecisionLog.log_reward`)."""
    check_reward(reward_kinds, kind, value)
    if session.scalar(select(func.count()).where(Decision.decision_id == decision_id)) == 0:
        raise UnknownDecision(decision_id)
    latest = session.scalars(
        select(Reward)
        .where(Reward.decision_id == decision_id, Reward.kind == kind)
        .order_by(Reward.revision.desc())
        .limit(1)
    ).first()
    previous = None if latest is None else RewardRecord.from_row(latest)
    status, revision = reward_revision(decision_id, kind, value, previous, max_revisions)
    if status is RewardStatus.DUPLICATE and previous is not None:
        return RewardResult(RewardStatus.DUPLICATE, previous)
    row = Reward(
        decision_id=decision_id,
        kind=kind,
        value=value,
        revision=revision,
        observed_at=observed_at.astimezone(UTC),
        received_at=received_at or utcnow(),
    )
    session.add(row)
    session.flush()
    if status is RewardStatus.REVISED and previous is not None:
        log.info("reward revised: decision=%s kind=%s %s -> %s", decision_id, kind, previous.value, value)
    return RewardResult(status, RewardRecord.from_row(row))
