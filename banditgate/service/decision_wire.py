"""The wire between a serving process and its decision process: length-prefixed orjson frames.

Every message is a JSON array whose first element is a sequence number chosen by the serving process; the
decision process answers each request with one reply carrying the same number, in any order. Requests are
``[seq, op, ...arguments]``; replies are ``[seq, "ok", result]`` or ``[seq, "error", status, message]``,
where ``status`` is the HTTP status the serving process answers with; a reward the decision log refused adds
the refusal's name (:data:`~banditgate.ledger.decision_log.REFUSALS`), which the serving process raises again.

>>> reader = FrameReader()
>>> data = frame([1, "refresh"]) + frame([2, "refresh"])
>>> reader.feed(data[:5]), reader.feed(data[5:])
([], [[1, 'refresh'], [2, 'refresh']])
"""

from __future__ import annotations

import asyncio
import logging
import struct
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson

from banditgate.ledger.records import RewardRecord, RewardResult, RewardStatus
from banditgate.service.decision_service import DecisionOutcome, NewDecision

log = logging.getLogger(__name__)
_LENGTH = struct.Struct("!I")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The largest frame either side accepts; a request body is capped far below (``max_body_bytes``).
MAX_FRAME_BYTES = 64 * 1024 * 1024


class WireError(RuntimeError):
    """The other side sent something that is not a frame of this protocol."""


def frame(message: Any) -> bytes:
    """``message`` as one frame: its JSON length, then its JSON."""
    payload = orjson.dumps(message)
    return _LENGTH.pack(len(payload)) + payload


class FrameReader:
    """Cuts a byte stream into the messages it carries, however the stream was split into reads."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return the messages it completed."""
        buffer = self._buffer
        buffer += data
        messages = []
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_FRAME_BYTES:
                raise WireError(f"frame of {length} bytes announced; at most {MAX_FRAME_BYTES} are accepted")
            end = start + _LENGTH.size + length
            if end > len(buffer):
                break
            messages.append(orjson.loads(memoryview(buffer)[start + _LENGTH.size : end]))
            start = end
        del buffer[:start]
        return messages


class FrameProtocol(asyncio.Protocol):
    """One end of the wire: frames in, each message to :meth:`message_received`; garbage closes the socket.

    ``closed`` resolves when the connection is gone, whichever side closed it.
    """

    #: Who is at the other end, for the log.
    peer = "the other process"

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._frames = FrameReader()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._frames.feed(data)
        except (WireError, orjson.JSONDecodeError) as exc:
            log.error("unreadable message from %s (%s); closing", self.peer, exc)
            self.close()
            return
        for message in messages:
            self.message_received(message)

    def message_received(self, message: Any) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def to_epoch_ms(value: datetime) -> int:
    """A millisecond-truncated time as an integer, exact (``datetime.timestamp`` goes through a float)."""
    return (value - _EPOCH) // timedelta(milliseconds=1)


def from_epoch_ms(value: int) -> datetime:
    """
    >>> moment = datetime(2026, 12, 2, 14, 0, 0, 123000, tzinfo=UTC)
    >>> from_epoch_ms(to_epoch_ms(moment)) == moment
    True
    """
    return _EPOCH + timedelta(milliseconds=value)


def outcome_to_wire(outcome: DecisionOutcome) -> list[Any]:
    new = outcome.new
    logged = None if new is None else [new.policy, new.generation, new.action_id, new.explored, new.fallback]
    return [outcome.status, outcome.body.decode(), logged]


def outcome_from_wire(value: list[Any]) -> DecisionOutcome:
    status, body, logged = value
    return DecisionOutcome(status, body.encode(), None if logged is None else NewDecision(*logged))


def reward_to_wire(result: RewardResult) -> list[Any]:
    r = result.reward
    return [result.status.value, r.decision_id, r.kind, r.value, r.revision, r.observed_at, r.received_at]


def reward_from_wire(value: list[Any]) -> RewardResult:
    status, decision_id, kind, reward, revision, observed_at, received_at = value
    record = RewardRecord(
        decision_id,
        kind,
        reward,
        revision,
        datetime.fromisoformat(observed_at).astimezone(UTC),
        datetime.fromisoformat(received_at).astimezone(UTC),
    )
    return RewardResult(RewardStatus(status), record)
