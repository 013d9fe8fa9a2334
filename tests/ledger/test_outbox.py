"""The outbox file (no broker): events committed with their decisions and rewards, ids, delivery marks, pruning."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from banditgate.ledger.events import (
    DecisionEvent,
    DecisionPayload,
    RewardEvent,
    RewardPayload,
    decode,
    encode,
    encode_decision,
    encode_reward,
)
from banditgate.ledger.outbox import Outbox, record_outbox_reward
from banditgate.ledger.records import DecisionRecord, RewardStatus
from banditgate.ledger.writer import BatchingWriter
from banditgate.service.settings import Settings

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def record(decision_id: str) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        policy="default",
        generation=0,
        context={"amount_eur": 10.0},
        actions=[{"id": "a", "features": {}}, {"id": "b", "features": {}}],
        probabilities=[0.5, 0.5],
        action_id="b",
        propensity=0.5,
        exploration="uniform",
        exploration_params={},
        model_sha256=None,
        draw=0.75,
        request_sha256="0" * 64,
        decided_at=NOW,
    )


async def log_decisions(outbox: Outbox, records: list[DecisionRecord]) -> list[DecisionRecord]:
    writer = BatchingWriter(outbox.sessions)
    writer.start()
    try:
        return list(await asyncio.gather(*(writer.write_decision(r) for r in records)))
    finally:
        await writer.stop()


def test_each_new_decision_commits_one_event_with_it(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", instance_id="serve-a")
    try:
        asyncio.run(log_decisions(outbox, [record("tx-1"), record("tx-2"), record("tx-1")]))
        asyncio.run(log_decisions(outbox, [record("tx-2")]))  # a replay: no second event
        with outbox.sessions.begin() as session:
            assert record_outbox_reward(session, "tx-1", "authorisation", 1.0, NOW, NOW).status is RewardStatus.RECORDED
            assert (
                record_outbox_reward(session, "tx-1", "authorisation", 1.0, NOW, NOW).status is RewardStatus.DUPLICATE
            )
            assert record_outbox_reward(session, "tx-1", "authorisation", 0.0, NOW, NOW).status is RewardStatus.REVISED
            elsewhere = record_outbox_reward(session, "tx-9", "chargeback", 1.0, NOW, NOW)
            assert elsewhere.status is RewardStatus.PENDING_JOIN
        pending = outbox.pending(100)
        assert [event.sequence for event in pending] == [1, 2, 3, 4, 5]
        events = [decode(event.value) for event in pending]
        assert [type(e) for e in events] == [DecisionEvent, DecisionEvent, RewardEvent, RewardEvent, RewardEvent]
        assert events[0].decision.record() == record("tx-1") and pending[0].key == b"tx-1"
        assert [e.event_id for e in events] == [f"serve-a:{n}" for n in range(1, 6)]
        assert [(e.reward.decision_id, e.reward.value) for e in events[2:]] == [
            ("tx-1", 1.0),
            ("tx-1", 0.0),
            ("tx-9", 1.0),
        ]
        assert [p.reward for p in pending] == [False, False, True, True, True]
        assert outbox.state().backlog == 5
        outbox.mark_delivered(3)
        assert [event.sequence for event in outbox.pending(100)] == [4, 5]
        assert outbox.state().backlog == 2 and outbox.state().broker == "ok"
        outbox.mark_unreachable("KafkaTimeoutError: no broker")
        state = outbox.state()
        assert (state.broker, state.relay_errors, state.broker_error) == (
            "unreachable",
            1,
            "KafkaTimeoutError: no broker",
        )
    finally:
        outbox.close()


def test_the_instance_id_is_kept_in_the_file(tmp_path: Path) -> None:
    first = Outbox(tmp_path / "outbox.db")
    first.close()
    again = Outbox(tmp_path / "outbox.db")
    again.close()
    assert again.instance == first.instance
    with pytest.raises(ValueError, match="belongs to instance"):
        Outbox(tmp_path / "outbox.db", instance_id="someone-else")
    assert Outbox(tmp_path / "other.db", instance_id="serve-b").instance == "serve-b"


def test_prune_keeps_what_is_undelivered_or_recent(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", instance_id="serve-a")
    try:
        asyncio.run(log_decisions(outbox, [record(f"tx-{i}") for i in range(4)]))
        with outbox.engine.begin() as connection:  # the first three were logged two days ago
            connection.execute(text("UPDATE outbox SET created = julianday('now') - 2 WHERE sequence <= 3"))
        outbox.mark_delivered(2)
        assert outbox.prune(timedelta(hours=24)) == 2  # tx-2 is old but undelivered, tx-3 recent
        assert [event.sequence for event in outbox.pending(100)] == [3, 4]
        with outbox.engine.connect() as connection:
            left = connection.execute(text("SELECT decision_id FROM decisions ORDER BY decision_id")).scalars().all()
        assert left == ["tx-2", "tx-3"]
        asyncio.run(log_decisions(outbox, [record("tx-5")]))
        assert outbox.pending(100)[-1].sequence == 5  # a sequence is never reused after pruning
    finally:
        outbox.close()


@pytest.mark.parametrize(
    "changes",
    [
        {"kafka_bootstrap_servers": "kafka"},
        {"kafka_bootstrap_servers": "kafka:99999"},
        {"kafka_bootstrap_servers": "kafka:9092;rm -rf"},
        {"kafka_decisions_topic": "same", "kafka_rewards_topic": "same"},
        {"kafka_decisions_topic": "no spaces"},
        {"kafka_partitions": 0},
        {"outbox_max_backlog": 0},
        {"instance_id": "a:b"},
    ],
)
def test_kafka_settings_are_checked(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**changes)


def test_an_empty_bootstrap_setting_is_the_embedded_transport() -> None:
    assert Settings(kafka_bootstrap_servers=" ").kafka_bootstrap_servers is None
    assert Settings(kafka_bootstrap_servers="k1:9092, k2:9092").kafka_bootstrap_servers == "k1:9092,k2:9092"


def test_the_embedded_transport_does_not_import_kafka(tmp_path: Path) -> None:
    script = f"""
