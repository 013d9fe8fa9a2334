"""The Kafka transport, serving side: decisions and rewards go through a local outbox to a real broker.

Against the session's Tansu broker (``kafka_broker``), reached through its outage relay, with real HTTP: a
server in this process (``LiveServer``) or a real ``banditgate serve`` subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from banditgate.ledger.events import DecisionEvent, RewardEvent, decode
from banditgate.service.settings import Settings
from tests.support.kafka import Broker
from tests.support.server import LiveServer, free_port

BODY = {"context": {"amount_eur": 12.0, "issuer_country": "DE"}, "actions": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}


def kafka_settings(broker: Broker, tmp_path: Path, **changes: Any) -> Settings:
    topic = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'central.db'}",
        "artifact_dir": tmp_path / "artifacts",
        "decision_process": False,
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "kafka_decisions_topic": f"decisions-{topic}",
        "kafka_rewards_topic": f"rewards-{topic}",
        "kafka_partitions": 3,
        "outbox_path": tmp_path / "outbox.db",
        **changes,
    }
    return Settings(**values)


def read_events(
    broker: Broker, settings: Settings, expected: int, timeout: float = 60.0
) -> list[DecisionEvent | RewardEvent]:
    """Every event on the settings' two topics, once at least ``expected`` distinct event ids are there."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in (settings.kafka_decisions_topic, settings.kafka_rewards_topic)
            for p in sorted(consumer.partitions_for_topic(topic) or {0})
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found: list[DecisionEvent | RewardEvent] = []
        deadline = time.monotonic() + timeout
        while len({event.event_id for event in found}) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    event = decode(record.value)
                    assert record.key == event.decision_id.encode()
                    topic = (
                        settings.kafka_rewards_topic
                        if isinstance(event, RewardEvent)
                        else settings.kafka_decisions_topic
                    )
                    assert record.topic == topic
                    found.append(event)
        return found
    finally:
        consumer.close()


