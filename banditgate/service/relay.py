"""The relay: publishes a serving instance's outbox to Kafka, in order, at least once.

It runs on a thread of the process that logs into the outbox (the decision process, or the serving process
without one). It reads the committed events after the last acknowledged one, sends them with kafka-python
(``acks=all``, key = ``decision_id``, one request in flight per connection so that retries keep their order),
waits for the broker to acknowledge all of them, and only then records them as delivered. A batch that fails
is sent again whole after a back-off (doubling up to :data:`MAX_BACKOFF_SECONDS`), with a new producer, for
as long as it takes: the broker may see an event twice, never a gap. Consumers recognise a redelivered event
by its ``event_id``.

Several processes may log into one outbox file (``serve --workers N``): each starts a relay, and the one that
holds an exclusive lock on ``<outbox>.relay.lock`` publishes; the others wait for the lock, so one takes over
within a second when that process exits.

kafka-python is imported here, and this module only when a Kafka transport is configured: the embedded
transport neither imports it nor pays for it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections import deque
from datetime import timedelta
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from banditgate.ledger.outbox import Outbox
from banditgate.service.settings import Settings

log = logging.getLogger(__name__)

#: Longest wait between two delivery attempts while the broker is unreachable, in seconds.
MAX_BACKOFF_SECONDS = 5.0
#: How often the relay looks for new events, in seconds, unless it has a full batch to send: under a steady
#: trickle, one batch (a broker round trip and a write of the delivery mark) per look, not one per decision.
POLL_SECONDS = 0.1
#: How often delivered events older than the retention are pruned, in seconds.
PRUNE_SECONDS = 300.0
#: Batches sent to the broker before the oldest must be acknowledged.
IN_FLIGHT_BATCHES = 3
#: How long one batch may take to be acknowledged before the broker counts as unreachable and the batch is sent
#: again, in seconds: a batch takes well under a second when the broker is there.
BATCH_TIMEOUT_SECONDS = 5.0


class Relay:
    """Publishes ``outbox`` to the topics named in ``settings`` until :meth:`stop`.

    Parameters
    ----------
    outbox
        The outbox to publish (this process's own, open).
    settings
        The broker, topics, partitions, batch size and retention.
    """

    def __init__(self, outbox: Outbox, settings: Settings) -> None:
        if not settings.kafka_bootstrap_servers:
            raise ValueError("the relay needs kafka_bootstrap_servers")
        self.outbox = outbox
        self.settings = settings
        self.bootstrap_servers = settings.kafka_bootstrap_servers.split(",")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._topics_ready = False
        self._lock_file: int | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop publishing (what is not acknowledged stays in the outbox for the next start)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_producer()
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the lock
            self._lock_file = None

    def _run(self) -> None:
        if not self._acquire():
            return
        while not self._stopping.is_set():
            try:
                self._publish_loop()
            except Exception:
                # The outbox file itself failed (locked past its busy timeout, disk full): start over from what
                # the broker acknowledged, after a pause.
                log.exception("the outbox relay failed; retrying in %.0f s", MAX_BACKOFF_SECONDS)
                self._close_producer()
                self._stopping.wait(MAX_BACKOFF_SECONDS)

    def _acquire(self) -> bool:
        """Wait for the relay lock of the outbox file; False if stopped before it was free."""
        path = f"{self.outbox.path}.relay.lock"
        self._lock_file = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        waiting = False
        while not self._stopping.is_set():
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                log.info(
                    "relaying outbox %s (instance %s) to %s",
                    self.outbox.path,
                    self.outbox.instance,
                    ",".join(self.bootstrap_servers),
                )
                return True
            except BlockingIOError:
                if not waiting:
                    log.info("another process relays outbox %s; standing by", self.outbox.path)
                    waiting = True
                self._stopping.wait(1.0)
        return False

    def _publish_loop(self) -> None:
        backoff = 0.1
        failing = False
        last_prune = 0.0
        retention = timedelta(hours=self.settings.outbox_retention_hours)
        # Batches sent and not yet acknowledged, oldest first: the next batch is read and sent while the broker
        # acknowledges the previous ones (kafka-python keeps them in order on each connection).
        in_flight: deque[tuple[int, list[Any]]] = deque()
        sent_through: int | None = None
        next_look = 0.0
        while not self._stopping.is_set():
            if not in_flight and time.monotonic() - last_prune > PRUNE_SECONDS:
                last_prune = time.monotonic()
                try:
                    pruned = self.outbox.prune(retention)
                    if pruned:
                        log.info("pruned %d delivered events older than %s from the outbox", pruned, retention)
                except Exception:
                    log.exception("could not prune the outbox")
            try:
                if len(in_flight) < IN_FLIGHT_BATCHES and time.monotonic() >= next_look:
                    batch = self.outbox.pending(self.settings.kafka_relay_batch, after=sent_through)
                    if len(batch) < self.settings.kafka_relay_batch:
                        next_look = time.monotonic() + POLL_SECONDS  # caught up: let the next batch fill
                    if batch:
                        in_flight.append((batch[-1].sequence, self._send(batch)))
                        sent_through = batch[-1].sequence
                        continue
                if not in_flight:
                    self._stopping.wait(max(0.0, next_look - time.monotonic()))
                    continue
                through, futures = in_flight.popleft()
                self._acknowledged(futures)
            except Exception as exc:  # KafkaError, or the socket errors kafka-python lets through
                # Everything not acknowledged is sent again, from the first unacknowledged event on.
                in_flight.clear()
                sent_through = None
                self._close_producer()
                reason = f"{type(exc).__name__}: {exc}"
                self.outbox.mark_unreachable(reason)
                if not failing:
                    log.warning(
                        "Kafka broker unreachable (%s): the outbox keeps every event (backlog %d, decisions refused "
                        "past %d); retrying",
                        reason,
                        self.outbox.state().backlog,
                        self.settings.outbox_max_backlog,
                    )
                    failing = True
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            self.outbox.mark_delivered(through)
            if failing:
                backlog = self.outbox.state().backlog
                log.warning("Kafka broker reachable again; draining a backlog of %d events", backlog)
                failing = False
            backoff = 0.1

    def _send(self, batch: list[Any]) -> list[Any]:
        """Hand ``batch`` to the producer; return the futures of its messages."""
        producer = self._connect()
        decisions, rewards = self.settings.kafka_decisions_topic, self.settings.kafka_rewards_topic
        return [
            producer.send(rewards if event.reward else decisions, key=event.key, value=event.value) for event in batch
        ]

    def _acknowledged(self, futures: list[Any]) -> None:
        """Wait until the broker acknowledged every message of a batch; raise its error if it refused one."""
        deadline = time.monotonic() + BATCH_TIMEOUT_SECONDS
        for future in futures:
            future.get(timeout=max(0.0, deadline - time.monotonic()))

    def _connect(self) -> Any:
        if self._producer is None:
            if not self._topics_ready:
                self._create_topics()
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                client_id=f"banditgate-relay-{self.outbox.instance}",
                acks="all",
                linger_ms=5,
                batch_size=512 * 1024,
                max_in_flight_requests_per_connection=1,
                retries=3,
                request_timeout_ms=int(BATCH_TIMEOUT_SECONDS * 1000),
                delivery_timeout_ms=int(BATCH_TIMEOUT_SECONDS * 1000) + 10,
                max_block_ms=int(BATCH_TIMEOUT_SECONDS * 1000),
                max_request_size=16 * 1024 * 1024,
            )
        return self._producer

    def _create_topics(self) -> None:
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, client_id=f"banditgate-relay-{self.outbox.instance}"
        )
        try:
            for topic in (self.settings.kafka_decisions_topic, self.settings.kafka_rewards_topic):
                try:
                    admin.create_topics(
                        [NewTopic(topic, self.settings.kafka_partitions, self.settings.kafka_replication_factor)]
                    )
                    log.info("created topic %s (%d partitions)", topic, self.settings.kafka_partitions)
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()
        self._topics_ready = True

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)  # what it still holds is sent again by the next producer
            except Exception:
                log.debug("closing the Kafka producer failed", exc_info=True)
