"""The frames between a serving process and its decision process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from banditgate.ledger.records import RewardRecord, RewardResult, RewardStatus
from banditgate.service.decision_service import DecisionOutcome, NewDecision
from banditgate.service.decision_wire import (
    MAX_FRAME_BYTES,
    FrameReader,
    WireError,
    frame,
    from_epoch_ms,
    outcome_from_wire,
    outcome_to_wire,
    reward_from_wire,
    reward_to_wire,
    to_epoch_ms,
)

MESSAGES = [
    [1, "decide", None, "default", None, {"amount": 1.5, "country": "NL"}, [{"id": "a", "features": {}}]],
    [2, "ok", [200, '{"decision_id":"x"}', None]],
    [3, "error", 503, "caf\u00e9 \u2713 ledger unavailable"],
]


def test_messages_survive_any_split_of_the_stream() -> None:
    data = b"".join(frame(message) for message in MESSAGES)
    for cut in range(len(data) + 1):
        reader = FrameReader()
        assert reader.feed(data[:cut]) + reader.feed(data[cut:]) == MESSAGES


def test_one_byte_at_a_time() -> None:
    data = b"".join(frame(message) for message in MESSAGES)
    reader = FrameReader()
    received = [message for i in range(len(data)) for message in reader.feed(data[i : i + 1])]
    assert received == MESSAGES


def test_an_oversized_frame_is_refused() -> None:
    with pytest.raises(WireError, match="at most"):
        FrameReader().feed((MAX_FRAME_BYTES + 1).to_bytes(4, "big") + b"[]")


@pytest.mark.parametrize("millisecond", [0, 1, 123, 999])
def test_times_cross_as_exact_milliseconds(millisecond: int) -> None:
    moment = datetime(2026, 12, 2, 14, 0, 0, millisecond * 1000, tzinfo=UTC)
    assert from_epoch_ms(to_epoch_ms(moment)) == moment
    assert from_epoch_ms(to_epoch_ms(moment + timedelta(days=40_000))) == moment + timedelta(days=40_000)


@pytest.mark.parametrize(
    "outcome",
    [
        DecisionOutcome(200, b'{"decision_id":"tx-1"}', NewDecision("default", 3, "route_nl", True, False)),
        DecisionOutcome(200, b'{"decision_id":"tx-1"}'),
        DecisionOutcome(409, "decision_id 'tx-\u00e9' was already used".encode()),
    ],
)
def test_outcomes_round_trip(outcome: DecisionOutcome) -> None:
    (message,) = FrameReader().feed(frame(outcome_to_wire(outcome)))
    assert outcome_from_wire(message) == outcome


def test_rewards_round_trip() -> None:
    observed = datetime(2026, 12, 1, 9, 30, 0, 250_000, tzinfo=UTC)
    record = RewardRecord("tx-1", "chargeback", 0.1 + 0.2, 2, observed, observed + timedelta(days=31))
    result = RewardResult(RewardStatus.REVISED, record)
    (message,) = FrameReader().feed(frame(reward_to_wire(result)))
    assert reward_from_wire(message) == result
