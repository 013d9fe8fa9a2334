"""What a policy has been doing lately: decision and reward rates, action mix and exploration share.

Read from a bounded sample (the policy's most recent decisions and the rewards received for them), so that
a dashboard that polls it costs the same whatever the size of the ledger.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from banditgate.ledger.models import Decision, Reward

#: Decisions read by default: enough for a stable action mix, few enough to read on every poll.
DEFAULT_SAMPLE = 2_000
#: Most decisions one read may ask for.
MAX_SAMPLE = 20_000


@dataclass(frozen=True)
class Bucket:
    """Decisions made and rewards received in ``[start, start + width)``."""

    start: datetime
    decisions: int
    rewards: int


@dataclass(frozen=True)
class RewardSummary:
    """The rewards of one kind received for the sampled decisions (latest revision of each)."""

    kind: str
    count: int
    mean: float


@dataclass(frozen=True)
class RecentActivity:
    """The policy's most recent decisions, summarised.

    ``explored`` counts decisions whose chosen action was not the most probable one, or that a uniform
    generation 0 made (the same rule as the ``banditgate_decisions_total`` metric's ``explored`` label).
    Rates are per minute over the sample's span, from its first decision to its last; the reward rate counts
    the first arrival of each (decision, kind) label within that span (later labels count in ``rewards``).
    """

    policy: str
    decisions: int
    first: datetime | None
    last: datetime | None
    explored: int
    actions: dict[str, int]
    generations: dict[int, int]
    rewards: list[RewardSummary]
    timeline: list[Bucket] = field(default_factory=list)
    bucket_seconds: float = 0.0

    @property
    def span_minutes(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return (self.last - self.first).total_seconds() / 60.0

    @property
    def decisions_per_minute(self) -> float | None:
        return self.decisions / self.span_minutes if self.span_minutes > 0 else None

    @property
    def rewards_per_minute(self) -> float | None:
        received = sum(b.rewards for b in self.timeline)
        return received / self.span_minutes if self.span_minutes > 0 else None

    @property
    def exploration_share(self) -> float | None:
        return self.explored / self.decisions if self.decisions else None


def recent_activity(session: Session, policy: str, limit: int = DEFAULT_SAMPLE, buckets: int = 30) -> RecentActivity:
    """Summarise the ``limit`` most recent decisions of ``policy`` and the rewards received for them.

    Parameters
    ----------
    session : Session
        A ledger session.
    policy : str
        The policy's name (a policy without decisions gives an empty summary).
    limit : int
        How many of the most recent decisions to read, 1 to :data:`MAX_SAMPLE`.
    buckets : int
        Number of equal time buckets of the timeline over the sample's span, 1 to 500.
    """
    if not 1 <= limit <= MAX_SAMPLE:
        raise ValueError(f"limit must be between 1 and {MAX_SAMPLE}, not {limit}")
    if not 1 <= buckets <= 500:
        raise ValueError(f"buckets must be between 1 and 500, not {buckets}")
    recent = (
        select(Decision.decision_id)
        .where(Decision.policy == policy)
        .order_by(Decision.decided_at.desc())
        .limit(limit)
        .subquery()
    )
    rows = session.execute(
        select(Decision.decided_at, Decision.generation, Decision.action_id, Decision.actions, Decision.probabilities)
        .join(recent, recent.c.decision_id == Decision.decision_id)
        .order_by(Decision.decided_at)
    ).all()
    # Every revision of the sampled decisions' rewards; the latest one of each (decision, kind) counts.
    revisions = session.execute(
        select(Reward.decision_id, Reward.kind, Reward.revision, Reward.value, Reward.received_at).join(
            recent, recent.c.decision_id == Reward.decision_id
        )
    ).all()

    actions: Counter[str] = Counter()
    generations: Counter[int] = Counter()
    explored = 0
    for _, generation, action_id, offered, probabilities in rows:
        actions[action_id] += 1
        generations[generation] += 1
        explored += _explored(generation, action_id, offered, probabilities)

    latest: dict[tuple[str, str], tuple[int, float]] = {}
    first_received: dict[tuple[str, str], datetime] = {}
    for decision_id, kind, revision, value, received_at in revisions:
        key = (decision_id, kind)
        if key not in latest or revision > latest[key][0]:
            latest[key] = (revision, value)
        if key not in first_received or received_at < first_received[key]:
            first_received[key] = received_at
    by_kind: dict[str, list[float]] = {}
    for (_, kind), (_, value) in latest.items():
        by_kind.setdefault(kind, []).append(value)
    rewards = [RewardSummary(k, len(v), sum(v) / len(v)) for k, v in sorted(by_kind.items())]

    first = rows[0].decided_at if rows else None
    last = rows[-1].decided_at if rows else None
    timeline: list[Bucket] = []
    width = 0.0
    if first is not None and last is not None:
        width = max((last - first).total_seconds(), 1.0) / buckets
        decided = [0] * buckets
        received = [0] * buckets
        for row in rows:
            decided[_bucket(row.decided_at, first, width, buckets)] += 1
        for at in first_received.values():
            if first <= at <= last:  # the rate of arrivals while these decisions were made
                received[_bucket(at, first, width, buckets)] += 1
        timeline = [Bucket(first + timedelta(seconds=i * width), decided[i], received[i]) for i in range(buckets)]
    return RecentActivity(
        policy=policy,
        decisions=len(rows),
        first=first,
        last=last,
        explored=explored,
        actions=dict(actions.most_common()),
        generations=dict(sorted(generations.items())),
        rewards=rewards,
        timeline=timeline,
        bucket_seconds=width,
    )


def _bucket(at: datetime, first: datetime, width: float, buckets: int) -> int:
    # The last decision itself lies on the end of the last bucket.
    return min(int((at - first).total_seconds() // width), buckets - 1)


def _explored(generation: int, action_id: str, offered: list[dict], probabilities: list[float]) -> bool:
    if generation == 0:
        return True
    for action, probability in zip(offered, probabilities, strict=False):
        if action.get("id") == action_id:
            return probability < max(probabilities)
    return False
