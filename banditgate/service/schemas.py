"""Request and response bodies of the HTTP API (DESIGN.md section 4), validated at the boundary.

Every constraint here produces a 422 whose message names the field and the problem.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from banditgate.service.settings import POLICY_NAME_PATTERN

MAX_ACTIONS = 64
MAX_FEATURES = 256
MAX_STRING = 256
MAX_ABS_INT = 2**63 - 1

#: Identifiers: visible ASCII, no spaces (UUIDs, transaction references, "route_a", "3ds:force").
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
PolicyName = Annotated[str, StringConstraints(pattern=POLICY_NAME_PATTERN)]
RewardKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


def _check_scalar(value: Any) -> Any:
    # One validator with one message, instead of a union that reports five type errors for a nested object.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_ABS_INT:
            raise ValueError(f"integer out of range (|x| must be at most {MAX_ABS_INT})")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number (NaN and infinity are not allowed)")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ValueError(f"string longer than {MAX_STRING} characters")
        return value
    raise ValueError("must be a number, string, boolean or null (nested objects and arrays are not allowed)")


Scalar = Annotated[
    Any,
    PlainValidator(_check_scalar),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "maxLength": MAX_STRING},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]
FlatObject = Annotated[dict[FeatureName, Scalar], Field(max_length=MAX_FEATURES)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionIn(StrictModel):
    id: Identifier
    features: FlatObject = Field(default_factory=dict)


class DecisionRequest(StrictModel):
    decision_id: Identifier | None = Field(
        default=None, description="client idempotency key; the same id again returns the same decision"
    )
    context: FlatObject
    actions: Annotated[list[ActionIn], Field(min_length=1, max_length=MAX_ACTIONS)]
    policy: PolicyName | None = Field(default=None, description="policy name (default: the configured default)")

    @field_validator("actions")
    @classmethod
    def _unique_ids(cls, actions: list[ActionIn]) -> list[ActionIn]:
        seen: set[str] = set()
        for action in actions:
            if action.id in seen:
                raise ValueError(f"duplicate action id {action.id!r}: action ids must be unique")
            seen.add(action.id)
        return actions


class DecisionResponse(BaseModel):
    decision_id: str
    action_id: str
    propensity: float
    probabilities: dict[str, float]
    policy: str
    generation: int
    exploration: str
    model_sha256: str | None
    decided_at: str


class RewardRequest(StrictModel):
    decision_id: Identifier
    reward: Annotated[float, Field(strict=True, allow_inf_nan=False)]
    observed_at: AwareDatetime | None = Field(default=None, description="when the outcome happened (default: now)")
    kind: RewardKind = "authorisation"

    @field_validator("reward", mode="before")
    @classmethod
    def _reject_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("reward must be a number, not a boolean")
        if isinstance(value, int) and abs(value) <= MAX_ABS_INT:
            return float(value)
        return value


class RewardOut(BaseModel):
    decision_id: str
    kind: str
    reward: float
    revision: int
    observed_at: datetime
    received_at: datetime


class RewardResponse(RewardOut):
    status: str = Field(description="recorded | duplicate | revised")


class ActionOut(BaseModel):
    id: str
    features: dict[str, Any]
    probability: float


class DecisionDetail(DecisionResponse):
    context: dict[str, Any]
    actions: list[ActionOut]
    exploration_params: dict[str, Any]
    draw: float
    rewards: list[RewardOut]


class PolicyIn(StrictModel):
    exploration: str = "squarecb"
    exploration_params: dict[str, Any] = Field(default_factory=dict)
    floor: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.01
    oracle: str = "lightgbm"
    oracle_params: dict[str, Any] = Field(default_factory=dict)
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""


class GenerationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    parent: int | None
    status: str
    oracle: str | None
    oracle_params: dict[str, Any]
    exploration: str
    exploration_params: dict[str, Any]
    training_window_start: datetime | None
    training_window_end: datetime | None
    row_counts: dict[str, Any]
    artifact_sha256: str | None
    promoted_by: str | None
    promoted_reason: str | None
    promoted_at: datetime | None
    created_at: datetime


class PolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str
    exploration: str
    exploration_params: dict[str, Any]
    floor: float
    oracle: str
    oracle_params: dict[str, Any]
    deployed_generation: int
    revision: int
    created_at: datetime
    updated_at: datetime


class PolicyDetail(PolicyOut):
    generations: list[GenerationOut]
