"""``banditgate joiner``: consume the decision and reward topics and land them in the central ledger.

Several joiners may run in one Kafka consumer group; each gets a share of the partitions. A decision and
its rewards share a key (the ``decision_id``), so with both topics partitioned alike they reach the same
joiner in the order they were published. Every poll batch is written in one database transaction
(:class:`~banditgate.ledger.join.JoinWriter`), and its offsets are committed only after that commit: a joiner
that dies in between reads the batch again, and the ledger recognises what it already holds.

Two threads share the work, so that decoding and the database's writing overlap instead of adding up:

- the *consumer thread* (the caller of :meth:`Joiner.run`) is the only one that touches the Kafka consumer,
  which is not thread-safe: it polls, decodes a batch, hands it to the writer thread and polls again; it
  commits a batch's offsets once the writer reports the batch's database commit, batches in the order they
  were read;
- the *writer thread* writes the batches (and the sweeps of held rewards) one at a time, in order.

At most two jobs are handed over and not yet settled (one being written, one waiting), so the database always
has the next batch ready and memory stays bounded. Before the joiner stops, at an unreadable event or on
request, it waits for the writer to finish every batch handed over and commits their offsets; a failed write
commits nothing from that batch on, and the joiner stops with its error. In a rebalance, kafka-python's
listener (on kafka-python's own IO thread, where the consumer cannot be used) waits for the writer to finish
the batches in hand, so that two joiners do not write the same partitions at once; their offsets are
committed after the poll, and should the partitions have moved meanwhile, the joiner that takes them over
reads those batches again and the ledger recognises them.

An event the joiner cannot read (not valid under the schema, or of a newer major version) stops it: it
writes what came before it, commits the offsets up to it, logs the topic, partition, offset and reason, and
exits non-zero, so nothing after it is lost. Upgrading banditgate (a newer version) or restarting with
``--skip-offset TOPIC:PARTITION:OFFSET`` (a malformed event, kept in the ledger's ``skipped_events``) gets
past it.

kafka-python is imported here, and this module only by the joiner command: the embedded service never loads it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from banditgate.ledger.bulk import paused_gc
from banditgate.ledger.events import DecisionEvent, FutureEvent, InvalidEvent, RewardEvent, decode
from banditgate.ledger.join import JoinCounts, JoinWriter, Skipped

if TYPE_CHECKING:
    from kafka import KafkaConsumer

log = logging.getLogger(__name__)

BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StoppedAtEvent(RuntimeError):
    """The joiner met an event it cannot read; everything before it is in the ledger and committed."""

    def __init__(self, topic: str, partition: int, offset: int, reason: str, future: bool) -> None:
        advice = (
            "upgrade banditgate to a version that reads it, then start the joiner again"
            if future
            else f"fix the producer; to go on without this event, start the joiner with --skip-offset "
            f"{topic}:{partition}:{offset} (its bytes are kept in the ledger's skipped_events)"
        )
        super().__init__(f"stopped at {topic}:{partition}:{offset}: {reason}; {advice}")
        self.topic, self.partition, self.offset, self.reason, self.future = topic, partition, offset, reason, future


class BrokerUnreachable(RuntimeError):
    """No broker answered at start-up."""


def parse_skip(value: str) -> tuple[str, int, int]:
    """``TOPIC:PARTITION:OFFSET`` as a tuple; :class:`ValueError` saying what is wrong otherwise.

    >>> parse_skip("banditgate.rewards:2:1041")
    ('banditgate.rewards', 2, 1041)
    """
    topic, _, rest = value.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if not (topic and partition.isdigit() and rest.isdigit()):
        raise ValueError(f"{value!r} is not TOPIC:PARTITION:OFFSET (e.g. banditgate.rewards:2:1041)")
    return topic, int(partition), int(rest)


class JoinerMetrics:
    """The joiner's Prometheus metrics, in a registry of their own (served by :meth:`serve`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter("banditgate_joiner_events_consumed_total", "Events read, by type", ["type"], registry=r)
        self.applied = Counter(
            "banditgate_joiner_events_applied_total",
            "Events written or settled in the ledger, by type (decisions new to it; rewards recorded, revised, "
            "refused or equal to the latest value, including held ones joined late)",
            ["type"],
            registry=r,
        )
        self.duplicates = Counter(
            "banditgate_joiner_events_duplicate_total",
            "Events the ledger already held (redeliveries: a decision_id or a reward event_id seen before), by type",
            ["type"],
            registry=r,
        )
        self.rewards = Counter(
            "banditgate_joiner_rewards_total",
            "Reward events by what became of them (recorded, revised, duplicate, refused, held, redelivered)",
            ["status"],
            registry=r,
        )
        self.waiting = Gauge(
            "banditgate_joiner_rewards_waiting",
            "Rewards in the ledger waiting for their decision: held, or orphaned (past the hold time)",
            ["status"],
            registry=r,
        )
        self.orphaned_total = Counter(
            "banditgate_joiner_rewards_orphaned_total", "Rewards this joiner recorded as orphaned", registry=r
        )
        self.invalid = Counter(
            "banditgate_joiner_invalid_events_total",
            "Events the joiner could not read (reason: invalid or future), each stops it",
            ["topic", "reason"],
            registry=r,
        )
        self.skipped = Counter(
            "banditgate_joiner_skipped_events_total",
            "Unreadable events skipped by --skip-offset",
            ["topic"],
            registry=r,
        )
        self.lag = Gauge(
            "banditgate_joiner_lag",
            "Events on the broker not yet read, per partition",
            ["topic", "partition"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "banditgate_joiner_batch_seconds",
            "Time from a batch's arrival to the commit of its offsets (decoding, waiting for the writer, writing)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``port`` from a background thread."""
        start_http_server(port, addr=host, registry=self.registry)

    def set_waiting(self, held: int, orphaned: int) -> None:
        self.waiting.labels("held").set(held)
        self.waiting.labels("orphaned").set(orphaned)

    def count(self, counts: JoinCounts, decisions: int, rewards: int) -> None:
        self.consumed.labels("decision").inc(decisions)
        self.consumed.labels("reward").inc(rewards)
        self.applied.labels("decision").inc(counts.decisions_new)
        self.duplicates.labels("decision").inc(counts.decisions_duplicate)
        for status, n in counts.rewards.items():
            self.rewards.labels(status).inc(n)
        settled = sum(n for status, n in counts.rewards.items() if status not in ("held", "redelivered"))
        self.applied.labels("reward").inc(settled)
        self.duplicates.labels("reward").inc(counts.rewards.get("redelivered", 0))


@dataclass(frozen=True)
class JoinerOptions:
    """How a joiner consumes.

    Parameters
    ----------
    bootstrap_servers
        The Kafka brokers, ``host:port[,host:port...]``.
    decisions_topic, rewards_topic
        The topics to consume.
    group_id
        The consumer group: joiners of one group share the partitions.
    partitions, replication_factor
        Partitions and replicas of a topic the joiner creates because it is missing.
    hold
        How long a reward waits for its decision before it is recorded as orphaned.
    max_batch
        Most events written in one transaction.
    skip
        ``(topic, partition, offset)`` of unreadable events to skip (kept in ``skipped_events``); a readable
        event at one of these positions is not skipped.
    poll_seconds
        Longest wait for events in one poll.
    sweep_seconds
        Time between two looks at the held rewards (default: a quarter of the hold time, at most 30 s).
    """

    bootstrap_servers: str
    decisions_topic: str
    rewards_topic: str
    group_id: str
    partitions: int = 6
    replication_factor: int = 1
    hold: timedelta = timedelta(hours=1)
    max_batch: int = 5000
    skip: frozenset[tuple[str, int, int]] = field(default_factory=frozenset)
    poll_seconds: float = 1.0
    sweep_seconds: float | None = None

    @property
    def sweep_interval(self) -> float:
        if self.sweep_seconds is not None:
            return self.sweep_seconds
        return min(self.hold.total_seconds() / 4, 30.0)


#: Most jobs handed to the writer thread and not settled yet: one being written, one ready for it.
_DEPTH = 2
#: Longest wait in a rebalance for the writer to finish the batches in hand (it blocks kafka-python's heartbeats:
#: well under the session timeout).
_REVOKE_WAIT = 4.0


@dataclass(slots=True)
class _Batch:
    """One poll's readable events, and the offsets to commit once they are in the ledger."""

    decisions: list[DecisionEvent] = field(default_factory=list)
    rewards: list[RewardEvent] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    offsets: dict[Any, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class _Job:
    """A job handed to the writer thread: a batch, or a sweep of the held rewards (``batch`` None)."""

    future: Future[Any]
    batch: _Batch | None


class Joiner:
    """Consumes both topics in a consumer group and writes every batch into the ledger.

    Parameters
    ----------
    writer
        Writes the batches into the ledger.
    options
        What to consume and how.
    metrics
        Where to count (default: a fresh :class:`JoinerMetrics`, not served).
    on_database_commit
        Called on the writer thread after a batch's database commit and before its offsets are committed
        (tests use it to kill a joiner exactly there); ``None`` in production.
    """

    def __init__(
        self,
        writer: JoinWriter,
        options: JoinerOptions,
        metrics: JoinerMetrics | None = None,
        on_database_commit: Callable[[], None] | None = None,
    ) -> None:
        self.writer = writer
        self.options = options
        self.metrics = metrics or JoinerMetrics()
        self._on_database_commit = on_database_commit
        self._last_sweep = 0.0
        self._last_lag = 0.0
        self._jobs: deque[_Job] = deque()
        self._closing = threading.Event()

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until ``stop`` is set (returns) or an unreadable event is met (raises :class:`StoppedAtEvent`)."""
        stop = stop or threading.Event()
        ensure_topics(
            self.options.bootstrap_servers, self._topics, self.options.partitions, self.options.replication_factor
        )
        consumer = self._consumer()
        log.info(
            "joiner started: group %s, topics %s and %s, brokers %s, hold %g s, batches of at most %d",
            self.options.group_id,
            self.options.decisions_topic,
            self.options.rewards_topic,
            self.options.bootstrap_servers,
            self.options.hold.total_seconds(),
            self.options.max_batch,
        )
        self._closing.clear()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="joiner-writer")
        try:
            self._submit(executor, consumer, None)
            while not stop.is_set():
                polled = consumer.poll(
                    timeout_ms=int(self.options.poll_seconds * 1000), max_records=self.options.max_batch
                )
                if polled:
                    # A batch allocates thousands of containers and keeps none in cycles: collecting while it
                    # is decoded and written cost a third of the joiner's time.
                    with paused_gc():
                        batch, stopped = self._decode(polled)
                    if batch.offsets:
                        self._submit(executor, consumer, batch)
                    if stopped is not None:
                        self._settle(consumer, block=True)
                        log.error("joiner %s", stopped)
                        raise stopped
                self._settle(consumer, block=False)
                now = time.monotonic()
                if now - self._last_sweep >= self.options.sweep_interval:
                    self._submit(executor, consumer, None)
                if now - self._last_lag >= 1.0:
                    self._update_lag(consumer)
            self._settle(consumer, block=True)
        finally:
            # On an error, what was handed over and not written is dropped: its offsets were not committed, so
            # it is read again. A write retrying against an unreachable database gives up.
            self._closing.set()
            executor.shutdown(wait=True, cancel_futures=True)
            self._jobs.clear()
            consumer.close(autocommit=False)
            log.info("joiner stopped")

    @property
    def _topics(self) -> list[str]:
        return [self.options.decisions_topic, self.options.rewards_topic]

    def _consumer(self) -> KafkaConsumer:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        jobs = self._jobs

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                # kafka-python calls this on its IO thread, where the consumer cannot be used (a commit would
                # raise): wait (not longer than half the session timeout, which the wait blocks) for the writer
                # to finish the batches in hand, so that the joiner taking these partitions over does not write
                # them at the same time; the consumer thread commits their offsets after the poll, or, should
                # the partitions have moved, the other joiner reads them again and the ledger recognises them.
                wait([job.future for job in tuple(jobs)], timeout=_REVOKE_WAIT)
                if revoked:
                    log.info("partitions revoked: %s", _names(revoked))

            def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("partitions assigned: %s", _names(assigned) or "none")

        consumer = KafkaConsumer(
            bootstrap_servers=self.options.bootstrap_servers,
            group_id=self.options.group_id,
            client_id=f"banditgate-joiner-{self.options.group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.options.max_batch,
            # A dead joiner's partitions move to the others within seconds, not the default 45.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        consumer.subscribe(self._topics, listener=_Listener())
        return consumer

    def _decode(self, polled: dict[Any, list[Any]]) -> tuple[_Batch, StoppedAtEvent | None]:
        """The readable events of a poll, up to the first unreadable one of each partition (``stopped``: the
        first of them), and the offsets after them."""
        batch = _Batch()
        stopped: StoppedAtEvent | None = None
        for tp, records in polled.items():
            for record in records:
                try:
                    if record.value is None:
                        raise InvalidEvent("an empty message (no value)")
                    event = decode(record.value)
                except InvalidEvent as exc:
                    position = (tp.topic, tp.partition, record.offset)
                    if position in self.options.skip:
                        log.warning("skipping the unreadable event at %s:%d:%d as told: %s", *position, exc)
                        batch.skipped.append(Skipped(*position, record.key, record.value, str(exc)))
                        self.metrics.skipped.labels(tp.topic).inc()
                        batch.offsets[tp] = record.offset + 1
                        continue
                    future = isinstance(exc, FutureEvent)
                    self.metrics.invalid.labels(tp.topic, "future" if future else "invalid").inc()
                    if stopped is None:
                        stopped = StoppedAtEvent(tp.topic, tp.partition, record.offset, str(exc), future)
                    log.error("unreadable event at %s:%d:%d: %s", tp.topic, tp.partition, record.offset, exc)
                    break  # nothing after it in this partition is written or committed
                if isinstance(event, DecisionEvent):
                    batch.decisions.append(event)
                else:
                    batch.rewards.append(event)
                batch.offsets[tp] = record.offset + 1
        return batch, stopped

    def _submit(self, executor: ThreadPoolExecutor, consumer: KafkaConsumer, batch: _Batch | None) -> None:
        """Hand a batch (or a sweep: ``None``) to the writer thread once fewer than ``_DEPTH`` jobs are in hand,
        committing the offsets of those it finishes meanwhile."""
        while len(self._jobs) >= _DEPTH:
            wait([self._jobs[0].future], timeout=self.options.poll_seconds)
            self._settle(consumer, block=False)
        if batch is None:
            self._last_sweep = time.monotonic()
            self._jobs.append(_Job(executor.submit(self._sweep), None))
        else:
            self._jobs.append(_Job(executor.submit(self._write_batch, batch), batch))

    def _settle(self, consumer: KafkaConsumer, block: bool) -> None:
        """Count the jobs the writer has finished, oldest first (with ``block``: every job, waiting for them), and
        commit the offsets of their batches. A failed job raises here, after the batches before it are committed."""
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata

        offsets: dict[Any, int] = {}
        done: list[_Batch] = []
        try:
            while self._jobs and (block or self._jobs[0].future.done()):
                job = self._jobs.popleft()
                result = job.future.result()
                if job.batch is not None:
                    self.metrics.count(result, len(job.batch.decisions), len(job.batch.rewards))
                    offsets.update(job.batch.offsets)
                    done.append(job.batch)
        finally:
            if offsets:
                try:
                    consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
                except (CommitFailedError, KafkaError) as exc:
                    # The partitions moved to another joiner meanwhile: it reads these events again and the
                    # ledger recognises them.
                    log.warning("offsets not committed (%s): the batch will be read again, harmlessly", exc)
                now = time.perf_counter()
                for batch in done:
                    self.metrics.batch_seconds.observe(now - batch.started)

    def _write_batch(self, batch: _Batch) -> JoinCounts:
        """On the writer thread: write a batch, update the waiting gauge, call the database-commit hook."""
        with paused_gc():
            counts = self._write(batch.decisions, batch.rewards, batch.skipped)
        if counts.rewards.get("held") or counts.joined:
            if counts.rewards.get("held"):
                log.info("%d rewards held for their decisions", counts.rewards["held"])
            self.metrics.set_waiting(*self.writer.waiting())
        if self._on_database_commit is not None:
            self._on_database_commit()
        return counts

    def _write(self, decisions: list[DecisionEvent], rewards: list[RewardEvent], skipped: list[Skipped]) -> JoinCounts:
        """Write a batch; while the database is unreachable, wait and try again (the offsets stay put) until the
        joiner closes."""
        from sqlalchemy.exc import OperationalError

        delay = 0.5
        while True:
            try:
                return self.writer.apply(decisions, rewards, skipped)
            except OperationalError as exc:
                if self._closing.is_set():
                    raise
                log.error("ledger write failed (%s); retrying in %g s", exc, delay)
                self._closing.wait(delay)
                delay = min(delay * 2, 30.0)

    def _sweep(self) -> None:
        """On the writer thread: join the held rewards whose decisions arrived, orphan the overdue ones."""
        from sqlalchemy.exc import OperationalError

        try:
            result = self.writer.sweep(self.options.hold)
        except OperationalError as exc:
            log.error("sweep of the held rewards failed (%s); trying again later", exc)
            return
        if result.joined:
            self.metrics.applied.labels("reward").inc(result.joined)
            log.info("%d held rewards joined their decisions", result.joined)
        if result.orphaned:
            self.metrics.orphaned_total.inc(len(result.orphaned))
            log.warning(
                "%d rewards orphaned (no decision after %g s): %s",
                len(result.orphaned),
                self.options.hold.total_seconds(),
                ", ".join(result.orphaned[:20]) + (" ..." if len(result.orphaned) > 20 else ""),
            )
        self.metrics.set_waiting(result.held_now, result.orphaned_now)

    def _update_lag(self, consumer: KafkaConsumer) -> None:
        self._last_lag = time.monotonic()
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = consumer.position(tp, timeout_ms=100)
            except Exception:
                continue  # a lag gauge must never stop the joiner
            if position is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))


def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int, replication_factor: int = 1) -> None:
    """Create the topics that do not exist yet, with ``partitions`` partitions and ``replication_factor`` replicas
    each (as the relay does: ``kafka_partitions``, ``kafka_replication_factor``)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="banditgate-joiner-admin")
    except KafkaError as exc:
        raise BrokerUnreachable(f"cannot reach a Kafka broker at {bootstrap_servers}: {exc}") from None
    try:
        new = [NewTopic(topic, partitions, replication_factor) for topic in topics]
        result = admin.create_topics(new, raise_errors=False)
        for topic in result.get("topics", []) if isinstance(result, dict) else []:
            if topic.get("error_code") == 0:
                log.info("created topic %s with %d partitions", topic["name"], partitions)
            elif topic.get("error_code") != 36:  # TOPIC_ALREADY_EXISTS
                log.warning("could not create topic %s: %s", topic.get("name"), topic.get("error_message"))
    finally:
        admin.close()


def _names(partitions: Iterable[Any]) -> str:
    return ", ".join(sorted(f"{tp.topic}:{tp.partition}" for tp in partitions))
