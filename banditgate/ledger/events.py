"""Events: decisions and rewards as versioned JSON, the wire format between serving instances and joiners.

With a Kafka transport, each serving instance publishes what it logged in its outbox as events, and joiners
write them into the central ledger. Both ends go through this module: :func:`encode` on the way out,
:func:`decode` on the way in, so an event that one end accepts the other end reads the same way.

The message key is the ``decision_id`` (UTF-8), so a decision and all its rewards land on the same partition,
in the order they were logged. The message value is one UTF-8 JSON object:

``type``
    ``"decision"`` or ``"reward"``.
``version``
    ``"MAJOR.MINOR"`` of this schema (:data:`SCHEMA_VERSION`). A minor version only adds optional fields,
    which readers of the same major version ignore; a new major version changes what existing fields mean,
    and a reader of an older major version refuses the event (:class:`FutureEvent`) instead of guessing.
``event_id``
    Unique per event: ``"<instance>:<sequence>"``, the serving instance that logged it and the position in
    its outbox. Delivery is at least once; a reader recognises a redelivered event by its ``event_id``.
``instance``
    The serving instance that logged the event (``BANDITGATE_INSTANCE_ID``).
``decision`` (decision events)
    The decision as logged (:class:`~banditgate.ledger.records.DecisionRecord`): the full probability vector,
    the generation, the model's hash, the draw; times are ISO 8601 in UTC.
``reward`` (reward events)
    ``decision_id``, ``kind``, ``value``, ``observed_at`` (when the outcome happened), ``received_at`` (when
    the serving instance accepted it). The revision number is not on the wire: the ledger numbers revisions
    as it applies them, so a reward is the same event whichever instance received it.

Examples
--------
>>> from datetime import UTC, datetime
>>> reward = RewardEvent(
...     event_id="serve-a:42", instance="serve-a",
...     reward=RewardPayload(decision_id="tx-1", kind="authorisation", value=1.0,
...                          observed_at=datetime(2026, 3, 1, 8, 15, 2, tzinfo=UTC),
...                          received_at=datetime(2026, 3, 1, 8, 15, 3, tzinfo=UTC)))
>>> key, value = encode(reward)
>>> key
b'tx-1'
>>> value.decode()[:60]
'{"type":"reward","version":"1.0","event_id":"serve-a:42","in'
>>> decode(value) == reward
True
>>> decode(b'{"type": "reward", "version": "2.0"}')  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
banditgate.ledger.events.FutureEvent: event schema version 2.0 is newer than this reader's 1.0 (major 1): ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from typing_extensions import TypedDict

from banditgate.ledger.records import DecisionRecord, RewardRecord
from banditgate.ledger.types import check_time

#: The version of the event schema this code writes, and the newest major version it reads.
SCHEMA_VERSION = "1.0"
_MAJOR = int(SCHEMA_VERSION.split(".")[0])


class InvalidEvent(ValueError):
    """An event that is not valid under this schema: not JSON, a missing or wrong field."""


class FutureEvent(InvalidEvent):
    """An event of a newer major schema version than this reader knows."""


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time needs a timezone (UTC, e.g. 2026-03-01T08:15:00Z)")
    return check_time(value.astimezone(UTC))


UTCTime = Annotated[datetime, AfterValidator(_utc)]
Identifier = Annotated[str, Field(min_length=1, max_length=128)]


#: A finite number, checked inside pydantic's core: a Python validator here (and the bounds it forced out of the
#: core after it) was called a dozen times per decision and cost a joiner a fifth of its decoding.
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Payload(BaseModel):
    # Fields a newer minor version adds are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ActionPayload(TypedDict):
    """An action on the wire: ``id`` and its ``features`` (``{}`` when absent); other keys are ignored.

    A typed dict rather than a model: a decision carries ten or more actions, and building a model for each
    was a third of the time a joiner took to read a decision.
    """

    id: Identifier
    features: NotRequired[dict[str, Any]]


class DecisionPayload(_Payload):
    """A :class:`~banditgate.ledger.records.DecisionRecord` on the wire."""

    decision_id: Identifier
    policy: Annotated[str, Field(min_length=1, max_length=64)]
    generation: Annotated[int, Field(ge=0)]
    context: dict[str, Any]
    actions: Annotated[list[ActionPayload], Field(min_length=1)]
    probabilities: list[Annotated[Finite, Field(ge=0.0, le=1.0)]]
    action_id: Identifier
    propensity: Annotated[Finite, Field(gt=0.0, le=1.0)]
    exploration: Annotated[str, Field(min_length=1, max_length=32)]
    exploration_params: dict[str, Any]
    model_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None
    draw: Annotated[Finite, Field(ge=0.0, le=1.0)]
    request_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    decided_at: UTCTime
    segment_values: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> DecisionPayload:
        if len(self.probabilities) != len(self.actions):
            raise ValueError(f"{len(self.probabilities)} probabilities for {len(self.actions)} actions")
        ids = [action["id"] for action in self.actions]
        if self.action_id not in ids:
            raise ValueError(f"action_id {self.action_id!r} is not one of the actions")
        if not math.isclose(self.probabilities[ids.index(self.action_id)], self.propensity, rel_tol=1e-9):
            raise ValueError("propensity is not the probability of action_id")
        return self

    @classmethod
    def from_record(cls, record: DecisionRecord) -> DecisionPayload:
        return cls.model_validate(record.as_row())

    def row(self) -> dict[str, Any]:
        """``self.record().as_row()`` without building the record (a joiner inserts a row for every decision)."""
        row = dict(self.__dict__)  # the validated fields, shallowly
        if not all("features" in action for action in self.actions):
            row["actions"] = [{"id": action["id"], "features": action.get("features", {})} for action in self.actions]
        return row

    def record(self) -> DecisionRecord:
        # Field by field rather than through model_dump, which deep-copies every context (a joiner does this
        # for every decision it reads).
        return DecisionRecord(
            decision_id=self.decision_id,
            policy=self.policy,
            generation=self.generation,
            context=self.context,
            actions=[{"id": action["id"], "features": action.get("features", {})} for action in self.actions],
            probabilities=list(self.probabilities),
            action_id=self.action_id,
            propensity=self.propensity,
            exploration=self.exploration,
            exploration_params=self.exploration_params,
            model_sha256=self.model_sha256,
            draw=self.draw,
            request_sha256=self.request_sha256,
            decided_at=self.decided_at,
            segment_values=self.segment_values,
        )


class RewardPayload(_Payload):
    """A reward as a serving instance accepted it (its revision is numbered by the ledger that applies it)."""

    decision_id: Identifier
    kind: Annotated[str, Field(min_length=1, max_length=32)]
    value: Finite
    observed_at: UTCTime
    received_at: UTCTime

    @classmethod
    def from_record(cls, record: RewardRecord) -> RewardPayload:
        return cls(
            decision_id=record.decision_id,
            kind=record.kind,
            value=record.value,
            observed_at=record.observed_at,
            received_at=record.received_at,
        )


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str = SCHEMA_VERSION
    event_id: Annotated[str, Field(min_length=1, max_length=256)]
    instance: Annotated[str, Field(min_length=1, max_length=128)]


class DecisionEvent(_Event):
    type: Literal["decision"] = "decision"
    decision: DecisionPayload

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id


class RewardEvent(_Event):
    type: Literal["reward"] = "reward"
    reward: RewardPayload

    @property
    def decision_id(self) -> str:
        return self.reward.decision_id


Event = Annotated[DecisionEvent | RewardEvent, Field(discriminator="type")]
_EVENT: TypeAdapter[DecisionEvent | RewardEvent] = TypeAdapter(Event)


def encode(event: DecisionEvent | RewardEvent) -> tuple[bytes, bytes]:
    """The message key (the ``decision_id``) and value (compact JSON, ``type`` and ``version`` first)."""
    body = event.model_dump(mode="json")
    ordered = {"type": body.pop("type"), "version": body.pop("version"), **body}
    return event.decision_id.encode(), json.dumps(ordered, separators=(",", ":"), allow_nan=False).encode()


def encode_decision(event_id: str, instance: str, record: DecisionRecord) -> tuple[bytes, bytes]:
    """The key and value of the decision event of a logged ``record``, as :func:`encode` writes them, faster.

    For the relay, which publishes decisions the decider made and the writer logged: they were validated on
    their way in, so this skips building the pydantic models again (most of the cost of :func:`encode`). The
    JSON is the same document (:func:`decode` reads the same event); non-ASCII text is written as UTF-8
    rather than escaped.
    """
    body = {
        "type": "decision",
        "version": SCHEMA_VERSION,
        "event_id": event_id,
        "instance": instance,
        "decision": record.as_row(),
    }
    return record.decision_id.encode(), orjson.dumps(body, option=_ORJSON_OPTIONS)


def encode_decision_json(
    event_id: str, instance: str, decision_id: str, fields: Mapping[str, bytes]
) -> tuple[bytes, bytes]:
    """Like :func:`encode_decision`, from every field of the decision already as JSON text (``fields[name]``
    for each name of :data:`DECISION_FIELDS`): the outbox hands over the JSON it stored without parsing it."""
    decision = b",".join(b'"%s":%s' % (name, fields[name.decode()]) for name in _DECISION_FIELD_NAMES)
    head = orjson.dumps({"type": "decision", "version": SCHEMA_VERSION, "event_id": event_id, "instance": instance})
    return decision_id.encode(), b'%s,"decision":{%s}}' % (head[:-1], decision)


def encode_reward(event_id: str, instance: str, reward: RewardPayload) -> tuple[bytes, bytes]:
    """The key and value of a reward event, as :func:`encode` writes them (see :func:`encode_decision`)."""
    body = {
        "type": "reward",
        "version": SCHEMA_VERSION,
        "event_id": event_id,
        "instance": instance,
        "reward": {
            "decision_id": reward.decision_id,
            "kind": reward.kind,
            "value": reward.value,
            "observed_at": reward.observed_at,
            "received_at": reward.received_at,
        },
    }
    return reward.decision_id.encode(), orjson.dumps(body, option=_ORJSON_OPTIONS)


#: The fields of a decision on the wire, in the order :func:`encode` writes them.
DECISION_FIELDS: tuple[str, ...] = tuple(DecisionPayload.model_fields)
_DECISION_FIELD_NAMES = tuple(name.encode() for name in DECISION_FIELDS)
_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def decode(value: bytes) -> DecisionEvent | RewardEvent:
    """The event in a message value; :class:`FutureEvent` for a newer major version, :class:`InvalidEvent`
    for anything else this schema does not accept (the message says which field and why)."""
    try:
        document = orjson.loads(value)  # several times faster than json.loads: a joiner decodes every event
    except (UnicodeDecodeError, orjson.JSONDecodeError, TypeError) as exc:
        raise InvalidEvent(f"not a JSON document: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidEvent(f"an event is a JSON object, not {type(document).__name__}")
    version = document.get("version")
    major = _major(version)
    if major > _MAJOR:
        raise FutureEvent(
            f"event schema version {version} is newer than this reader's {SCHEMA_VERSION} (major {_MAJOR}): "
            "upgrade banditgate before reading on"
        )
    if major < _MAJOR:
        raise InvalidEvent(f"event schema version {version} is older than any this reader knows")
    try:
        return _EVENT.validate_python(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'event'}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidEvent(problems) from None


def _major(version: Any) -> int:
    if not isinstance(version, str):
        raise InvalidEvent(f'version must be a string "MAJOR.MINOR", not {version!r}')
    major, dot, minor = version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        raise InvalidEvent(f'version must be "MAJOR.MINOR", not {version!r}')
    return int(major)
