"""``banditgate joiner`` against a real Kafka-protocol broker and a real ledger database.

Consumer group joins take about 20 s on the test broker: every test here is slow, and each starts as few
joiners as it can.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import Engine, func, select

from banditgate.ledger.db import make_engine
from banditgate.ledger.events import encode
from banditgate.ledger.join import JoinCounts, JoinWriter
from banditgate.ledger.migrate import upgrade
from banditgate.ledger.models import Decision, Reward, RewardEventRow, SkippedEvent
from banditgate.service.joiner import Joiner, JoinerMetrics, JoinerOptions, StoppedAtEvent, ensure_topics
from tests.ledger.test_join import decision, reward
from tests.support import postgres
from tests.support.kafka import Broker, free_port

pytestmark = pytest.mark.slow

WAIT = 120.0  # a group join, on a loaded machine


@pytest.fixture
def pg_engine(postgres_admin_url: str) -> Iterator[Engine]:
    """The central ledger of a deployment with joiners: PostgreSQL (tests whose outcome does not depend on the
    database run on it alone)."""
    engine = make_engine(postgres.fresh_database(postgres_admin_url))
    upgrade(engine)
    yield engine
    engine.dispose()


def options(broker: Broker, partitions: int = 2, **changes: object) -> JoinerOptions:
    suffix = uuid.uuid4().hex[:8]
    values: dict = {
        "bootstrap_servers": broker.bootstrap_servers,
        "decisions_topic": f"decisions-{suffix}",
        "rewards_topic": f"rewards-{suffix}",
        "group_id": f"joiner-{suffix}",
        "partitions": partitions,
        "poll_seconds": 0.2,
    }
    values.update(changes)
    return JoinerOptions(**values)


def produce(broker: Broker, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=key, value=value) for topic, key, value in messages]
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=5)


def events(opts: JoinerOptions, *items: object) -> list[tuple[str, bytes, bytes]]:
    """Encoded events on the topic of their type."""
    out = []
    for item in items:
        key, value = encode(item)  # type: ignore[arg-type]
        topic = opts.decisions_topic if item.type == "decision" else opts.rewards_topic  # type: ignore[attr-defined]
        out.append((topic, key, value))
    return out


@contextmanager
def running(joiner: Joiner) -> Iterator[dict[str, BaseException]]:
    """Run ``joiner`` on a thread; stop it on exit. The dict gets the exception the joiner stopped with."""
    stop = threading.Event()
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            joiner.run(stop)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield outcome
    finally:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the joiner did not stop"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def waiting(metrics: JoinerMetrics, status: str) -> float | None:
    return metrics.registry.get_sample_value("banditgate_joiner_rewards_waiting", {"status": status})


def count(engine: Engine, column: object) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count(column))).scalar_one()  # type: ignore[arg-type]


def reward_rows(engine: Engine) -> list[tuple[str, str, float, int]]:
    with engine.connect() as connection:
        rows = connection.execute(select(Reward.decision_id, Reward.kind, Reward.value, Reward.revision)).all()
    return sorted(tuple(row) for row in rows)


def test_decisions_and_rewards_are_joined_exactly_once(kafka_broker: Broker, engine: Engine) -> None:
    opts = options(kafka_broker)
    ensure_topics(opts.bootstrap_servers, [opts.decisions_topic, opts.rewards_topic], opts.partitions)
    decisions = [decision(n, instance="serve-a") for n in range(200)]
    rewards = [reward(f"serve-b:{n}", n, float(n % 2)) for n in range(200)]
    rewards += [reward(f"serve-a:r{n}", n, 1.0, seconds=30) for n in range(0, 200, 2)]  # revisions of odd ones
    early = [reward("serve-b:early", 500, 1.0)]  # a reward before its decision
    # Everything twice: an outbox relay that retried after an unknown outcome.
    produce(kafka_broker, events(opts, *early, *decisions, *rewards, *decisions[:50], *rewards[:80]))
    metrics = JoinerMetrics()
    port = free_port()
    metrics.serve(port)
    with running(Joiner(JoinWriter(engine), opts, metrics)) as outcome:
        wait_for(lambda: count(engine, RewardEventRow.id) == 301 or "error" in outcome, "the rewards")
        assert "error" not in outcome
        assert count(engine, Decision.decision_id) == 200
        produce(kafka_broker, events(opts, decision(500, instance="serve-b"), *decisions[150:]))
        wait_for(lambda: count(engine, Decision.decision_id) == 201, "the late decision")
        wait_for(lambda: waiting(metrics, "held") == 0, "the held reward to be joined")
        time.sleep(1.5)  # a lag update
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    expected = [(f"tx-{n}", "authorisation", float(n % 2), 1) for n in range(200)]
    expected += [(f"tx-{n}", "authorisation", 1.0, 2) for n in range(0, 200, 2)]  # 0 -> 1 for even ones
    expected += [("tx-500", "authorisation", 1.0, 1)]
    assert reward_rows(engine) == sorted(expected)
    for event in decisions[:3]:
        with engine.connect() as connection:
            row = connection.execute(select(Decision).where(Decision.decision_id == event.decision_id)).one()
        assert row.probabilities == event.decision.probabilities and row.context == event.decision.context
    value = metrics.registry.get_sample_value
    assert value("banditgate_joiner_events_consumed_total", {"type": "decision"}) == 200 + 50 + 1 + 50
    assert value("banditgate_joiner_events_applied_total", {"type": "decision"}) == 201
    assert value("banditgate_joiner_events_duplicate_total", {"type": "decision"}) == 100
    assert value("banditgate_joiner_events_duplicate_total", {"type": "reward"}) == 80
    assert value("banditgate_joiner_rewards_total", {"status": "held"}) >= 1  # more if rewards overtook decisions
    assert f'banditgate_joiner_lag{{partition="1",topic="{opts.rewards_topic}"}} 0.0' in scraped
    assert "banditgate_joiner_batch_seconds_count" in scraped


@pytest.mark.postgres
def test_a_reward_whose_decision_never_comes_is_orphaned(kafka_broker: Broker, pg_engine: Engine) -> None:
    engine = pg_engine
    opts = options(kafka_broker, hold=timedelta(seconds=1), sweep_seconds=0.5)
    produce(kafka_broker, events(opts, reward("serve-b:1", 7, 1.0)))
    metrics = JoinerMetrics()
    with running(Joiner(JoinWriter(engine), opts, metrics)):
        wait_for(lambda: waiting(metrics, "orphaned") == 1, "the orphan")
    assert metrics.registry.get_sample_value("banditgate_joiner_rewards_orphaned_total") == 1
    with engine.connect() as connection:
        assert connection.execute(select(RewardEventRow.status)).scalar_one() == "orphaned"


@pytest.mark.postgres
def test_an_unreadable_event_stops_the_joiner_at_it_and_nothing_after_it_is_lost(
    kafka_broker: Broker, pg_engine: Engine
) -> None:
    engine = pg_engine
    opts = options(kafka_broker, partitions=1)
    ensure_topics(opts.bootstrap_servers, [opts.decisions_topic, opts.rewards_topic], 1)
    future = encode(decision(3))[1].replace(b'"version":"1.0"', b'"version":"2.0"')
    produce(
        kafka_broker,
        [
            *events(opts, decision(1)),
            (opts.decisions_topic, b"tx-2", b'{"type": "decision", "version": "1.0", "decision": {}}'),
            *events(opts, decision(2)),
            (opts.decisions_topic, b"tx-3", future),
            *events(opts, decision(4)),
        ],
    )
    metrics = JoinerMetrics()
    with running(Joiner(JoinWriter(engine), opts, metrics)) as outcome:
        wait_for(lambda: "error" in outcome, "the joiner to stop")
    stopped = outcome["error"]
    assert isinstance(stopped, StoppedAtEvent) and not stopped.future
    assert (stopped.topic, stopped.partition, stopped.offset) == (opts.decisions_topic, 0, 1)
    assert "decision.event_id: Field required" in str(stopped) and "--skip-offset" in str(stopped)
    invalid = {"topic": opts.decisions_topic, "reason": "invalid"}
    assert metrics.registry.get_sample_value("banditgate_joiner_invalid_events_total", invalid) == 1
    with engine.connect() as connection:
        assert connection.execute(select(Decision.decision_id)).scalars().all() == ["tx-1"]

    # Told to skip the malformed one, it goes on to the future one and stops there: no skipping past it silently.
    skip = dataclasses.replace(opts, skip=frozenset({(opts.decisions_topic, 0, 1)}))
    with running(Joiner(JoinWriter(engine), skip)) as outcome:
        wait_for(lambda: "error" in outcome, "the joiner to stop again")
    stopped = outcome["error"]
    assert isinstance(stopped, StoppedAtEvent) and stopped.future and stopped.offset == 3
    assert "upgrade banditgate" in str(stopped)
    with engine.connect() as connection:
        assert sorted(connection.execute(select(Decision.decision_id)).scalars()) == ["tx-1", "tx-2"]
        assert connection.execute(select(SkippedEvent.offset, SkippedEvent.value)).one() == (
            1,
            b'{"type": "decision", "version": "1.0", "decision": {}}',
        )

    # An upgraded joiner (here: told to skip it too) reads on; the event after it is there.
    both = dataclasses.replace(opts, skip=frozenset({(opts.decisions_topic, 0, 1), (opts.decisions_topic, 0, 3)}))
    with running(Joiner(JoinWriter(engine), both)) as outcome:
        wait_for(lambda: count(engine, Decision.decision_id) == 3 or "error" in outcome, "the event after it")
    assert "error" not in outcome
    assert count(engine, SkippedEvent.id) == 2


KILLED_JOINER = textwrap.dedent(
    """
    import os, signal, sys

    from banditgate.ledger.db import make_engine
    from banditgate.ledger.join import JoinCounts, JoinWriter
    from banditgate.service.joiner import Joiner, JoinerOptions

    url, servers, decisions, rewards, group = sys.argv[1:6]
    options = JoinerOptions(servers, decisions, rewards, group, partitions=2, max_batch=50, poll_seconds=0.2)

    def die():  # after the database commit, before the offset commit
        os.kill(os.getpid(), signal.SIGKILL)

    Joiner(JoinWriter(make_engine(url)), options, on_database_commit=die).run()
    """
)


@pytest.mark.postgres
def test_a_joiner_killed_between_its_database_and_offset_commits_duplicates_and_loses_nothing(
    kafka_broker: Broker, pg_engine: Engine, tmp_path: Path
) -> None:
    engine = pg_engine
    opts = options(kafka_broker, max_batch=50)
    ensure_topics(opts.bootstrap_servers, [opts.decisions_topic, opts.rewards_topic], opts.partitions)
    decisions = [decision(n) for n in range(300)]
    rewards = [reward(f"serve-b:{n}", n, 1.0) for n in range(300)]
    revisions = [reward(f"serve-b:v{n}", n, 0.0, seconds=5) for n in range(300)]
    produce(kafka_broker, events(opts, *decisions, *rewards, *revisions))
    script = tmp_path / "killed_joiner.py"
    script.write_text(KILLED_JOINER)
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    args = [url, opts.bootstrap_servers, opts.decisions_topic, opts.rewards_topic, opts.group_id]
    killed = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, timeout=WAIT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    written = count(engine, Decision.decision_id) + count(engine, RewardEventRow.id)
    assert 0 < written <= 50, "the first batch was committed to the database before the kill"

    metrics = JoinerMetrics()
    with running(Joiner(JoinWriter(engine), opts, metrics)) as outcome:
        wait_for(lambda: count(engine, RewardEventRow.id) == 600 or "error" in outcome, "every reward")
        wait_for(lambda: count(engine, Decision.decision_id) == 300, "every decision")
    assert "error" not in outcome
    expected = [(f"tx-{n}", "authorisation", 1.0, 1) for n in range(300)]
    expected += [(f"tx-{n}", "authorisation", 0.0, 2) for n in range(300)]
    assert reward_rows(engine) == sorted(expected)
    redelivered = metrics.registry.get_sample_value("banditgate_joiner_events_duplicate_total", {"type": "decision"})
    redelivered += metrics.registry.get_sample_value("banditgate_joiner_events_duplicate_total", {"type": "reward"})
    assert redelivered == written, "the killed joiner's batch was read again and recognised"


def test_the_joiner_command_exits_1_naming_the_event_it_stopped_at(kafka_broker: Broker, tmp_path: Path) -> None:
    opts = options(kafka_broker, partitions=1)
    ensure_topics(opts.bootstrap_servers, [opts.decisions_topic, opts.rewards_topic], 1)
    produce(kafka_broker, [*events(opts, decision(1)), (opts.rewards_topic, b"tx-1", b"not json")])
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "BANDITGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "BANDITGATE_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "BANDITGATE_KAFKA_DECISIONS_TOPIC": opts.decisions_topic,
        "BANDITGATE_KAFKA_REWARDS_TOPIC": opts.rewards_topic,
        "BANDITGATE_KAFKA_PARTITIONS": "1",
        "BANDITGATE_JOINER_GROUP_ID": opts.group_id,
    }
    command = [sys.executable, "-m", "banditgate.service.cli", "joiner", "--metrics-port", "0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"stopped at {opts.rewards_topic}:0:0: not a JSON document" in done.stderr
    assert f"--skip-offset {opts.rewards_topic}:0:0" in done.stderr
    engine = make_engine(env["BANDITGATE_DATABASE_URL"])
    try:
        assert count(engine, Decision.decision_id) == 1  # the decision of the other topic is in
    finally:
        engine.dispose()


class GatedWriter(JoinWriter):
    """A real :class:`JoinWriter` whose first batch waits at the door until ``release`` is set (or 30 s pass), so
    that a test can see what the joiner does meanwhile; ``fail_on`` makes that batch number fail instead."""

    def __init__(self, engine: Engine, fail_on: int | None = None) -> None:
        super().__init__(engine)
        self.release = threading.Event()
        self.released_in_time: bool | None = None
        self.batches = 0
        self.fail_on = fail_on

    def apply(self, *args: object, **kwargs: object) -> JoinCounts:
        self.batches += 1
        if self.batches == 1:
            self.released_in_time = self.release.wait(30)
        if self.batches == self.fail_on:
            raise RuntimeError("the ledger refused this batch")
        return super().apply(*args, **kwargs)  # type: ignore[arg-type]


def committed_offset(broker: Broker, group: str, topic: str) -> int | None:
    """The offset ``group`` has committed on partition 0 of ``topic``, as the broker has it."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close(autocommit=False)


