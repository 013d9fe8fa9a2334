"""Event records: what the decision log stores and, in streaming mode, what goes on the wire.

Plain frozen dataclasses, free of SQLAlchemy, so the Kafka transport can serialise the same objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

#: The context keys a policy's decisions are segmented by unless its gate settings say otherwise.
DEFAULT_SEGMENT_KEYS: tuple[str, ...] = ("issuer_country",)


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A decision as logged: enough to replay the draw and to learn from it off-policy.

    ``actions`` are ``{"id", "features"}`` objects in request order and ``probabilities`` is aligned with
    them; ``propensity`` is the probability of ``action_id`` that was used to sample it. ``segment_values``
    copies out of the context the values the policy's gate segments by (see :func:`segment_values`).
    """

    decision_id: str
    policy: str
    generation: int
    context: dict[str, Any]
    actions: list[dict[str, Any]]
    probabilities: list[float]
    action_id: str
    propensity: float
    exploration: str
    exploration_params: dict[str, Any]
    model_sha256: str | None
    draw: float
    request_sha256: str
    decided_at: datetime
    segment_values: dict[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        # Shallow on purpose (dataclasses.asdict deep-copies every context): this runs once per logged decision.
        return {name: getattr(self, name) for name in _DECISION_FIELDS}

    @classmethod
    def from_row(cls, row: Any) -> DecisionRecord:
        """From an ORM object (or anything with the same attributes)."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


_DECISION_FIELDS = tuple(f.name for f in fields(DecisionRecord))


def segment_values(context: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The context's values of ``keys`` (None where the context has no such key)."""
    return {key: context.get(key) for key in keys}


class RewardStatus(StrEnum):
    RECORDED = "recorded"  # first value for this (decision, kind)
    DUPLICATE = "duplicate"  # same value as the latest revision: nothing written
    REVISED = "revised"  # a different value: kept as a new revision, which now wins
    # Kafka transport: a reward for a decision this instance did not log, published for the joiner to join
    PENDING_JOIN = "pending join"


@dataclass(frozen=True, slots=True)
class RewardRecord:
    decision_id: str
    kind: str
    value: float
    revision: int
    observed_at: datetime
    received_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> RewardRecord:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class RewardResult:
    status: RewardStatus
    reward: RewardRecord
