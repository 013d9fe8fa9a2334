"""The outbox: a serving instance's local, durable log of what it decided, published to Kafka by a relay.

With a Kafka transport (``kafka_bootstrap_servers``), a serving instance reads its policies and generations
from the central ledger, but logs decisions and rewards here: a SQLite file of its own (WAL, ``synchronous``
as configured), committed before the answer goes out, exactly as the embedded log commits to the ledger. The
relay (:mod:`banditgate.service.relay`) publishes the committed events in order and records how far the broker
acknowledged them; joiners write them into the central ledger.

Tables of the file:

``decisions``
    The ledger's own decisions table (same columns), so the batching writer logs into it unchanged and a
    repeated ``decision_id`` replays the logged answer on this instance.
``outbox_rewards``
    Every reward this instance accepted, with this instance's revision count. No foreign key: with Kafka, a
    reward may name a decision another instance made (it is accepted as "pending join").
``outbox``
    One row per event, numbered in commit order (``sequence``, never reused). A trigger adds the row of a
    decision in the transaction that inserts the decision, so no decision is ever committed without its
    event; a reward's row is added in the reward's transaction. The event id is ``<instance>:<sequence>``.
``outbox_state``
    The instance id (generated once and kept, so event ids stay unique across restarts), the last sequence
    the broker acknowledged (``delivered_through``), and the relay's view of the broker.

Several processes may share one file (``serve --workers N``, each with its decision process): SQLite
serialises their write transactions, so sequences are assigned in commit order and the relay never passes
a row that commits later under a smaller number. One relay per file runs at a time (see the relay).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.decision_log import (
    DEFAULT_MAX_REVISIONS,
    DecisionLog,
    TooManyRevisions,
    check_reward,
)
from banditgate.ledger.events import DECISION_FIELDS, encode_decision_json, encode_reward
from banditgate.ledger.models import Decision
from banditgate.ledger.records import DecisionRecord, RewardRecord, RewardResult, RewardStatus
from banditgate.ledger.reward_kinds import DEFAULT_REWARD_KINDS, RewardKind
from banditgate.ledger.types import UTCDateTime, utcnow
from banditgate.ledger.writer import BatchingWriter, WriterStopped

log = logging.getLogger(__name__)

#: Instance ids: what an event id starts with (``<instance>:<sequence>``).
INSTANCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

metadata = MetaData()
# The ledger's decisions table without its indexes: the gate's covering index serves window reads of the
# central ledger, and here would only slow every insert down.
decisions = Decision.__table__.to_metadata(metadata)
decisions.indexes.clear()
rewards = Table(
    "outbox_rewards",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", String(128), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("value", Float, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("observed_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)
events = Table(
    "outbox",
    metadata,
    Column("sequence", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", String(128), nullable=False),
    Column("reward_id", Integer, nullable=True),  # NULL: the event of the decision itself
    Column("created", Float, nullable=False, server_default=text("(julianday('now'))")),
    sqlite_autoincrement=True,  # a sequence is never reused, even after delivered rows are pruned
)
state = Table(
    "outbox_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(1024), nullable=False),
)
_DECISION_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS outbox_decision AFTER INSERT ON decisions
BEGIN
    INSERT INTO outbox (decision_id) VALUES (NEW.decision_id);
END
"""


class BacklogFull(WriterStopped):
    """The outbox holds ``outbox_max_backlog`` undelivered events: a new decision is refused (nothing logged)."""

    retry_after = 5


