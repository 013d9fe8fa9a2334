"""Reads of the matured part of a policy's decision log: what retraining and off-policy evaluation learn from.

A decision is matured once its reward of the chosen kind has been *received* by the as-of time; the latest
revision received by then wins. The reads go through SQLAlchemy Core rather than the ORM session's result
machinery (a million rows are read per retraining; the ORM's per-row loading costs more than SQLite's
reading), and hand back plain tuples in batches, with the JSON documents as text for the caller to decode.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, cast, func, select
from sqlalchemy.orm import Session

from banditgate.ledger.models import Decision, Reward
from banditgate.ledger.reward_kinds import RewardKind

#: Rows fetched per round trip.
BATCH = 20_000


def latest_rewards(session: Session, reward_kind: str, as_of: datetime, rule: RewardKind) -> dict[str, float]:
    """The latest valid revision of ``reward_kind`` received by ``as_of``, per decision id.

    One scan ordered by (decision, revision) into a dict: a join against a grouped subquery let PostgreSQL pick
    a quadratic plan on freshly written tables.
    """
    query = (
        select(Reward.decision_id, Reward.value)
        .where(_received(reward_kind, as_of), rule.valid(Reward.value))
        .order_by(Reward.decision_id, Reward.revision)
    )
    labels: dict[str, float] = {}
    for batch in _partitions(session, query):
        labels.update(batch)
    return labels


def invalid_reward_counts(session: Session, reward_kind: str, as_of: datetime, rule: RewardKind) -> dict[str, int]:
    """How many received values of ``reward_kind`` lie outside ``rule``, per decision (rare: no index spent)."""
    query = (
        select(Reward.decision_id, func.count())
        .where(_received(reward_kind, as_of), rule.invalid(Reward.value))
        .group_by(Reward.decision_id)
    )
    return {decision_id: count for decision_id, count in session.connection().execute(query)}


def window_decisions(
    session: Session, policy: str, start: datetime, as_of: datetime, generations: list[int] | None = None
) -> Iterator[list[Any]]:
    """The decisions of ``policy`` made in ``[start, as_of)``, in time order, in batches of :data:`BATCH`.

    Each row is ``(decision_id, generation, context, actions, action_id, propensity, decided_at)`` with
    ``context`` and ``actions`` as JSON text and ``decided_at`` timezone-aware.
    """
    in_window = and_(Decision.policy == policy, Decision.decided_at >= start, Decision.decided_at < as_of)
    if generations is not None:
        in_window = and_(in_window, Decision.generation.in_(generations))
    query = (
        select(
            Decision.decision_id,
            Decision.generation,
            cast(Decision.context, Text),
            cast(Decision.actions, Text),
            Decision.action_id,
            Decision.propensity,
            Decision.decided_at,
        )
        .where(in_window)
        .order_by(Decision.decided_at, Decision.decision_id)
    )
    return _partitions(session, query)


def _received(reward_kind: str, as_of: datetime) -> Any:
    return and_(Reward.kind == reward_kind, Reward.received_at <= as_of)


def _partitions(session: Session, query: Any) -> Iterator[list[Any]]:
    # Core execution on the session's connection (its transaction), streamed: a server-side cursor on PostgreSQL.
    result = session.connection().execute(query.execution_options(yield_per=BATCH))
    yield from result.partitions()
