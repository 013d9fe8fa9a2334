from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.models import Decision
from banditgate.ledger.records import DecisionRecord
from banditgate.ledger.writer import BatchingWriter, WriterStopped
from tests.ledger.conftest import make_record


def count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Decision))


def test_record_round_trips_exactly(writer: BatchingWriter, sessions: sessionmaker[Session], loop) -> None:
    record = make_record("tx-1", probabilities=[0.1 + 0.2, 1 - (0.1 + 0.2)], propensity=1 - (0.1 + 0.2))
    assert loop.run_until_complete(writer.write_decision(record)) is record
    with sessions() as session:
        stored = DecisionRecord.from_row(session.get(Decision, "tx-1"))
    assert stored == record


def test_concurrent_decisions_are_group_committed(
    writer: BatchingWriter, sessions: sessionmaker[Session], loop
) -> None:
    async def burst() -> list[DecisionRecord]:
        return await asyncio.gather(*(writer.write_decision(make_record(f"tx-{i}")) for i in range(500)))

    results = loop.run_until_complete(burst())
    assert [r.decision_id for r in results] == [f"tx-{i}" for i in range(500)]
    assert count(sessions) == 500
    assert writer.batches_committed < 500, "concurrent writes should share transactions"


def test_duplicate_ids_write_once_and_return_the_stored_record(
    writer: BatchingWriter, sessions: sessionmaker[Session], loop
) -> None:
    first = make_record("dup", action_id="a", propensity=0.1)
    loop.run_until_complete(writer.write_decision(first))

    async def replay() -> list[DecisionRecord]:
        # The same id twice in one batch, and again after it was committed.
        return await asyncio.gather(
            writer.write_decision(make_record("dup")),
            writer.write_decision(make_record("dup-new")),
            writer.write_decision(make_record("dup-new", action_id="a")),
        )

    again, new, new_again = loop.run_until_complete(replay())
    assert again == first
    assert new_again == new
    assert count(sessions) == 2


def test_call_runs_in_a_transaction_and_propagates_errors(writer: BatchingWriter, loop) -> None:
    def boom(session: Session) -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        loop.run_until_complete(writer.call(boom))
    assert loop.run_until_complete(writer.call(lambda s: 42)) == 42


def test_a_stopped_writer_refuses_work(sessions: sessionmaker[Session]) -> None:
    writer = BatchingWriter(sessions)
    with pytest.raises(WriterStopped):
        asyncio.run(writer.write_decision(make_record("x")))


def test_stop_flushes_what_is_queued(sessions: sessionmaker[Session], writer: BatchingWriter, loop) -> None:
    """Work submitted from another thread is written before stop() returns."""
    futures = [writer.submit(lambda s, i=i: s.add(Decision(**make_record(f"q-{i}").as_row()))) for i in range(50)]
    loop.run_until_complete(asyncio.sleep(0))  # let the thread-safe submissions reach the queue
    loop.run_until_complete(writer.stop())
    assert all(f.result(timeout=10) is None for f in futures)
    assert count(sessions) == 50
