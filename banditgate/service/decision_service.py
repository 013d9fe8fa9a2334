"""Deciding and logging: what ``POST /v1/decisions`` and ``POST /v1/rewards`` ask of a serving process.

Routes talk to a :class:`DecisionService`. :class:`LocalDecisionService` decides with the process's own
:class:`~banditgate.service.decider.Decider` and logs to its own
:class:`~banditgate.ledger.decision_log.DecisionLog`; the decision process
(:mod:`banditgate.service.decision_process`) runs one, and
:class:`~banditgate.service.decision_client.ProcessDecisionService` forwards to it, so that the HTTP process
only parses and answers while the other core scores, draws and commits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from banditgate.ledger.decision_log import DecisionLog
from banditgate.ledger.records import DecisionRecord, RewardResult
from banditgate.ledger.registry import UnknownPolicy
from banditgate.policies.actions import Scalar
from banditgate.service.decider import Decider, format_timestamp
from banditgate.service.schemas import DecisionResponse


@dataclass(frozen=True, slots=True)
class DecisionAsked:
    """A validated decision request; ``now`` is the time its client stated (``None``: when it is decided)."""

    context: dict[str, Scalar]
    actions: list[dict[str, Any]]
    decision_id: str | None
    policy: str | None
    now: datetime | None


@dataclass(frozen=True, slots=True)
class NewDecision:
    """What the metrics count of a decision logged for the first time."""

    policy: str
    generation: int
    action_id: str
    explored: bool
    fallback: bool


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    """The answer to a decision request.

    ``status`` 200 with ``body`` the JSON of a :class:`~banditgate.service.schemas.DecisionResponse`, or an
    error status (409 for a ``decision_id`` reused for another request, 404 for an unknown policy) with
    ``body`` the message. ``new`` is set when this request logged the decision (not for a replay).
    """

    status: int
    body: bytes
    new: NewDecision | None = None


class DecisionService(ABC):
    """Decides and logs decisions, logs rewards; every result returns only once it is durable."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start whatever the service runs on."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Finish what was accepted, then release resources."""

    @abstractmethod
    async def decide(self, asked: DecisionAsked) -> DecisionOutcome:
        """Decide for one transaction and log it, or replay the logged answer of the same ``decision_id``."""

    @abstractmethod
    async def log_reward(
        self, decision_id: str, kind: str, value: float, observed_at: datetime, received_at: datetime
    ) -> RewardResult:
        """See :meth:`DecisionLog.log_reward <banditgate.ledger.decision_log.DecisionLog.log_reward>`."""

    def available(self) -> bool:
        """Whether decisions can be made right now."""
        return True

    async def refresh_policies(self) -> None:  # noqa: B027 - optional hook
        """Serve the registry's current policies from now on (the local service shares the caller's cache)."""


class LocalDecisionService(DecisionService):
    """Decides in this process and logs to this process's decision log."""

    def __init__(self, decider: Decider, decision_log: DecisionLog) -> None:
        self.decider = decider
        self.decision_log = decision_log

    async def decide(self, asked: DecisionAsked) -> DecisionOutcome:
        try:
            record, exploited = self.decider.decide(
                asked.context, asked.actions, asked.decision_id, asked.policy, asked.now
            )
        except UnknownPolicy as exc:
            return DecisionOutcome(404, f"policy: {exc}".encode())
        stored = await self.decision_log.log_decision(record)
        if stored is not record:
            if stored.request_sha256 != record.request_sha256:
                message = f"decision_id {record.decision_id!r} was already used for a different request"
                return DecisionOutcome(409, message.encode())
            return DecisionOutcome(200, response_json(stored))
        new = NewDecision(
            record.policy,
            record.generation,
            record.action_id,
            explored=not exploited,
            fallback="fallback" in record.exploration_params,
        )
        return DecisionOutcome(200, response_json(record), new)

    async def log_reward(
        self, decision_id: str, kind: str, value: float, observed_at: datetime, received_at: datetime
    ) -> RewardResult:
        return await self.decision_log.log_reward(decision_id, kind, value, observed_at, received_at)


def to_response(record: DecisionRecord) -> DecisionResponse:
    return DecisionResponse(
        decision_id=record.decision_id,
        action_id=record.action_id,
        propensity=record.propensity,
        probabilities={a["id"]: p for a, p in zip(record.actions, record.probabilities, strict=True)},
        policy=record.policy,
        generation=record.generation,
        exploration=record.exploration,
        model_sha256=record.model_sha256,
        decided_at=format_timestamp(record.decided_at),
    )


def response_json(record: DecisionRecord) -> bytes:
    # Serialised directly: the hot path skips FastAPI's re-validation of a model built a line earlier.
    response = to_response(record)
    return response.__pydantic_serializer__.to_json(response)