import asyncio, sys
from banditgate.service.runtime import Runtime
from banditgate.service.settings import Settings

async def main():
    runtime = await Runtime.start(Settings(database_url="sqlite:///{tmp_path / "ledger.db"}", decision_process=False,
                                           artifact_dir="{tmp_path / "artifacts"}"))
    await runtime.stop()

asyncio.run(main())
print(sorted(name for name in sys.modules if name == "kafka" or name.startswith("kafka.")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_the_relay_encodes_events_as_the_schema_does(tmp_path: Path) -> None:
    unusual = replace(
        record("tx-é"),
        context={"issuer_country": "DÉ", "note": "line\nbreak \u2028", "flag": True, "n": None, "big": 1e300},
        actions=[{"id": "a", "features": {"fee_bps": 12}}, {"id": "b", "features": {}}],
        model_sha256="ab" * 32,
        decided_at=datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC),
        segment_values={"issuer_country": "DÉ"},
    )
    for decision in (record("tx-1"), unusual):
        expected = DecisionEvent(event_id="i:1", instance="i", decision=DecisionPayload.from_record(decision))
        key, value = encode_decision("i:1", "i", decision)
        assert (key, decode(value)) == (encode(expected)[0], expected)
    outbox = Outbox(tmp_path / "outbox.db", instance_id="i")
    try:
        asyncio.run(log_decisions(outbox, [record("tx-1"), unusual]))
        for pending, decision in zip(outbox.pending(10), (record("tx-1"), unusual), strict=True):
            event_id = f"i:{pending.sequence}"
            expected = DecisionEvent(event_id=event_id, instance="i", decision=DecisionPayload.from_record(decision))
            assert (pending.key, decode(pending.value)) == (encode(expected)[0], expected)
    finally:
        outbox.close()
    reward = RewardPayload(decision_id="tx-é", kind="chargeback", value=1.0, observed_at=NOW, received_at=NOW)
    expected_reward = RewardEvent(event_id="i:2", instance="i", reward=reward)
    key, value = encode_reward("i:2", "i", reward)
    assert (key, decode(value)) == (encode(expected_reward)[0], expected_reward)
