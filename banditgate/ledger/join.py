"""Joining events into the ledger: what ``banditgate joiner`` writes, idempotently, one transaction per batch.

A joiner reads decision and reward events (:mod:`banditgate.ledger.events`) from Kafka, where delivery is
at least once, and writes them into the same tables the embedded service writes, so retraining, the
evaluation and the gate read them unchanged:

- a decision is inserted unless its ``decision_id`` is logged already (the first one logged wins, as in
  the embedded log);
- a reward is applied with the ledger's reward rules (:func:`~banditgate.ledger.decision_log.reward_revision`:
  a first value, a revision, or a duplicate value) exactly once per ``event_id``: every reward event read is
  kept in ``reward_events``, so a redelivered one is recognised and never becomes a second revision;
- a reward whose decision is not in the ledger yet is *held* in ``reward_events`` and joined when its
  decision is written; :meth:`JoinWriter.sweep` marks one held longer than the hold time *orphaned* (still
  joined should its decision come after all), so nothing read is ever dropped silently.

Each :meth:`JoinWriter.apply` is one transaction: the caller commits its consumer offsets only after it
returns, so a joiner that dies in between reads the batch again and the ``event_id`` bookkeeping turns the
second reading into duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, JSON, Connection, Engine, String, any_, cast, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from banditgate.ledger.db import json_dumps
from banditgate.ledger.decision_log import (
    DEFAULT_MAX_REVISIONS,
    InvalidReward,
    TooManyRevisions,
    check_reward,
    reward_revision,
)
from banditgate.ledger.events import DecisionEvent, RewardEvent
from banditgate.ledger.models import Decision, Reward, RewardEventRow, SkippedEvent
from banditgate.ledger.records import RewardRecord, RewardStatus
from banditgate.ledger.reward_kinds import DEFAULT_REWARD_KINDS, RewardKind
from banditgate.ledger.types import utcnow
from banditgate.ledger.writer import insert_ignoring_duplicates

log = logging.getLogger(__name__)

HELD = "held"
ORPHANED = "orphaned"
REFUSED = "refused"
#: The statuses of a reward event still waiting for its decision.
WAITING = (HELD, ORPHANED)
#: Most ids in one ``IN (...)`` list.
_CHUNK = 1000
#: Attempts at a batch that a concurrent joiner keeps conflicting with (only during a rebalance).
_ATTEMPTS = 5


class ConcurrentJoin(RuntimeError):
    """Another joiner settled one of this batch's waiting rewards first; the batch is rolled back and retried."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """An unreadable event an operator chose to skip: where it was and its raw bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass(slots=True)