@pytest.mark.postgres
def test_an_unreadable_event_read_while_the_batch_before_is_written_stops_the_joiner_at_it(
    kafka_broker: Broker, pg_engine: Engine
) -> None:
    """The consumer decodes batch n+1 while batch n is in the database: an unreadable event in batch n+1 is met
    with batch n in flight; the joiner finishes batch n, writes what came before the event in batch n+1,
    commits the offset of the event itself and stops there."""
    engine = pg_engine
    opts = options(kafka_broker, partitions=1, max_batch=5)
    ensure_topics(opts.bootstrap_servers, [opts.decisions_topic, opts.rewards_topic], 1)
    produce(
        kafka_broker,
        [
            *events(opts, *(decision(n) for n in range(8))),
            (opts.decisions_topic, b"tx-8", b"not json"),
            *events(opts, decision(9)),
        ],
    )
    metrics = JoinerMetrics()
    writer = GatedWriter(engine)
    invalid = {"topic": opts.decisions_topic, "reason": "invalid"}
    with running(Joiner(writer, opts, metrics)) as outcome:
        # The first batch (offsets 0-4) waits at the door until the joiner has read the second one (5-9).
        wait_for(
            lambda: metrics.registry.get_sample_value("banditgate_joiner_invalid_events_total", invalid) == 1,
            "the unreadable event, read while the first batch is in flight",
            timeout=WAIT,
        )
        assert count(engine, Decision.decision_id) == 0, "the first batch was written before the next was read"
        writer.release.set()
        wait_for(lambda: "error" in outcome, "the joiner to stop")
    assert writer.released_in_time, "the joiner did not read on while its first batch was being written"
    stopped = outcome["error"]
    assert isinstance(stopped, StoppedAtEvent) and (stopped.partition, stopped.offset) == (0, 8)
    with engine.connect() as connection:
        written = sorted(connection.execute(select(Decision.decision_id)).scalars())
    assert written == sorted(f"tx-{n}" for n in range(8))
    assert committed_offset(kafka_broker, opts.group_id, opts.decisions_topic) == 8
    assert metrics.registry.get_sample_value("banditgate_joiner_events_applied_total", {"type": "decision"}) == 8