@dataclass(frozen=True, slots=True)
class OutboxState:
    """What the outbox holds and what the relay last saw of the broker.

    ``broker`` is ``"ok"``, ``"unreachable"`` or ``"unknown"`` (no relay has run yet); ``relay_errors``
    counts the relay's failed delivery attempts since the file was created.
    """

    instance: str
    last_sequence: int
    delivered_through: int
    broker: str
    broker_error: str
    relay_errors: int

    @property
    def backlog(self) -> int:
        """Events committed and not yet acknowledged by the broker."""
        return self.last_sequence - self.delivered_through


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event to publish: its sequence, whether it goes to the rewards topic, its key and value."""

    sequence: int
    reward: bool
    key: bytes
    value: bytes


class Outbox:
    """An open outbox file.

    Parameters
    ----------
    path
        The SQLite file (created with its folder if missing).
    instance_id
        This instance's id. ``None``: the id stored in the file, or, for a new file, one generated from the
        host name and a random suffix and stored. A file keeps the id it was created with; naming another
        one for it is refused (its events would change ids between deliveries).
    synchronous
        SQLite ``synchronous`` level (``FULL``: an acknowledged decision survives a power cut).
    """

    def __init__(self, path: Path, instance_id: str | None = None, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.engine: Engine = make_engine(f"sqlite:///{self.path}", sqlite_synchronous=synchronous)
        # The relay's marks are not fsynced: one lost in a power cut only means its events are sent again (at
        # least once), and an fsync per batch would compete with the decisions' own commits.
        self._marks: Engine = make_engine(f"sqlite:///{self.path}", sqlite_synchronous="NORMAL")
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        try:
            try:
                self.instance = self._create(instance_id)
            except OperationalError:
                # Another process (a worker of the same serve) created the schema between our check and ours.
                self.instance = self._create(instance_id)
        except BaseException:
            self.close()
            raise

    def _create(self, instance_id: str | None) -> str:
        with self.engine.begin() as connection:
            metadata.create_all(connection)
            connection.exec_driver_sql(_DECISION_TRIGGER)
            stored = connection.scalar(select(state.c.value).where(state.c.key == "instance"))
            if stored is None:
                stored = instance_id or f"{_host()}-{secrets.token_hex(3)}"
                # OR IGNORE, then read: processes opening a new file at once agree on the first id stored.
                connection.execute(insert(state).prefix_with("OR IGNORE"), [{"key": "instance", "value": stored}])
                stored = connection.scalar(select(state.c.value).where(state.c.key == "instance"))
            elif instance_id is not None and instance_id != stored:
                raise ValueError(
                    f"outbox {self.path} belongs to instance {stored!r}, not {instance_id!r}: use the id it was "
                    "created with, or another outbox_path for another instance"
                )
        return str(stored)

    def close(self) -> None:
        self.engine.dispose()
        self._marks.dispose()

    def state(self) -> OutboxState:
        with self.engine.connect() as connection:
            values = {row.key: row.value for row in connection.execute(select(state.c.key, state.c.value))}
            last = connection.scalar(select(func.coalesce(func.max(events.c.sequence), 0)))
        return OutboxState(
            instance=values["instance"],
            last_sequence=max(int(last or 0), int(values.get("delivered_through", 0))),
            delivered_through=int(values.get("delivered_through", 0)),
            broker=values.get("broker", "unknown"),
            broker_error=values.get("broker_error", ""),
            relay_errors=int(values.get("relay_errors", 0)),
        )

    def pending(self, limit: int, after: int | None = None) -> list[PendingEvent]:
        """The first ``limit`` events after sequence ``after`` (default: the last one the broker acknowledged),
        in order, encoded for the wire."""
        with self.engine.connect() as connection:
            delivered = after
            if delivered is None:
                delivered = int(connection.scalar(select(state.c.value).where(state.c.key == "delivered_through")) or 0)
            rows = connection.execute(
                select(events.c.sequence, events.c.decision_id, events.c.reward_id)
                .where(events.c.sequence > delivered)
                .order_by(events.c.sequence)
                .limit(limit)
            ).all()
            decision_ids = [row.decision_id for row in rows if row.reward_id is None]
            reward_ids = [row.reward_id for row in rows if row.reward_id is not None]
            found = _decision_json(connection, decision_ids)
            accepted = {row.id: row for row in connection.execute(select(rewards).where(rewards.c.id.in_(reward_ids)))}
        out: list[PendingEvent] = []
        for row in rows:
            event_id = f"{self.instance}:{row.sequence}"
            if row.reward_id is None:
                fields = found.get(row.decision_id)
                if fields is None:  # only a file edited by hand loses a row its event refers to
                    log.error("outbox event %s: decision %r is missing; not published", event_id, row.decision_id)
                    continue
                key, value = encode_decision_json(event_id, self.instance, row.decision_id, fields)
            else:
                reward = accepted.get(row.reward_id)
                if reward is None:
                    log.error("outbox event %s: reward %d is missing; not published", event_id, row.reward_id)
                    continue
                key, value = encode_reward(event_id, self.instance, reward)
            out.append(PendingEvent(row.sequence, row.reward_id is not None, key, value))
        return out

    def mark_delivered(self, sequence: int) -> None:
        """Record that the broker acknowledged every event up to ``sequence``."""
        self._set({"delivered_through": str(sequence), "broker": "ok", "broker_error": ""})

    def mark_unreachable(self, error: str) -> None:
        """Record a failed delivery attempt and why."""
        with self._marks.begin() as connection:
            errors = connection.scalar(select(state.c.value).where(state.c.key == "relay_errors"))
            _upsert(connection, {"broker": "unreachable", "broker_error": error[:1000]})
            _upsert(connection, {"relay_errors": str(int(errors or 0) + 1)})

    def _set(self, values: Mapping[str, str]) -> None:
        with self._marks.begin() as connection:
            _upsert(connection, values)

    def prune(self, retention: timedelta) -> int:
        """Delete delivered events older than ``retention``, with their decisions and rewards; return how many.

        A decision stays replayable on this instance for at least ``retention`` after it was logged.
        """
        with self.engine.begin() as connection:
            delivered = int(connection.scalar(select(state.c.value).where(state.c.key == "delivered_through")) or 0)
            cutoff = func.julianday("now") - retention.total_seconds() / 86_400.0
            old = select(events.c.sequence).where(events.c.sequence <= delivered, events.c.created < cutoff)
            old_events = events.c.sequence.in_(old)
            old_decisions = select(events.c.decision_id).where(old_events, events.c.reward_id.is_(None))
            connection.execute(delete(decisions).where(decisions.c.decision_id.in_(old_decisions)))
            connection.execute(delete(rewards).where(rewards.c.id.in_(select(events.c.reward_id).where(old_events))))
            return connection.execute(delete(events).where(old_events)).rowcount


#: Decision columns stored as JSON text, handed to the wire as they are.
_JSON_COLUMNS = frozenset(column.name for column in decisions.columns if isinstance(column.type, JSON))
_TIME_COLUMNS = frozenset(column.name for column in decisions.columns if isinstance(column.type, UTCDateTime))
_SELECT_DECISIONS = f"SELECT {', '.join(DECISION_FIELDS)} FROM decisions WHERE decision_id IN "


def _decision_json(connection: Connection, decision_ids: list[str]) -> dict[str, dict[str, bytes]]:
    """Each decision's fields as JSON text, read without parsing the JSON the writer stored (the relay's hot loop).

    Times are stored as ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC (``UTCDateTime`` on SQLite) and become ISO 8601.
    """
    found: dict[str, dict[str, bytes]] = {}
    for start in range(0, len(decision_ids), 500):
        chunk = decision_ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        cursor = connection.exec_driver_sql(f"{_SELECT_DECISIONS}({marks})", tuple(chunk))
        for values in cursor:
            fields: dict[str, bytes] = {}
            for name, value in zip(DECISION_FIELDS, values, strict=True):
                if name in _JSON_COLUMNS:
                    fields[name] = value.encode() if isinstance(value, str) else orjson.dumps(value)
                elif name in _TIME_COLUMNS:
                    fields[name] = b'"%sZ"' % value.replace(" ", "T").encode()
                else:
                    fields[name] = orjson.dumps(value)
            found[values[0]] = fields
    return found


def _upsert(connection: object, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        connection.execute(  # type: ignore[attr-defined]
            insert(state).prefix_with("OR REPLACE"), [{"key": key, "value": value}]
        )


def _host() -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return (name.strip("-._") or "instance")[:48]


class OutboxDecisionLog(DecisionLog):
    """The decision log of a serving instance with a Kafka transport: its outbox, read with the central ledger.

    Decisions and rewards are committed to the outbox (by ``writer``, a batching writer on the outbox file),
    each with its event in the same transaction, before the call returns. A reward for a decision this
    instance never logged is accepted as :attr:`~banditgate.ledger.records.RewardStatus.PENDING_JOIN`: another
    instance may have made it, and the joiner joins them. Reads (``GET /v1/decisions/{id}``) see the central
    ledger, where the joiners write every instance's events, and, for a decision not joined there yet, what
    this instance logged.

    Parameters
    ----------
    outbox
        The open outbox file.
    writer
        The batching writer of the outbox file.
    central
        Sessions on the central ledger (``database_url``).
    reward_kinds, max_revisions
        As for :class:`~banditgate.ledger.decision_log.DatabaseDecisionLog` (revisions are counted per instance;
        the central ledger numbers them again as the joiner applies them).
    max_backlog
        Undelivered events beyond which a new decision is refused with :class:`BacklogFull` (the decisions
        of one group commit are checked together, so the outbox may pass it by one batch).
    check_interval
        How often the backlog is read from the file, in seconds (other processes may log into it too).
    """

    def __init__(
        self,
        outbox: Outbox,
        writer: BatchingWriter,
        central: sessionmaker[Session],
        reward_kinds: Mapping[str, RewardKind] = DEFAULT_REWARD_KINDS,
        max_revisions: int = DEFAULT_MAX_REVISIONS,
        max_backlog: int = 1_000_000,
        check_interval: float = 0.25,
    ) -> None:
        self.outbox = outbox
        self._writer = writer
        self._central = central
        self.reward_kinds = reward_kinds
        self.max_revisions = max_revisions
        self.max_backlog = max_backlog
        self.check_interval = check_interval
        self.backlog = 0
        self._refusing = False
        self._checker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.backlog = self.outbox.state().backlog
        self._checker = asyncio.get_running_loop().create_task(self._check_backlog())

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker

    async def _check_backlog(self) -> None:
        # Several processes may log into the file and one of them relays: the count comes from the file.
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                self.backlog = self.outbox.state().backlog
            except Exception:
                log.exception("could not read the outbox backlog")
                continue
            if self._refusing and self.backlog < self.max_backlog:
                log.warning("outbox backlog down to %d: accepting new decisions again", self.backlog)
                self._refusing = False

    async def log_decision(self, record: DecisionRecord) -> DecisionRecord:
        if self.backlog >= self.max_backlog:
            # The count kept in memory may be ahead of the file (a refresh between a commit and its count): read it.
            self.backlog = self.outbox.state().backlog
        if self.backlog >= self.max_backlog:
            stored = self._local_decision(record.decision_id)
            if stored is not None:
                return stored  # a replay writes nothing
            if not self._refusing:
                log.error(
                    "outbox backlog %d reached outbox_max_backlog (%d): refusing new decisions with 503 until the "
                    "broker acknowledges events again",
                    self.backlog,
                    self.max_backlog,
                )
                self._refusing = True
            raise BacklogFull(
                f"the outbox holds {self.backlog} events the broker has not acknowledged (outbox_max_backlog = "
                f"{self.max_backlog}): new decisions are refused until it is reachable again; nothing was recorded"
            )
        stored = await self._writer.write_decision(record)
        if stored is record:
            self.backlog += 1
        return stored

    async def log_reward(
        self, decision_id: str, kind: str, value: float, observed_at: datetime, received_at: datetime | None = None
    ) -> RewardResult:
        check_reward(self.reward_kinds, kind, value)
        result = await self._writer.call(
            lambda s: record_outbox_reward(
                s, decision_id, kind, value, observed_at, received_at or utcnow(), self.max_revisions
            )
        )
        if result.status is not RewardStatus.DUPLICATE:
            self.backlog += 1
        return result

    def _local_decision(self, decision_id: str) -> DecisionRecord | None:
        with self.outbox.sessions() as session:
            row = session.execute(select(decisions).where(decisions.c.decision_id == decision_id)).first()
            return DecisionRecord.from_row(row) if row is not None else None

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        with self._central() as session:
            row = session.get(Decision, decision_id)
            if row is not None:
                return DecisionRecord.from_row(row)
        return self._local_decision(decision_id)

    def get_rewards(self, decision_id: str) -> list[RewardRecord]:
        from banditgate.ledger.models import Reward

        with self._central() as session:
            if session.get(Decision, decision_id) is not None:
                rows = session.scalars(
                    select(Reward).where(Reward.decision_id == decision_id).order_by(Reward.kind, Reward.revision)
                ).all()
                return [RewardRecord.from_row(row) for row in rows]
        with self.outbox.sessions() as session:
            found = session.execute(
                select(rewards).where(rewards.c.decision_id == decision_id).order_by(rewards.c.kind, rewards.c.id)
            ).all()
            return [RewardRecord.from_row(row) for row in found]


def record_outbox_reward(
    session: Session,
    decision_id: str,
    kind: str,
    value: float,
    observed_at: datetime,
    received_at: datetime,
    max_revisions: int = DEFAULT_MAX_REVISIONS,
) -> RewardResult:
    """Log a reward and its event in the caller's transaction on the outbox (the kind and value are checked).

    The same value as this instance's latest of the kind is a duplicate (nothing written); a different one is
    a revision. For a decision this instance did not log, the status is ``PENDING_JOIN`` unless it is a
    duplicate.
    """
    latest = session.execute(
        select(rewards)
        .where(rewards.c.decision_id == decision_id, rewards.c.kind == kind)
        .order_by(rewards.c.revision.desc())
        .limit(1)
    ).first()
    if latest is not None and latest.value == value:
        return RewardResult(RewardStatus.DUPLICATE, RewardRecord.from_row(latest))
    if latest is not None and latest.revision >= max_revisions:
        raise TooManyRevisions(
            f"reward: decision {decision_id!r} already has {latest.revision} revisions of its {kind} reward, the "
            f"most kept (max_reward_revisions = {max_revisions}); its latest value, {latest.value!r}, stands"
        )
    record = RewardRecord(
        decision_id=decision_id,
        kind=kind,
        value=value,
        revision=1 if latest is None else latest.revision + 1,
        observed_at=observed_at,
        received_at=received_at,
    )
    reward_id = session.execute(
        insert(rewards).returning(rewards.c.id),
        [
            {
                "decision_id": decision_id,
                "kind": kind,
                "value": value,
                "revision": record.revision,
                "observed_at": observed_at,
                "received_at": received_at,
            }
        ],
    ).scalar_one()
    session.execute(insert(events), [{"decision_id": decision_id, "reward_id": reward_id}])
    known = session.scalar(select(func.count()).where(decisions.c.decision_id == decision_id)) > 0
    if not known:
        status = RewardStatus.PENDING_JOIN
    else:
        status = RewardStatus.RECORDED if latest is None else RewardStatus.REVISED
    return RewardResult(status, record)


__all__ = [
    "BacklogFull",
    "Outbox",
    "OutboxDecisionLog",
    "OutboxState",
    "PendingEvent",
    "record_outbox_reward",
]
