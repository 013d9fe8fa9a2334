"""One batching writer per process: group commit for decisions, short serialised transactions for the rest.

Async request handlers hand their rows to the writer and await the commit. The writer works on the event
loop itself: everything queued while the loop handled one round of ready sockets goes into one transaction
right after, so one fsync serves many decisions and each response still waits for its own row to be
durable. The statements run on the loop: a writer thread would have to win the GIL back from a busy loop
after every database call, which measured three times slower under load. Only the COMMIT itself, which is
an fsync (SQLite) or a round trip (PostgreSQL) and releases the GIL, waits on a thread of its own, so the
loop goes on parsing and deciding the next requests meanwhile; they form the next batch. One transaction
is in flight at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

from sqlalchemy import JSON, Connection, Engine, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.db import json_dumps
from banditgate.ledger.models import Decision
from banditgate.ledger.records import DecisionRecord
from banditgate.ledger.types import UTCDateTime, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRIES = 3


@dataclass(slots=True)
class _DecisionJob:
    record: DecisionRecord
    future: asyncio.Future[DecisionRecord]


@dataclass(slots=True)
class _CallJob:
    fn: Callable[[Session], Any]
    future: asyncio.Future[Any] | Future[Any]


class WriterStopped(RuntimeError):
    """The writer is not running, so nothing can be made durable: the request must not be acknowledged."""


class BatchingWriter:
    """Owns all writes of a process to the ledger.

    Parameters
    ----------
    sessions
        Session factory of the ledger database.
    max_batch
        Most decisions committed in one transaction.
    commit_interval
        Least time between two commits, in seconds (like PostgreSQL's ``commit_delay``): under load, the
        decisions arriving meanwhile share the next commit instead of each paying a commit of its own. An
        idle writer commits at once.
    """

    def __init__(self, sessions: sessionmaker[Session], max_batch: int = 512, commit_interval: float = 0.001) -> None:
        self._sessions = sessions
        self._engine: Engine = sessions.kw["bind"]
        self._insert = insert_ignoring_duplicates(self._engine)
        self._max_batch = max_batch
        self._commit_interval = commit_interval
        self._last_flush = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._decisions: list[_DecisionJob] = []
        self._calls: list[_CallJob] = []
        self._scheduled = False
        self._flushing: asyncio.Task[None] | None = None
        self.batches_committed = 0

    def start(self) -> None:
        """Attach to the running event loop; call from inside it."""
        self._loop = asyncio.get_running_loop()
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-commit")

    async def stop(self) -> None:
        """Write everything already queued, then refuse new work."""
        if self._loop is None:
            return
        while self._flushing is not None or self._decisions or self._calls:
            if self._flushing is None:
                self._start_flush()
            if self._flushing is not None:
                await asyncio.shield(self._flushing)
        self._loop = None
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None

    async def write_decision(self, record: DecisionRecord) -> DecisionRecord:
        """Make ``record`` durable; if its ``decision_id`` was logged before, return the stored record."""
        loop = self._running_loop()
        job = _DecisionJob(record, loop.create_future())
        self._decisions.append(job)
        self._schedule()
        return await job.future

    async def call(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in its own transaction; commit if it returns."""
        loop = self._running_loop()
        job = _CallJob(fn, loop.create_future())
        self._calls.append(job)
        self._schedule()
        return await job.future

    def submit(self, fn: Callable[[Session], T]) -> Future[T]:
        """Like :meth:`call`, from any thread (command-line tools, tests): returns a concurrent future."""
        loop = self._loop
        if loop is None:
            raise WriterStopped("the ledger writer is not running")
        future: Future[T] = Future()

        def enqueue() -> None:
            self._calls.append(_CallJob(fn, future))
            self._schedule()

        loop.call_soon_threadsafe(enqueue)
        return future

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise WriterStopped("the ledger writer is not running")
        return self._loop

    def _schedule(self) -> None:
        # call_soon runs after the callbacks already ready, so every request parsed in this round joins the
        # batch; right after a commit, wait out the commit interval so that the next batch fills up.
        if self._scheduled or self._loop is None:
            return
        self._scheduled = True
        wait = self._last_flush + self._commit_interval - self._loop.time()
        if wait > 0:
            self._loop.call_later(wait, self._start_flush)
        else:
            self._loop.call_soon(self._start_flush)

    def _start_flush(self) -> None:
        if self._flushing is None and self._loop is not None:
            self._flushing = self._loop.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            if self._loop is not None:
                self._last_flush = self._loop.time()
            decisions, self._decisions = self._decisions[: self._max_batch], self._decisions[self._max_batch :]
            calls, self._calls = self._calls, []
            if decisions:
                await self._commit_decisions(decisions)
            for job in calls:
                await self._run_call(job)
        finally:
            self._flushing = None
            self._scheduled = False
            if self._decisions or self._calls:
                self._schedule()

    async def _commit(self, commit: Callable[[], None]) -> None:
        """Run ``commit`` on the commit thread; the loop serves other requests meanwhile."""
        loop, committer = self._loop, self._committer
        if loop is None or committer is None:
            commit()
        else:
            await loop.run_in_executor(committer, commit)

    async def _commit_decisions(self, jobs: list[_DecisionJob]) -> None:
        for attempt in range(1, _RETRIES + 1):
            try:
                stored = await self._insert_new(jobs)
            except (IntegrityError, OperationalError) as exc:
                # Another process logged one of these ids between our read and our insert, or SQLite stayed
                # locked past its busy timeout: read again and retry.
                log.warning("decision batch attempt %d/%d failed: %s", attempt, _RETRIES, exc)
                if attempt == _RETRIES:
                    _fail(jobs, exc)
                    return
            except Exception as exc:
                if len(jobs) > 1:
                    # One row the database refuses must not fail the others of its batch: write them one by one.
                    log.warning("decision batch of %d failed (%s); writing its rows one by one", len(jobs), exc)
                    for job in jobs:
                        await self._commit_decisions([job])
                    return
                log.exception("decision %s could not be logged", jobs[0].record.decision_id)
                _fail(jobs, exc)
                return
            else:
                self.batches_committed += 1
                for job in jobs:
                    if not job.future.done():
                        job.future.set_result(stored[job.record.decision_id])
                return

    async def _insert_new(self, jobs: list[_DecisionJob]) -> dict[str, DecisionRecord]:
        """Insert the batch in one statement; ids already in the log keep their stored record.

        ``INSERT ... ON CONFLICT DO NOTHING`` tells how many rows were new (SQLite: the driver's row count;
        PostgreSQL: ``RETURNING decision_id``), so the common case (no duplicates) costs one statement and one
        commit per batch; only a batch with a repeated id reads the stored records back.
        """
        stored: dict[str, DecisionRecord] = {}
        for job in jobs:
            stored.setdefault(job.record.decision_id, job.record)  # the first of a repeated id wins
        with self._engine.connect() as connection:
            transaction = connection.begin()
            try:
                inserted = self._insert.run(connection, list(stored.values()))
                if inserted < len(stored):
                    # Some ids were logged before: their stored records win (identical ones included, harmlessly).
                    found = connection.execute(select(Decision.__table__).where(Decision.decision_id.in_(list(stored))))
                    for row in found:
                        logged = DecisionRecord.from_row(row)
                        if logged != stored[row.decision_id]:
                            stored[row.decision_id] = logged
                await self._commit(transaction.commit)
            except BaseException:
                if transaction.is_active:
                    transaction.rollback()
                raise
        return stored

    async def _run_call(self, job: _CallJob) -> None:
        try:
            with self._sessions() as session:
                session.begin()
                try:
                    result = job.fn(session)
                    session.flush()
                    await self._commit(session.commit)
                except BaseException:
                    session.rollback()
                    raise
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
        else:
            if not job.future.done():
                job.future.set_result(result)


def insert_ignoring_duplicates(engine: Engine) -> _DecisionInsert:
    """The batch insert of decisions for ``engine``'s dialect that skips ids already logged; its ``run(connection,
    records)`` returns how many rows were new (the batching writer and the joiner share it)."""
    if engine.dialect.name == "sqlite":
        return _SQLiteInsert()
    if engine.dialect.name == "postgresql":
        return _PostgreSQLInsert()
    raise ValueError(f"unsupported database {engine.dialect.name!r}: use SQLite or PostgreSQL")


class _DecisionInsert:
    """A dialect's batch insert of decisions that skips ids already logged (see :func:`insert_ignoring_duplicates`)."""

    def run(self, connection: Connection, records: list[DecisionRecord]) -> int:
        """Insert ``records``; how many were new."""
        return self.run_rows(connection, [record.as_row() for record in records])

    def run_rows(self, connection: Connection, rows: list[dict[str, Any]]) -> int:
        """Like ``run``, from the records' :meth:`~banditgate.ledger.records.DecisionRecord.as_row` dicts (the
        joiner has them without building the records); adds ``logged_at`` to each."""
        raise NotImplementedError


class _PostgreSQLInsert(_DecisionInsert):
    """One ``INSERT .. SELECT FROM jsonb_populate_recordset(..) ON CONFLICT DO NOTHING`` per batch; ``run`` returns
    how many were new.

    The whole batch travels as one JSON parameter that the server unpacks into rows: a multi-row ``VALUES``
    statement with a dozen parameters per decision cost more in the driver's and SQLAlchemy's parameter
    handling (about 0.3 ms per decision) than the server takes to store it. JSON values go in as written by
    ``json_dumps`` (like the JSON columns: no NaN), times as RFC 3339 with their offset.
    """

    def __init__(self) -> None:
        table = Decision.__table__
        self.columns = [column.name for column in table.columns]
        names = ", ".join(self.columns)
        self.sql = (
            f"INSERT INTO decisions ({names}) SELECT {names} FROM jsonb_populate_recordset(NULL::decisions, "
            "%(rows)s::jsonb) ON CONFLICT (decision_id) DO NOTHING"
        )

    def run_rows(self, connection: Connection, rows: list[dict[str, Any]]) -> int:
        logged_at = utcnow()
        for row in rows:
            row["logged_at"] = logged_at
        return connection.exec_driver_sql(self.sql, {"rows": json_dumps(rows)}).rowcount


class _SQLiteInsert(_DecisionInsert):
    """``INSERT .. ON CONFLICT DO NOTHING`` of a batch through the driver's ``executemany``.

    SQLAlchemy's bulk insert with RETURNING costs about 75 us per decision in bind processing, more than
    SQLite takes to store it (about 30 us): the rows are converted here once, to exactly what SQLAlchemy
    stores (JSON text from ``json_dumps``, the serializer ``make_engine`` gives every engine; UTC timestamps
    in its ``YYYY-MM-DD HH:MM:SS.ffffff`` form), and ``run`` returns how many were new.
    """

    def __init__(self) -> None:
        table = Decision.__table__
        self.columns = [column.name for column in table.columns]
        self.json = {column.name for column in table.columns if isinstance(column.type, JSON)}
        self.times = {column.name for column in table.columns if isinstance(column.type, UTCDateTime)}
        names = ", ".join(self.columns)
        marks = ", ".join("?" for _ in self.columns)
        self.sql = f"INSERT INTO decisions ({names}) VALUES ({marks}) ON CONFLICT (decision_id) DO NOTHING"

    def run_rows(self, connection: Connection, rows: list[dict[str, Any]]) -> int:
        logged_at = utcnow()
        values = []
        for row in rows:
            row["logged_at"] = logged_at
            values.append(tuple(self._value(name, row[name]) for name in self.columns))
        return connection.exec_driver_sql(self.sql, values).rowcount

    def _value(self, name: str, value: Any) -> Any:
        if name in self.json:
            return json_dumps(value)
        if name in self.times:
            return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"
        return value


def _fail(jobs: list[_DecisionJob], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)