@pytest.mark.postgres
def test_a_failed_write_commits_neither_its_batch_nor_the_ones_after_it(
    kafka_broker: Broker, pg_engine: Engine
) -> None:
    """Batch 2 fails in the database while batch 3 is handed over already: the joiner stops with the error, the
    committed offset stays after batch 1, and a restarted joiner writes everything exactly once."""
    engine = pg_engine
    opts = options(kafka_broker, partitions=1, max_batch=5)
    ensure_topics(opts.bootstrap_servers, [opts.decisions_topic, opts.rewards_topic], 1)
    produce(kafka_broker, events(opts, *(decision(n) for n in range(15))))
    writer = GatedWriter(engine, fail_on=2)
    writer.release.set()
    with running(Joiner(writer, opts)) as outcome:
        wait_for(lambda: "error" in outcome, "the joiner to stop")
    assert isinstance(outcome["error"], RuntimeError) and "refused this batch" in str(outcome["error"])
    assert count(engine, Decision.decision_id) == 5
    assert committed_offset(kafka_broker, opts.group_id, opts.decisions_topic) == 5

    with running(Joiner(JoinWriter(engine), opts)) as outcome:
        wait_for(lambda: count(engine, Decision.decision_id) == 15 or "error" in outcome, "every decision")
    assert "error" not in outcome
    assert committed_offset(kafka_broker, opts.group_id, opts.decisions_topic) == 15
