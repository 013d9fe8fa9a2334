"""Joined events written into the ledger (``banditgate.ledger.join``): idempotent, held, orphaned, never dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.decision_log import DatabaseDecisionLog
from banditgate.ledger.events import DecisionEvent, DecisionPayload, RewardEvent, RewardPayload
from banditgate.ledger.join import JoinWriter, Skipped
from banditgate.ledger.matured import latest_rewards
from banditgate.ledger.models import RewardEventRow, SkippedEvent
from banditgate.ledger.records import RewardRecord
from banditgate.ledger.reward_kinds import RewardKind
from banditgate.ledger.writer import BatchingWriter
from tests.ledger.conftest import make_record

AT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def decision(n: int, instance: str = "serve-a", **overrides: object) -> DecisionEvent:
    record = make_record(f"tx-{n}", **overrides)
    return DecisionEvent(event_id=f"{instance}:{n}", instance=instance, decision=DecisionPayload.from_record(record))


def reward(event: str, n: int, value: float, kind: str = "authorisation", seconds: int = 0) -> RewardEvent:
    at = AT + timedelta(seconds=seconds)
    payload = RewardPayload(decision_id=f"tx-{n}", kind=kind, value=value, observed_at=at, received_at=at)
    return RewardEvent(event_id=event, instance=event.split(":")[0], reward=payload)


def rewards_of(log: DatabaseDecisionLog, n: int) -> list[tuple[str, float, int]]:
    return [(r.kind, r.value, r.revision) for r in log.get_rewards(f"tx-{n}")]


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return dict(connection.execute(select(RewardEventRow.event_id, RewardEventRow.status)).all())


def make_log(sessions: sessionmaker[Session]) -> DatabaseDecisionLog:
    return DatabaseDecisionLog(sessions, BatchingWriter(sessions))


def test_decisions_and_rewards_are_written_as_the_clients_were_told(engine: Engine, sessions) -> None:
    writer, log = JoinWriter(engine), make_log(sessions)
    sent = [decision(1), decision(2, instance="serve-b", segment_values={"issuer_country": "NL"})]
    counts = writer.apply(sent, [reward("serve-b:1", 1, 1.0, seconds=5), reward("serve-a:3", 2, 0.0, seconds=7)])
    assert (counts.decisions_new, counts.decisions_duplicate, counts.rewards) == (2, 0, {"recorded": 2})
    for event in sent:
        assert log.get_decision(event.decision_id) == event.decision.record()
    (stored,) = log.get_rewards("tx-1")
    assert stored == RewardRecord("tx-1", "authorisation", 1.0, 1, AT + timedelta(seconds=5), AT + timedelta(seconds=5))
    assert rewards_of(log, 2) == [("authorisation", 0.0, 1)]
    # What retraining and the gate read, unchanged.
    with sessions() as session:
        labels = latest_rewards(session, "authorisation", AT + timedelta(hours=1), RewardKind("authorisation"))
    assert labels == {"tx-1": 1.0, "tx-2": 0.0}


def test_decisions_with_awkward_text_are_stored_exactly(engine: Engine, sessions) -> None:
    """Text that COPY's format escapes (tabs, newlines, backslashes, quotes, "\\N"), non-ASCII text, a missing
    model hash and a repeated id in one batch: stored as the clients were told, counted once."""
    writer, log = JoinWriter(engine), make_log(sessions)
    awkward = "tab\there\nnew line \\N back\\slash 'quote' \"dq\" caf\u00e9 \u2603"
    sent = [
        decision(1, context={"merchant": awkward, "amount": 12.5, "nested": {"k": [1, None, awkward]}}),
        decision(2, model_sha256=None, segment_values={"issuer_country": awkward}),
        decision(1, instance="serve-b", context={"merchant": "a second copy"}),
    ]
    counts = writer.apply(sent, [])
    assert (counts.decisions_new, counts.decisions_duplicate) == (2, 1)
    assert log.get_decision("tx-1") == sent[0].decision.record()
    assert log.get_decision("tx-2") == sent[1].decision.record()
    again = writer.apply(sent[:2], [])
    assert (again.decisions_new, again.decisions_duplicate) == (0, 2)


def test_a_redelivered_batch_adds_no_decision_and_no_revision(engine: Engine, sessions) -> None:
    """The embedded reward rules alone would turn the redelivered first value into a third revision."""
    writer, log = JoinWriter(engine), make_log(sessions)
    batch = ([decision(1)], [reward("serve-a:2", 1, 1.0), reward("serve-b:7", 1, 0.0, seconds=60)])
    writer.apply(*batch)
    again = writer.apply(*batch)
    assert (again.decisions_new, again.decisions_duplicate, again.rewards) == (0, 1, {"redelivered": 2})
    # A redelivery of the first reward alone, after the revision, is recognised too.
    assert writer.apply([], [reward("serve-a:2", 1, 1.0)]).rewards == {"redelivered": 1}
    assert rewards_of(log, 1) == [("authorisation", 1.0, 1), ("authorisation", 0.0, 2)]
    # The same event twice in one batch counts once.
    counts = writer.apply([decision(2), decision(2)], [reward("serve-a:9", 2, 1.0), reward("serve-a:9", 2, 1.0)])
    assert (counts.decisions_new, counts.decisions_duplicate) == (1, 1)
    assert counts.rewards == {"recorded": 1, "redelivered": 1}
    assert rewards_of(log, 2) == [("authorisation", 1.0, 1)]


def test_a_reward_before_its_decision_is_held_then_joined_in_order(engine: Engine, sessions) -> None:
    writer, log = JoinWriter(engine), make_log(sessions)
    counts = writer.apply([], [reward("serve-b:1", 1, 1.0), reward("serve-b:2", 1, 0.0, seconds=1)])
    assert counts.rewards == {"held": 2}
    assert writer.waiting() == (2, 0)
    assert log.get_rewards("tx-1") == []
    # Its decision arrives with a later reward: the held ones come first, in the order they were read.
    counts = writer.apply([decision(1)], [reward("serve-a:5", 1, 1.0, seconds=2)])
    assert counts.joined == 2 and counts.rewards == {"recorded": 1, "revised": 2}
    assert rewards_of(log, 1) == [("authorisation", 1.0, 1), ("authorisation", 0.0, 2), ("authorisation", 1.0, 3)]
    assert writer.waiting() == (0, 0)
    assert set(statuses(engine).values()) == {"recorded", "revised"}


def test_a_held_reward_past_the_hold_time_is_orphaned_and_still_joined_if_its_decision_comes(
    engine: Engine, sessions
) -> None:
    writer, log = JoinWriter(engine), make_log(sessions)
    writer.apply([], [reward("serve-b:1", 1, 1.0)], now=AT)
    writer.apply([], [reward("serve-b:2", 2, 1.0)], now=AT + timedelta(minutes=50))
    result = writer.sweep(timedelta(hours=1), now=AT + timedelta(minutes=61))
    assert (result.orphaned, result.held_now, result.orphaned_now) == (["serve-b:1"], 1, 1)
    assert statuses(engine) == {"serve-b:1": "orphaned", "serve-b:2": "held"}
    with engine.connect() as connection:
        detail = connection.execute(select(RewardEventRow.detail).where(RewardEventRow.event_id == "serve-b:1"))
        assert "had not arrived after 3600 s" in detail.scalar_one()
    writer.apply([decision(1)], [])
    assert rewards_of(log, 1) == [("authorisation", 1.0, 1)]
    assert writer.waiting() == (1, 0)


def test_a_sweep_joins_a_held_reward_whose_decision_another_writer_logged(engine: Engine, sessions) -> None:
    writer = JoinWriter(engine)
    writer.apply([], [reward("serve-b:1", 1, 1.0)])
    JoinWriter(engine).apply([decision(1)], [])  # as if it had raced past the held reward
    with engine.begin() as connection:  # undo the join to recreate the race's outcome
        connection.execute(RewardEventRow.__table__.update().values(status="held", settled_at=None))
        connection.exec_driver_sql("DELETE FROM rewards")
    result = writer.sweep(timedelta(hours=1))
    assert (result.joined, result.orphaned, result.held_now) == (1, [], 0)
    assert rewards_of(make_log(sessions), 1) == [("authorisation", 1.0, 1)]


def test_a_reward_the_rules_refuse_is_kept_as_refused(engine: Engine, sessions) -> None:
    writer = JoinWriter(engine, max_revisions=2)
    writer.apply([decision(1)], [reward("a:1", 1, 1.0), reward("a:2", 1, 0.0), reward("a:3", 1, 1.0)])
    writer.apply([], [reward("a:4", 1, 1.0, kind="refund"), reward("a:5", 1, 0.5)])
    found = statuses(engine)
    assert found == {"a:1": "recorded", "a:2": "revised", "a:3": "refused", "a:4": "refused", "a:5": "refused"}
    assert rewards_of(make_log(sessions), 1) == [("authorisation", 1.0, 1), ("authorisation", 0.0, 2)]


def test_skipped_events_keep_their_bytes(engine: Engine) -> None:
    JoinWriter(engine).apply([], [], [Skipped("banditgate.rewards", 2, 41, b"k", b"{oops", "not a JSON document")])
    with engine.connect() as connection:
        row = connection.execute(select(SkippedEvent.__table__)).one()
    assert (row.topic, row.partition, row.offset, row.key, row.value) == ("banditgate.rewards", 2, 41, b"k", b"{oops")
