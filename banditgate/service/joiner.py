"""``banditgate joiner``: consume the decision and reward topics and land them in the central ledger.

Several joiners may run in one Kafka consumer group; each gets a share of the partitions. A decision and
its rewards share a key (the ``decision_id``), so with both topics partitioned alike they reach the same
joiner in the order they were published. Every poll batch is written in one database transaction
(:class:`~banditgate.ledger.join.JoinWriter`), and its offsets are committed only after that commit: a joiner
that dies in between reads the batch again, and the ledger recognises what it already holds.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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
            "Time to write one batch and commit its offsets",
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
    partitions
        Partitions of a topic the joiner creates because it is missing.
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
        Called after a batch's database commit and before its offsets are committed (tests use it to kill a
        joiner exactly there); ``None`` in production.
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

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until ``stop`` is set (returns) or an unreadable event is met (raises :class:`StoppedAtEvent`)."""
        stop = stop or threading.Event()
        ensure_topics(self.options.bootstrap_servers, self._topics, self.options.partitions)
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
        try:
            self._sweep()
            while not stop.is_set():
                polled = consumer.poll(
                    timeout_ms=int(self.options.poll_seconds * 1000), max_records=self.options.max_batch
                )
                if polled:
                    self._handle(consumer, polled)
                now = time.monotonic()
                if now - self._last_sweep >= self.options.sweep_interval:
                    self._sweep()
                if now - self._last_lag >= 1.0:
                    self._update_lag(consumer)
        finally:
            consumer.close(autocommit=False)
            log.info("joiner stopped")

    @property
    def _topics(self) -> list[str]:
        return [self.options.decisions_topic, self.options.rewards_topic]

    def _consumer(self) -> KafkaConsumer:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
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

    def _handle(self, consumer: KafkaConsumer, polled: dict[Any, list[Any]]) -> None:
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata

        started = time.perf_counter()
        decisions: list[DecisionEvent] = []
        rewards: list[RewardEvent] = []
        skipped: list[Skipped] = []
        offsets: dict[Any, int] = {}
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
                        skipped.append(Skipped(*position, record.key, record.value, str(exc)))
                        self.metrics.skipped.labels(tp.topic).inc()
                        offsets[tp] = record.offset + 1
                        continue
                    future = isinstance(exc, FutureEvent)
                    self.metrics.invalid.labels(tp.topic, "future" if future else "invalid").inc()
                    if stopped is None:
                        stopped = StoppedAtEvent(tp.topic, tp.partition, record.offset, str(exc), future)
                    log.error("unreadable event at %s:%d:%d: %s", tp.topic, tp.partition, record.offset, exc)
                    break  # nothing after it in this partition is written or committed
                if isinstance(event, DecisionEvent):
                    decisions.append(event)
                else:
                    rewards.append(event)
                offsets[tp] = record.offset + 1
        counts = self._write(decisions, rewards, skipped)
        self.metrics.count(counts, len(decisions), len(rewards))
        if counts.rewards.get("held") or counts.joined:
            if counts.rewards.get("held"):
                log.info("%d rewards held for their decisions", counts.rewards["held"])
            self.metrics.set_waiting(*self.writer.waiting())
        if self._on_database_commit is not None:
            self._on_database_commit()
        if offsets:
            try:
                consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
            except (CommitFailedError, KafkaError) as exc:
                # The partitions moved to another joiner meanwhile: it reads these events again and the ledger
                # recognises them.
                log.warning("offsets not committed (%s): the batch will be read again, harmlessly", exc)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        if stopped is not None:
            log.error("joiner %s", stopped)
            raise stopped

    def _write(self, decisions: list[DecisionEvent], rewards: list[RewardEvent], skipped: list[Skipped]) -> JoinCounts:
        """Write a batch; while the database is unreachable, wait and try again (the offsets stay put)."""
        from sqlalchemy.exc import OperationalError

        delay = 0.5
        while True:
            try:
                return self.writer.apply(decisions, rewards, skipped)
            except OperationalError as exc:
                log.error("ledger write failed (%s); retrying in %g s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _sweep(self) -> None:
        from sqlalchemy.exc import OperationalError

        self._last_sweep = time.monotonic()
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


def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int) -> None:
    """Create the topics that do not exist yet, with ``partitions`` partitions each."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="banditgate-joiner-admin")
    try:
        # Replication factor -1: the broker's default (default.replication.factor).
        result = admin.create_topics([NewTopic(t, partitions, -1) for t in topics], raise_errors=False)
        for topic in result.get("topics", []) if isinstance(result, dict) else []:
            if topic.get("error_code") == 0:
                log.info("created topic %s with %d partitions", topic["name"], partitions)
            elif topic.get("error_code") != 36:  # TOPIC_ALREADY_EXISTS
                log.warning("could not create topic %s: %s", topic.get("name"), topic.get("error_message"))
    finally:
        admin.close()


def _names(partitions: Iterable[Any]) -> str:
    return ", ".join(sorted(f"{tp.topic}:{tp.partition}" for tp in partitions))
