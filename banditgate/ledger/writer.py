"""One batching writer thread per process: group commit for decisions, serialised writes for the rest.

Async request handlers hand their rows to the writer and await the commit. Under load the writer takes
everything queued since its last commit into one transaction, so one fsync serves many decisions: the
response still waits for its own row to be durable, and SQLite never sees two writers from one process
contending for its lock.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.models import Decision
from banditgate.ledger.records import DecisionRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRIES = 3


@dataclass(slots=True)
class _DecisionJob:
    record: DecisionRecord
    future: Future[DecisionRecord]


@dataclass(slots=True)
class _CallJob:
    fn: Callable[[Session], Any]
    future: Future[Any]


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
    """

    def __init__(self, sessions: sessionmaker[Session], max_batch: int = 512) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._queue: queue.Queue[_DecisionJob | _CallJob | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.batches_committed = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="banditgate-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write everything already queued, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    async def write_decision(self, record: DecisionRecord) -> DecisionRecord:
        """Make ``record`` durable; if its ``decision_id`` was logged before, return the stored record."""
        future: Future[DecisionRecord] = Future()
        self._submit(_DecisionJob(record, future))
        return await asyncio.wrap_future(future)

    async def call(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in its own transaction on the writer thread; commit if it returns."""
        return await asyncio.wrap_future(self.submit(fn))

    def submit(self, fn: Callable[[Session], T]) -> Future[T]:
        future: Future[T] = Future()
        self._submit(_CallJob(fn, future))
        return future

    def _submit(self, job: _DecisionJob | _CallJob) -> None:
        if self._thread is None:
            raise WriterStopped("the ledger writer is not running")
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs: list[_DecisionJob | _CallJob] = [first]
            stopping = False
            while len(jobs) < self._max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            decisions = [j for j in jobs if isinstance(j, _DecisionJob)]
            if decisions:
                self._commit_decisions(decisions)
            for job in jobs:
                if isinstance(job, _CallJob):
                    self._run_call(job)
            if stopping:
                return

    def _commit_decisions(self, jobs: list[_DecisionJob]) -> None:
        for attempt in range(1, _RETRIES + 1):
            try:
                stored = self._insert_new(jobs)
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
                        self._commit_decisions([job])
                    return
                log.exception("decision %s could not be logged", jobs[0].record.decision_id)
                _fail(jobs, exc)
                return
            else:
                self.batches_committed += 1
                for job in jobs:
                    job.future.set_result(stored[job.record.decision_id])
                return

    def _insert_new(self, jobs: list[_DecisionJob]) -> dict[str, DecisionRecord]:
        ids = list({job.record.decision_id for job in jobs})
        with self._sessions() as session, session.begin():
            existing = session.scalars(select(Decision).where(Decision.decision_id.in_(ids))).all()
            stored = {row.decision_id: DecisionRecord.from_row(row) for row in existing}
            new: list[DecisionRecord] = []
            for job in jobs:
                if job.record.decision_id not in stored:
                    stored[job.record.decision_id] = job.record
                    new.append(job.record)
            if new:
                session.execute(Decision.__table__.insert(), [record.as_row() for record in new])
        return stored

    def _run_call(self, job: _CallJob) -> None:
        try:
            with self._sessions() as session, session.begin():
                result = job.fn(session)
        except Exception as exc:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)


def _fail(jobs: list[_DecisionJob], exc: BaseException) -> None:
    for job in jobs:
        job.future.set_exception(exc)
