"""Request and response bodies of the HTTP API (docs/api.md), validated at the boundary.

Every constraint here produces a 422 whose message names the field and the problem.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from banditgate.ledger.types import EARLIEST_TIME, LATEST_TIME, check_time
from banditgate.policies.oracles.features import (
    DEFAULT_HASH_BUCKETS,
    MAX_DECLARED_KEYS,
    MAX_HASH_BUCKETS,
    MAX_KEY_LENGTH,
    MIN_HASH_BUCKETS,
)
from banditgate.service.settings import POLICY_NAME_PATTERN

MAX_ACTIONS = 64
MAX_FEATURES = 256
MAX_STRING = 256
MAX_ABS_INT = 2**63 - 1
#: What the OpenAPI document says of text fields (they refuse NUL, see ``_check_text``) and of reasons (not blank).
NO_NUL_PATTERN = r"^[^\x00]*$"
NOT_BLANK_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"


def _check_text(value: str) -> str:
    # PostgreSQL cannot store NUL in text, and a lone surrogate cannot be encoded as UTF-8 at all: refuse both
    # here, naming the field, rather than failing in the database.
    if "\x00" in value:
        raise ValueError("text must not contain NUL (\\u0000) characters")
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_check_text), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank: say why (and, for an override, who); it is kept in the audit trail")
    return value


#: Why a change is made: kept in the audit trail, so it must say something.
Reason = Annotated[
    Text,
    StringConstraints(max_length=2000),
    AfterValidator(_not_blank),
    Field(json_schema_extra={"pattern": NOT_BLANK_PATTERN}),
]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date_time_text(value: Any) -> Any:
    # Pydantic would read a number (and a numeric string, as in a query) as seconds since 1970; the document
    # says "date-time", so only ISO 8601 text is one.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date-time with a time zone, such as 2026-01-05T10:00:00Z")
    return value


def _supported_time(value: datetime) -> datetime:
    try:
        return check_time(value)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past the last datetime once in UTC
        raise ValueError(
            f"time out of the supported range [{EARLIEST_TIME.isoformat()}, {LATEST_TIME.isoformat()})"
        ) from None


#: An ISO 8601 date-time with a time zone, given as text (never a number of seconds), within the supported
#: range (:data:`~banditgate.ledger.types.EARLIEST_TIME` to :data:`~banditgate.ledger.types.LATEST_TIME`).
Timestamp = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_supported_time)]

#: Identifiers: visible ASCII, no spaces (UUIDs, transaction references, "route_a", "3ds:force").
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
FeatureName = Annotated[Text, StringConstraints(min_length=1, max_length=64)]
PolicyName = Annotated[str, StringConstraints(pattern=POLICY_NAME_PATTERN)]
RewardKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
MAX_PARAMETER_DEPTH = 4


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
        return _check_text(value)
    raise ValueError("must be a number, string, boolean or null (nested objects and arrays are not allowed)")


def _check_parameters(value: Any, path: str = "", depth: int = 0) -> Any:
    """Parameters of a rule or oracle: JSON that every backend can store (finite numbers, clean text)."""
    if depth > MAX_PARAMETER_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_PARAMETER_DEPTH} levels")
    if isinstance(value, dict):
        return {_check_text(k): _check_parameters(v, f"{path}.{k}".lstrip("."), depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_check_parameters(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    try:
        return _check_scalar(value)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


Parameters = Annotated[
    dict[str, Any],
    AfterValidator(_check_parameters),
    Field(max_length=MAX_FEATURES),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_FEATURES,
            "propertyNames": {"pattern": NO_NUL_PATTERN},
            "description": f"JSON object: finite numbers, strings, booleans, null, arrays and objects nested at most "
            f"{MAX_PARAMETER_DEPTH} levels; no NUL characters",
        }
    ),
]

SCALAR_SCHEMA = {
    "anyOf": [
        {"type": "number"},
        {"type": "string", "maxLength": MAX_STRING, "pattern": NO_NUL_PATTERN},
        {"type": "boolean"},
        {"type": "null"},
    ]
}
Scalar = Annotated[Any, PlainValidator(_check_scalar), WithJsonSchema(SCALAR_SCHEMA)]
# The schema is spelled out: pydantic would document the key constraints as patternProperties, which leaves
# keys that do not match them unconstrained.
FlatObject = Annotated[
    dict[FeatureName, Scalar],
    Field(max_length=MAX_FEATURES),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_FEATURES,
            "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": NO_NUL_PATTERN},
            "additionalProperties": SCALAR_SCHEMA,
        }
    ),
]


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
    observed_at: Timestamp | None = Field(default=None, description="when the outcome happened (default: now)")
    kind: RewardKind = "authorisation"

    @field_validator("observed_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp out of range once converted to UTC") from None

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
    status: str = Field(description="recorded | duplicate | revised | pending join (Kafka transport)")


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


class HashedFeatureIn(StrictModel):
    """A context key hashed into ``buckets`` buckets (CRC-32 of the value, modulo ``buckets``)."""

    treatment: Literal["hashed"]
    buckets: Annotated[int, Field(ge=MIN_HASH_BUCKETS, le=MAX_HASH_BUCKETS, strict=True)] = DEFAULT_HASH_BUCKETS


FeatureKey = Annotated[Text, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH)]
FeatureTreatment = Literal["numeric", "categorical", "hashed", "excluded"] | HashedFeatureIn


class PolicyIn(StrictModel):
    exploration: Annotated[Text, StringConstraints(max_length=32)] = "squarecb"
    exploration_params: Parameters = Field(default_factory=dict)
    floor: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)] = 0.01
    oracle: Annotated[Text, StringConstraints(max_length=32)] = "lightgbm"
    oracle_params: Parameters = Field(default_factory=dict)
    features: dict[FeatureKey, FeatureTreatment] = Field(
        default_factory=dict,
        max_length=MAX_DECLARED_KEYS,
        description='how the oracle uses each context key: "numeric", "categorical", "excluded", "hashed" (into '
        f'{DEFAULT_HASH_BUCKETS} buckets) or {{"treatment": "hashed", "buckets": n}}; keys not named are treated '
        "automatically (numbers numeric; strings categorical, the rare categories of a key with many sharing one code)",
    )
    description: Annotated[Text, StringConstraints(max_length=2000)] = ""
    reason: Annotated[Text, StringConstraints(max_length=2000)] = ""


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx: ``message`` is one readable line naming the field and the problem."""

    message: str
    detail: Any = None


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
    features: dict[str, Any]
    deployed_generation: int
    revision: int
    created_at: datetime
    updated_at: datetime


class PolicyDetail(PolicyOut):
    generations: list[GenerationOut]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can return, all with the :class:`ErrorResponse` body."""
    descriptions = {
        401: "admin endpoint called without an API key",
        403: "wrong API key, or admin endpoints disabled",
        404: "not found: the policy, generation or decision named does not exist",
        409: "conflict with what is already logged",
        413: "request body too large",
        422: "invalid request: the message names the field and the problem",
        503: "the ledger database is unavailable: nothing was recorded",
    }
    return {code: {"model": ErrorResponse, "description": descriptions[code]} for code in codes}