class JoinCounts:
    """What one batch did.

    Attributes
    ----------
    decisions_new, decisions_duplicate
        Decision events written, and those whose ``decision_id`` was logged already (redeliveries).
    rewards
        Reward events by what became of them: ``recorded``, ``revised``, ``duplicate`` (same value as the
        latest revision), ``refused``, ``held``, and ``redelivered`` (its ``event_id`` was read before).
    joined
        Held or orphaned rewards applied because their decision arrived.
    skipped
        Unreadable events kept in ``skipped_events`` on an operator's request.
    """

    decisions_new: int = 0
    decisions_duplicate: int = 0
    rewards: dict[str, int] = field(default_factory=dict)
    joined: int = 0
    skipped: int = 0

    def count(self, status: str, n: int = 1) -> None:
        self.rewards[status] = self.rewards.get(status, 0) + n


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did: rewards joined late, rewards newly orphaned (their event ids), and what still waits."""

    joined: int
    orphaned: list[str]
    held_now: int
    orphaned_now: int


@dataclass(slots=True)
class _Waiting:
    """A reward to apply now: a new event, or a held one (``row_id`` set) whose decision arrived."""

    event_id: str
    instance: str
    decision_id: str
    kind: str
    value: float
    observed_at: datetime
    received_at: datetime
    row_id: int | None = None
    previous_status: str | None = None


class JoinWriter:
    """Writes batches of events into the ledger, idempotently.

    Parameters
    ----------
    engine
        The ledger database (SQLite or PostgreSQL).
    reward_kinds
        The reward kinds accepted, as by the serving instances; a reward of another kind is refused and kept
        as ``refused`` in ``reward_events``.
    max_revisions
        Most revisions kept per decision and reward kind.
    """

    def __init__(
        self,
        engine: Engine,
        reward_kinds: Mapping[str, RewardKind] = DEFAULT_REWARD_KINDS,
        max_revisions: int = DEFAULT_MAX_REVISIONS,
    ) -> None:
        self.engine = engine
        self.reward_kinds = reward_kinds
        self.max_revisions = max_revisions
        self._insert = _CopiedDecisions() if engine.dialect.name == "postgresql" else insert_ignoring_duplicates(engine)

    def apply(
        self,
        decisions: Sequence[DecisionEvent],
        rewards: Sequence[RewardEvent],
        skipped: Sequence[Skipped] = (),
        now: datetime | None = None,
    ) -> JoinCounts:
        """Write one batch in one transaction and commit it; decisions first, then rewards in the given order.

        A batch that conflicts with another joiner (possible only while partitions move between joiners) is
        rolled back and applied again; the second time it finds what the other joiner wrote.
        """
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self.engine.begin() as connection:
                    return self._apply(connection, decisions, rewards, skipped, now or utcnow())
            except (IntegrityError, ConcurrentJoin) as exc:
                if attempt == _ATTEMPTS:
                    raise
                log.warning(
                    "join batch attempt %d/%d conflicted with another writer (%s); retrying", attempt, _ATTEMPTS, exc
                )
        raise AssertionError("unreachable")

    def sweep(self, hold: timedelta, now: datetime | None = None, limit: int = 10_000) -> SweepResult:
        """Join held rewards whose decisions are in the ledger now (one written by another joiner meanwhile),
        then mark those held longer than ``hold`` orphaned; one transaction."""
        now = now or utcnow()
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self.engine.begin() as connection:
                    return self._sweep(connection, hold, now, limit)
            except (IntegrityError, ConcurrentJoin) as exc:
                if attempt == _ATTEMPTS:
                    raise
                log.warning(
                    "sweep attempt %d/%d conflicted with another writer (%s); retrying", attempt, _ATTEMPTS, exc
                )
        raise AssertionError("unreachable")

    def waiting(self) -> tuple[int, int]:
        """How many rewards are held and how many orphaned, now."""
        with self.engine.connect() as connection:
            return _waiting_counts(connection)

    # -- inside one transaction ------------------------------------------------------------------------------

    def _apply(
        self,
        connection: Connection,
        decisions: Sequence[DecisionEvent],
        rewards: Sequence[RewardEvent],
        skipped: Sequence[Skipped],
        now: datetime,
    ) -> JoinCounts:
        counts = JoinCounts()
        records: dict[str, dict[str, Any]] = {}
        for event in decisions:
            records.setdefault(event.decision_id, event.decision.row())  # the first of a repeated id wins
        inserted = self._insert.run_rows(connection, list(records.values())) if records else 0
        counts.decisions_new = inserted
        counts.decisions_duplicate = len(decisions) - inserted

        fresh: dict[str, RewardEvent] = {}
        for event in rewards:
            if event.event_id in fresh:
                counts.count("redelivered")
            else:
                fresh[event.event_id] = event
        seen = set(_chunked_scalars(connection, RewardEventRow.event_id, RewardEventRow.event_id, list(fresh)))
        if seen:
            counts.count("redelivered", len(seen))
        new = [event for event_id, event in fresh.items() if event_id not in seen]

        touched = set(records) | {event.decision_id for event in new}
        waiting = self._waiting_for(connection, touched)
        queue = waiting + [_from_event(event) for event in new]
        self._settle(connection, queue, counts, now)
        if skipped:
            connection.execute(
                insert(SkippedEvent.__table__),
                [
                    {
                        "topic": s.topic,
                        "partition": s.partition,
                        "offset": s.offset,
                        "key": s.key,
                        "value": s.value,
                        "reason": s.reason,
                        "skipped_at": now,
                    }
                    for s in skipped
                ],
            )
            counts.skipped = len(skipped)
        return counts

    def _sweep(self, connection: Connection, hold: timedelta, now: datetime, limit: int) -> SweepResult:
        held = (
            connection.execute(
                select(RewardEventRow.decision_id)
                .where(RewardEventRow.status == HELD)
                .order_by(RewardEventRow.id)
                .limit(limit)
            )
            .scalars()
            .all()
        )
        counts = JoinCounts()
        arrived = set(_chunked_scalars(connection, Decision.decision_id, Decision.decision_id, sorted(set(held))))
        if arrived:
            self._settle(connection, self._waiting_for(connection, arrived), counts, now)
        overdue = connection.execute(
            select(RewardEventRow.id, RewardEventRow.event_id, RewardEventRow.decision_id)
            .where(RewardEventRow.status == HELD, RewardEventRow.arrived_at < now - hold)
            .order_by(RewardEventRow.id)
            .limit(limit)
        ).all()
        for row in overdue:
            connection.execute(
                update(RewardEventRow.__table__)
                .where(RewardEventRow.id == row.id, RewardEventRow.status == HELD)
                .values(
                    status=ORPHANED,
                    settled_at=now,
                    detail=f"decision {row.decision_id!r} had not arrived after {hold.total_seconds():g} s",
                )
            )
        held_now, orphaned_now = _waiting_counts(connection)
        return SweepResult(counts.joined, [row.event_id for row in overdue], held_now, orphaned_now)

    def _waiting_for(self, connection: Connection, decision_ids: Iterable[str]) -> list[_Waiting]:
        """The held and orphaned rewards of these decisions, in the order they were read."""
        ids = sorted(set(decision_ids))
        rows: list[Any] = []
        for chunk in _chunks(connection, ids):
            rows += connection.execute(
                select(RewardEventRow.__table__).where(
                    RewardEventRow.status.in_(WAITING), _among(connection, RewardEventRow.decision_id, chunk)
                )
            ).all()
        rows.sort(key=lambda row: row.id)
        return [
            _Waiting(
                event_id=row.event_id,
                instance=row.instance,
                decision_id=row.decision_id,
                kind=row.kind,
                value=row.value,
                observed_at=row.observed_at,
                received_at=row.received_at,
                row_id=row.id,
                previous_status=row.status,
            )
            for row in rows
        ]

    def _settle(self, connection: Connection, queue: list[_Waiting], counts: JoinCounts, now: datetime) -> None:
        """Apply the rewards of ``queue`` in order whose decisions are logged; hold the others."""
        ids = sorted({reward.decision_id for reward in queue})
        logged = set(_chunked_scalars(connection, Decision.decision_id, Decision.decision_id, ids))
        latest = self._latest(connection, [i for i in ids if i in logged])
        new_rewards: list[dict[str, Any]] = []
        new_events: list[dict[str, Any]] = []
        for reward in queue:
            if reward.decision_id not in logged:
                if reward.row_id is None:
                    new_events.append(_event_row(reward, HELD, "", now, settled=False))
                    counts.count(HELD)
                continue  # a waiting one keeps waiting
            status, detail = self._rule(reward, latest)
            if status in (RewardStatus.RECORDED, RewardStatus.REVISED):
                revision = latest[(reward.decision_id, reward.kind)].revision
                new_rewards.append(
                    {
                        "decision_id": reward.decision_id,
                        "kind": reward.kind,
                        "value": reward.value,
                        "revision": revision,
                        "observed_at": reward.observed_at,
                        "received_at": reward.received_at,
                    }
                )
            if reward.row_id is None:
                new_events.append(_event_row(reward, status, detail, now, settled=True))
            else:
                claimed = connection.execute(
                    update(RewardEventRow.__table__)
                    .where(RewardEventRow.id == reward.row_id, RewardEventRow.status == reward.previous_status)
                    .values(status=status, detail=detail, settled_at=now)
                ).rowcount
                if claimed != 1:
                    raise ConcurrentJoin(f"reward event {reward.event_id!r} was settled by another joiner")
                counts.joined += 1
                if reward.previous_status == ORPHANED:
                    log.info("orphaned reward %s joined its decision %s late", reward.event_id, reward.decision_id)
            counts.count(status)
        _insert_rows(connection, Reward.__table__, new_rewards)
        _insert_rows(connection, RewardEventRow.__table__, new_events)

    def _rule(self, reward: _Waiting, latest: dict[tuple[str, str], RewardRecord]) -> tuple[str, str]:
        """The reward rules for one reward; updates ``latest`` with the revision it makes."""
        key = (reward.decision_id, reward.kind)
        try:
            check_reward(self.reward_kinds, reward.kind, reward.value)
            status, revision = reward_revision(
                reward.decision_id, reward.kind, reward.value, latest.get(key), self.max_revisions
            )
        except (InvalidReward, TooManyRevisions) as exc:
            log.warning("reward event %s refused: %s", reward.event_id, exc)
            return REFUSED, str(exc)
        if status is not RewardStatus.DUPLICATE:
            latest[key] = RewardRecord(
                reward.decision_id, reward.kind, reward.value, revision, reward.observed_at, reward.received_at
            )
        return status.value, ""

    @staticmethod
    def _latest(connection: Connection, decision_ids: list[str]) -> dict[tuple[str, str], RewardRecord]:
        latest: dict[tuple[str, str], RewardRecord] = {}
        for chunk in _chunks(connection, decision_ids):
            rows = connection.execute(select(Reward.__table__).where(_among(connection, Reward.decision_id, chunk)))
            for row in rows:
                key = (row.decision_id, row.kind)
                if key not in latest or row.revision > latest[key].revision:
                    latest[key] = RewardRecord.from_row(row)
        return latest


class _CopiedDecisions:
    """Decisions into PostgreSQL by ``COPY`` into a temporary table, then one ``INSERT .. SELECT .. ON CONFLICT
    (decision_id) DO NOTHING``; ``run_rows`` returns how many were new.

    The serving writer's insert (:func:`~banditgate.ledger.writer.insert_ignoring_duplicates`) sends a batch as
    one JSON parameter; for a joiner's batches of thousands of large decisions, the server then spent most of
    its time building one JSONB document of the whole batch and copying each row's documents out of it. With
    ``COPY`` each JSON column is parsed once, straight into its row: about 75-80 us of the server's CPU per
    decision of the joiner benchmark's workload instead of 100-130. JSON values are written by ``json_dumps``
    (like the JSON columns: no NaN).
    """

    def __init__(self) -> None:
        table = Decision.__table__
        self.columns = [column.name for column in table.columns]
        self.json = {column.name for column in table.columns if isinstance(column.type, JSON)}
        names = ", ".join(self.columns)
        # One per connection, kept (the pool reuses connections); emptied in the transaction that filled it.
        self.create = "CREATE TEMPORARY TABLE IF NOT EXISTS joined_decisions (LIKE decisions)"
        self.copy = f"COPY joined_decisions ({names}) FROM STDIN"
        self.insert = (
            f"INSERT INTO decisions ({names}) SELECT {names} FROM joined_decisions ON CONFLICT (decision_id) DO NOTHING"
        )
        self.clear = "DELETE FROM joined_decisions"

    def run_rows(self, connection: Connection, rows: list[dict[str, Any]]) -> int:
        logged_at = utcnow()
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.create)
            with cursor.copy(self.copy) as copy:
                for row in rows:
                    row["logged_at"] = logged_at
                    copy.write_row([json_dumps(row[name]) if name in self.json else row[name] for name in self.columns])
            inserted = cursor.execute(self.insert).rowcount
            cursor.execute(self.clear)
        finally:
            cursor.close()
        return inserted


def _from_event(event: RewardEvent) -> _Waiting:
    reward = event.reward
    return _Waiting(
        event_id=event.event_id,
        instance=event.instance,
        decision_id=reward.decision_id,
        kind=reward.kind,
        value=reward.value,
        observed_at=reward.observed_at.astimezone(UTC),
        received_at=reward.received_at.astimezone(UTC),
    )


def _event_row(reward: _Waiting, status: str, detail: str, now: datetime, settled: bool) -> dict[str, Any]:
    return {
        "event_id": reward.event_id,
        "instance": reward.instance,
        "decision_id": reward.decision_id,
        "kind": reward.kind,
        "value": reward.value,
        "observed_at": reward.observed_at,
        "received_at": reward.received_at,
        "status": status,
        "detail": detail,
        "arrived_at": now,
        "settled_at": now if settled else None,
    }


def _chunked_scalars(connection: Connection, column: Any, key: Any, values: list[str]) -> list[Any]:
    """``SELECT column WHERE key IN values``, in chunks."""
    found: list[Any] = []
    for chunk in _chunks(connection, values):
        found += connection.execute(select(column).where(_among(connection, key, chunk))).scalars().all()
    return found


def _chunks(connection: Connection, values: list[str]) -> Iterable[list[str]]:
    # PostgreSQL takes a whole batch as one array parameter; SQLite takes an IN list of at most _CHUNK.
    size = (len(values) or 1) if connection.dialect.name == "postgresql" else _CHUNK
    return (values[start : start + size] for start in range(0, len(values), size))


def _among(connection: Connection, column: Any, values: list[str]) -> Any:
    """``column IN values``: on PostgreSQL ``= ANY(array)``, one parameter instead of one per value (the
    driver's handling of a thousand placeholders cost more than the query)."""
    if connection.dialect.name == "postgresql":
        return column == any_(cast(values, ARRAY(String)))
    return column.in_(values)


def _insert_rows(connection: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys): on PostgreSQL as one JSON parameter the server unpacks
    (like the decisions of :func:`~banditgate.ledger.writer.insert_ignoring_duplicates`), else executemany."""
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), rows)
        return
    names = ", ".join(rows[0])
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM jsonb_populate_recordset(NULL::{table.name}, "
        "%(rows)s::jsonb)",
        {"rows": json_dumps(rows)},
    )


def _waiting_counts(connection: Connection) -> tuple[int, int]:
    counts = dict(
        connection.execute(
            select(RewardEventRow.status, func.count())
            .where(RewardEventRow.status.in_(WAITING))
            .group_by(RewardEventRow.status)
        ).all()
    )
    return counts.get(HELD, 0), counts.get(ORPHANED, 0)
