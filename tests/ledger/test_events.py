"""The event schema both ends of the Kafka transport go through (``banditgate.ledger.events``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from banditgate.ledger.events import (
    SCHEMA_VERSION,
    DecisionEvent,
    DecisionPayload,
    FutureEvent,
    InvalidEvent,
    RewardEvent,
    RewardPayload,
    decode,
    encode,
)
from banditgate.ledger.records import RewardRecord
from tests.ledger.conftest import make_record


def decision_event(**overrides: object) -> DecisionEvent:
    record = make_record("tx-1", **overrides)
    return DecisionEvent(event_id="serve-a:1", instance="serve-a", decision=DecisionPayload.from_record(record))


def test_a_decision_record_survives_the_wire_unchanged() -> None:
    record = make_record("tx-1", segment_values={"issuer_country": "NL"})
    event = DecisionEvent(event_id="serve-a:7", instance="serve-a", decision=DecisionPayload.from_record(record))
    key, value = encode(event)
    assert key == b"tx-1"
    document = json.loads(value)
    assert list(document)[:2] == ["type", "version"] and document["version"] == SCHEMA_VERSION
    assert document["decision"]["decided_at"] == "2026-11-25T14:00:00.123000Z"
    back = decode(value)
    assert isinstance(back, DecisionEvent) and back.decision.record() == record


def test_a_reward_record_survives_the_wire_without_its_revision() -> None:
    at = datetime(2026, 11, 25, 14, 0, 5, tzinfo=UTC)
    record = RewardRecord(decision_id="tx-1", kind="chargeback", value=1.0, revision=3, observed_at=at, received_at=at)
    event = RewardEvent(event_id="serve-b:9", instance="serve-b", reward=RewardPayload.from_record(record))
    key, value = encode(event)
    assert key == b"tx-1" and "revision" not in json.loads(value)["reward"]
    assert decode(value) == event


def test_a_newer_minor_version_is_read_and_its_new_fields_ignored() -> None:
    document = json.loads(encode(decision_event())[1])
    document["version"] = "1.7"
    document["trace_id"] = "abc"
    document["decision"]["region"] = "eu-west"
    assert decode(json.dumps(document).encode()).decision_id == "tx-1"


@pytest.mark.parametrize("version", ["2.0", "10.3"])
def test_a_newer_major_version_is_refused_as_a_future_event(version: str) -> None:
    document = json.loads(encode(decision_event())[1]) | {"version": version}
    with pytest.raises(FutureEvent, match=f"version {version} is newer"):
        decode(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("version"), "version must be a string"),
        (lambda d: d.update(version="1"), 'version must be "MAJOR.MINOR"'),
        (lambda d: d.update(version="0.9"), "older than any this reader knows"),
        (lambda d: d.update(type="refund"), "does not match any of the expected tags"),
        (lambda d: d["decision"].pop("probabilities"), "decision.probabilities: Field required"),
        (lambda d: d["decision"].update(probabilities=[0.5]), "1 probabilities for 2 actions"),
        (lambda d: d["decision"].update(propensity=0.1), "propensity is not the probability of action_id"),
        (lambda d: d["decision"].update(action_id="z"), "action_id 'z' is not one of the actions"),
        (lambda d: d["decision"].update(decided_at="2026-11-25T14:00:00"), "needs a timezone"),
        (lambda d: d["decision"].update(draw=1.5), "decision.draw"),
        (lambda d: d["decision"].update(model_sha256="not-a-hash"), "decision.model_sha256"),
    ],
)
def test_an_invalid_event_is_refused_with_the_field_and_the_reason(change, message: str) -> None:
    document = json.loads(encode(decision_event())[1])
    change(document)
    with pytest.raises(InvalidEvent, match=message):
        decode(json.dumps(document).encode())


@pytest.mark.parametrize("value", [b"\xff\xfe", b"{not json", b"[1, 2]", b'"decision"'])
def test_a_message_that_is_not_a_json_object_is_refused(value: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode(value)


def test_a_reward_value_must_be_finite() -> None:
    document = {
        "type": "reward",
        "version": SCHEMA_VERSION,
        "event_id": "serve-a:2",
        "instance": "serve-a",
        "reward": {
            "decision_id": "tx-1",
            "kind": "authorisation",
            "value": "NaN",
            "observed_at": "2026-11-25T14:00:00Z",
        },
    }
    with pytest.raises(InvalidEvent, match=r"reward\.value") as refused:
        decode(json.dumps(document).encode())
    assert "reward.received_at: Field required" in str(refused.value)


def test_an_action_s_unknown_fields_are_ignored_and_missing_features_read_as_empty() -> None:
    document = json.loads(encode(decision_event())[1])
    document["decision"]["actions"][0]["colour"] = "red"  # a field a newer minor version might add
    del document["decision"]["actions"][1]["features"]
    record = decode(json.dumps(document).encode()).decision.record()
    assert record.actions == [{"id": "a", "features": {}}, {"id": "b", "features": {}}]


@pytest.mark.parametrize("field", ["probabilities", "propensity", "draw"])
@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_a_decision_s_numbers_must_be_finite(field: str, bad: str) -> None:
    document = json.loads(encode(decision_event())[1])
    if field == "probabilities":
        document["decision"]["probabilities"][0] = bad
    else:
        document["decision"][field] = bad
    with pytest.raises(InvalidEvent, match=rf"decision\.{field}.*finite number"):
        decode(json.dumps(document).encode())


def test_a_decision_s_row_is_its_record_s_row() -> None:
    document = json.loads(encode(decision_event(segment_values={"issuer_country": "NL"}))[1])
    payload = decode(json.dumps(document).encode()).decision
    assert payload.row() == payload.record().as_row()
    del document["decision"]["actions"][1]["features"]
    payload = decode(json.dumps(document).encode()).decision
    assert payload.row() == payload.record().as_row()
    assert payload.row()["actions"][1] == {"id": "b", "features": {}}