def wait_drained(client: httpx.Client, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        health = client.get("/healthz").json()
        if health["transport"]["backlog"] == 0 and health["transport"]["broker"] == "ok":
            return health
        assert time.monotonic() < deadline, f"the outbox did not drain: {health}"
        time.sleep(0.2)


def exactly_once(events: list[DecisionEvent | RewardEvent]) -> dict[str, DecisionEvent | RewardEvent]:
    """The events by event id (a redelivery carries the same id and content), checking their sequences have no gap."""
    unique: dict[str, DecisionEvent | RewardEvent] = {}
    for event in events:
        assert unique.setdefault(event.event_id, event) == event, f"event {event.event_id} redelivered differently"
    sequences = sorted(int(event_id.rsplit(":", 1)[1]) for event_id in unique)
    assert sequences == list(range(1, len(sequences) + 1)), "a gap in the published sequence"
    return unique


@pytest.fixture
def kafka_server(kafka_broker: Broker, tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(kafka_settings(kafka_broker, tmp_path)) as live:
        yield live


def test_decisions_and_rewards_are_published_as_the_client_was_told(kafka_broker: Broker, tmp_path: Path) -> None:
    settings = kafka_settings(kafka_broker, tmp_path, decision_process=True, instance_id="serve-a")
    with LiveServer(settings) as server, server.client() as client:
        answers = {}
        for i in range(10):
            response = client.post("/v1/decisions", json={**BODY, "decision_id": f"tx-{i}"})
            assert response.status_code == 200, response.text
            answers[f"tx-{i}"] = response.json()
        replay = client.post("/v1/decisions", json={**BODY, "decision_id": "tx-3"})
        assert replay.json() == answers["tx-3"]  # a replay: the same answer, no second event
        known = client.post("/v1/rewards", json={"decision_id": "tx-1", "reward": 1})
        assert known.status_code == 201 and known.json()["status"] == "recorded"
        revised = client.post("/v1/rewards", json={"decision_id": "tx-1", "reward": 0})
        assert revised.status_code == 201 and revised.json()["status"] == "revised"
        duplicate = client.post("/v1/rewards", json={"decision_id": "tx-1", "reward": 0})
        assert duplicate.status_code == 200 and duplicate.json()["status"] == "duplicate"
        elsewhere = client.post("/v1/rewards", json={"decision_id": "made-on-b", "reward": 1, "kind": "chargeback"})
        assert elsewhere.status_code == 202, elsewhere.text
        assert elsewhere.json()["status"] == "pending join"
        again = client.post("/v1/rewards", json={"decision_id": "made-on-b", "reward": 1, "kind": "chargeback"})
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        invalid = client.post("/v1/rewards", json={"decision_id": "made-on-b", "reward": 0.5})
        assert invalid.status_code == 422  # the kind's rule still holds for a decision this instance never saw
        assert client.get("/v1/decisions/tx-2").json()["action_id"] == answers["tx-2"]["action_id"]
        health = wait_drained(client)
        assert health["transport"]["instance"] == "serve-a" and health["transport"]["delivered_through"] == 13
        metrics = client.get("/metrics").text
        assert 'banditgate_outbox_delivered_total{instance="serve-a"} 13.0' in metrics
        assert 'banditgate_outbox_backlog{instance="serve-a"} 0.0' in metrics
    events = exactly_once(read_events(kafka_broker, settings, 13))
    assert len(events) == 13
    decisions = {e.decision_id: e.decision for e in events.values() if isinstance(e, DecisionEvent)}
    assert set(decisions) == set(answers)
    for decision_id, told in answers.items():
        logged = decisions[decision_id]
        assert logged.action_id == told["action_id"] and logged.propensity == told["propensity"]
        assert dict(zip([a["id"] for a in logged.actions], logged.probabilities, strict=True)) == told["probabilities"]
        assert (logged.policy, logged.generation, logged.model_sha256) == (told["policy"], 0, None)
        assert logged.context == BODY["context"]
    rewards = sorted(
        (e.reward.decision_id, e.reward.kind, e.reward.value) for e in events.values() if isinstance(e, RewardEvent)
    )
    assert rewards == [("made-on-b", "chargeback", 1.0), ("tx-1", "authorisation", 0.0), ("tx-1", "authorisation", 1.0)]
    assert all(e.instance == "serve-a" and e.event_id.startswith("serve-a:") for e in events.values())


async def _burst(url: str, n: int, acknowledged: list[str], rewarded: list[str], at: dict[int, Any]) -> list[int]:
    """``n`` decisions (8 at a time) and a reward for every other one; ``at[i]()`` runs when decision i is sent."""
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        semaphore = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with semaphore:
                if i in at:
                    await asyncio.to_thread(at[i])
                try:
                    response = await client.post("/v1/decisions", json={**BODY, "decision_id": f"b-{i}"})
                except httpx.TransportError:
                    statuses.append(0)  # the server was killed: unknown outcome, not acknowledged
                    return
                statuses.append(response.status_code)
                if response.status_code != 200:
                    return
                acknowledged.append(f"b-{i}")
                if i % 2:
                    return
                try:
                    reward = await client.post("/v1/rewards", json={"decision_id": f"b-{i}", "reward": 1})
                except httpx.TransportError:
                    return
                if reward.status_code == 201:
                    rewarded.append(f"b-{i}")

        await asyncio.gather(*(one(i) for i in range(n)))
    return statuses


def assert_published(events: list[DecisionEvent | RewardEvent], acknowledged: list[str], rewarded: list[str]) -> None:
    unique = exactly_once(events)
    decisions = [e.decision_id for e in unique.values() if isinstance(e, DecisionEvent)]
    rewards = [e.decision_id for e in unique.values() if isinstance(e, RewardEvent)]
    assert len(decisions) == len(set(decisions)), "a decision published under two event ids"
    assert set(acknowledged) <= set(decisions)
    assert set(rewarded) <= set(rewards)


def test_a_broker_outage_mid_burst(kafka_broker: Broker, kafka_server: LiveServer) -> None:
    acknowledged: list[str] = []
    rewarded: list[str] = []
    health_during: list[dict[str, Any]] = []

    def look() -> None:
        deadline = time.monotonic() + 60  # the relay's batch in flight times out first
        while (health := httpx.get(f"{kafka_server.url}/healthz", timeout=10).json())["transport"]["broker"] == "ok":
            assert time.monotonic() < deadline, "healthz did not notice the outage"
            time.sleep(0.2)
        health_during.append(health)

    plan = {100: kafka_broker.outage.down, 250: look}
    try:
        statuses = asyncio.run(_burst(kafka_server.url, 400, acknowledged, rewarded, plan))
    finally:
        kafka_broker.outage.up()
    assert statuses.count(200) == 400, "the burst went on during the outage"
    (health,) = health_during
    assert health["status"] == "ok" and health["transport"]["broker"] == "unreachable"
    assert health["transport"]["backlog"] > 0 and health["transport"]["broker_error"]
    with kafka_server.client() as client:
        wait_drained(client)
        assert "banditgate_relay_errors_total" in client.get("/metrics").text
    events = read_events(kafka_broker, kafka_server.settings, len(acknowledged) + len(rewarded))
    assert_published(events, acknowledged, rewarded)
    assert len(exactly_once(events)) == len(acknowledged) + len(rewarded)


def test_past_the_backlog_bound_new_decisions_get_503(kafka_broker: Broker, tmp_path: Path) -> None:
    settings = kafka_settings(kafka_broker, tmp_path, outbox_max_backlog=5)
    with LiveServer(settings) as server, server.client() as client:
        first = client.post("/v1/decisions", json={**BODY, "decision_id": "kept-0"})
        wait_drained(client)
        kafka_broker.outage.down()
        try:
            acknowledged = ["kept-0"]
            refused = None
            for i in range(1, 50):
                response = client.post("/v1/decisions", json={**BODY, "decision_id": f"kept-{i}"})
                if response.status_code != 200:
                    refused = response
                    break
                acknowledged.append(f"kept-{i}")
            assert refused is not None and refused.status_code == 503, "the bound did not hold"
            assert len(acknowledged) == 6  # kept-0 was delivered; five more fill the outbox
            assert "outbox_max_backlog = 5" in refused.json()["message"] and refused.headers["retry-after"]
            replay = client.post("/v1/decisions", json={**BODY, "decision_id": "kept-0"})
            assert replay.status_code == 200 and replay.json() == first.json()  # a replay is still answered
            health = client.get("/healthz")
            assert health.status_code == 503 and health.json()["transport"]["backlog"] == 5
        finally:
            kafka_broker.outage.up()
        wait_drained(client)
        deadline = time.monotonic() + 30
        while (response := client.post("/v1/decisions", json={**BODY, "decision_id": "after"})).status_code != 200:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.3)
    events = read_events(kafka_broker, settings, 7)
    assert_published(events, [*acknowledged, "after"], [])


def _serve(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BANDITGATE_DATABASE_URL": settings.database_url,
        "BANDITGATE_ARTIFACT_DIR": str(settings.artifact_dir),
        "BANDITGATE_KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "BANDITGATE_KAFKA_DECISIONS_TOPIC": settings.kafka_decisions_topic,
        "BANDITGATE_KAFKA_REWARDS_TOPIC": settings.kafka_rewards_topic,
        "BANDITGATE_OUTBOX_PATH": str(settings.outbox_path),
        "BANDITGATE_DECISION_PROCESS_STANDBY": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "banditgate.service.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180  # a loaded machine: the decision process imports LightGBM & co.
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("banditgate serve did not start")


def _kill_with_children(process: subprocess.Popen[bytes]) -> None:
    tasks = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    children = [int(pid) for pid in tasks.read_text().split()] if tasks.exists() else []
    for pid in [process.pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_a_serving_instance_killed_mid_burst_publishes_everything_it_acknowledged(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    settings = kafka_settings(kafka_broker, tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(settings, port)
    acknowledged: list[str] = []
    rewarded: list[str] = []
    try:
        plan = {100: kafka_broker.outage.down, 200: lambda: _kill_with_children(process)}
        asyncio.run(_burst(url, 300, acknowledged, rewarded, plan))
    finally:
        _kill_with_children(process)
        kafka_broker.outage.up()
    assert 100 <= len(acknowledged) < 300
    restarted = _serve(settings, port)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            wait_drained(client)
            for decision_id in acknowledged[:20]:  # acknowledged before the kill: replayed, not decided again
                assert client.post("/v1/decisions", json={**BODY, "decision_id": decision_id}).status_code == 200
            wait_drained(client)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(60)
    events = read_events(kafka_broker, settings, len(acknowledged) + len(rewarded))
    assert_published(events, acknowledged, rewarded)


def test_one_relay_per_outbox_file_and_another_takes_over(kafka_broker: Broker, tmp_path: Path) -> None:
    """The workers of one serve share an outbox: one of their relays publishes, another takes over when it stops."""
    from banditgate.ledger.outbox import Outbox
    from banditgate.service.relay import Relay
    from tests.ledger.test_outbox import log_decisions, record

    settings = kafka_settings(kafka_broker, tmp_path)
    first_outbox, second_outbox = Outbox(settings.outbox_path), Outbox(settings.outbox_path)
    first, second = Relay(first_outbox, settings), Relay(second_outbox, settings)
    try:
        asyncio.run(log_decisions(first_outbox, [record("w-0")]))
        first.start()
        deadline = time.monotonic() + 30
        while first_outbox.state().broker != "ok":
            assert time.monotonic() < deadline, "the first relay did not publish"
            time.sleep(0.1)
        second.start()
        asyncio.run(log_decisions(second_outbox, [record(f"w-{i}") for i in range(1, 50)]))
        deadline = time.monotonic() + 30
        while first_outbox.state().backlog:
            assert time.monotonic() < deadline, "the outbox was not published"
            time.sleep(0.1)
        assert second._producer is None  # standing by: it never connected
        first.stop()
        asyncio.run(log_decisions(second_outbox, [record(f"w-{i}") for i in range(50, 60)]))
        deadline = time.monotonic() + 30
        while second_outbox.state().backlog:
            assert time.monotonic() < deadline, "the second relay did not take over"
            time.sleep(0.1)
    finally:
        first.stop()
        second.stop()
        first_outbox.close()
        second_outbox.close()
    events = read_events(kafka_broker, settings, 60)
    assert {e.decision_id for e in exactly_once(events).values()} == {f"w-{i}" for i in range(60)}


def test_the_relay_outlives_a_failure_of_the_outbox_file(
    kafka_broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from banditgate.ledger.outbox import Outbox
    from banditgate.service import relay as relay_module
    from tests.ledger.test_outbox import log_decisions, record

    monkeypatch.setattr(relay_module, "MAX_BACKOFF_SECONDS", 0.2)
    settings = kafka_settings(kafka_broker, tmp_path)
    outbox = Outbox(settings.outbox_path)
    read = outbox.pending
    failures = iter([True, True])

    def locked_twice(limit: int, after: int | None = None) -> list[Any]:
        if next(failures, False):
            raise OperationalError("SELECT ...", {}, Exception("database is locked"))
        return read(limit, after)

    monkeypatch.setattr(outbox, "pending", locked_twice)
    relay = relay_module.Relay(outbox, settings)
    try:
        asyncio.run(log_decisions(outbox, [record(f"f-{i}") for i in range(5)]))
        relay.start()
        deadline = time.monotonic() + 30
        while outbox.state().backlog:
            assert time.monotonic() < deadline, "the relay did not recover"
            time.sleep(0.1)
    finally:
        relay.stop()
        outbox.close()
    assert len(exactly_once(read_events(kafka_broker, settings, 5))) == 5
