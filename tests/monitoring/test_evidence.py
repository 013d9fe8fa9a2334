"""What the gate reads from the ledger, on SQLite and PostgreSQL: exact times, segment values, labels as of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.models import Decision, Reward
from banditgate.ledger.registry import PolicySpec, get_generation, put_policy
from banditgate.monitoring.evidence import Evidence, Reading, read_evidence
from banditgate.monitoring.reference_cache import ReferenceCache
from tests.ledger.conftest import make_record

AS_OF = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def ledger(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Four decisions of the last day (one logged before segment values existed), one the day before; labels
    with a revision, and one received after as-of."""
    decided = [AS_OF - timedelta(hours=h, microseconds=m) for h, m in ((30, 0), (20, 1), (10, 999_999), (5, 7), (1, 0))]
    countries = ["NL", "FR", "DE", "FR", "US"]
    with sessions() as session, session.begin():
        put_policy(session, "default", PolicySpec(), actor="test")
        rows = []
        for i, (at, country) in enumerate(zip(decided, countries, strict=True)):
            record = make_record(f"d{i}", decided_at=at, context={"issuer_country": country, "amount_eur": 10.0 + i})
            row = {**record.as_row(), "segment_values": {"issuer_country": country}}
            if i == 2:
                row["segment_values"] = {}  # logged before the key was configured: only the context has it
            rows.append(row)
        session.execute(insert(Decision), rows)
        rewards = [
            ("d1", 0.0, 1, AS_OF - timedelta(hours=19)),
            ("d1", 1.0, 2, AS_OF - timedelta(hours=2)),  # a revision: the latest value, the first arrival
            ("d2", 1.0, 1, AS_OF - timedelta(hours=9, microseconds=3)),
            ("d3", 0.0, 1, AS_OF + timedelta(minutes=1)),  # not received yet as of AS_OF
        ]
        session.execute(
            insert(Reward),
            [
                {
                    "decision_id": d,
                    "kind": "authorisation",
                    "value": v,
                    "revision": r,
                    "observed_at": t,
                    "received_at": t,
                }
                for d, v, r, t in rewards
            ],
        )
    return sessions


def evidence(sessions: sessionmaker[Session], cache: ReferenceCache | None = None) -> Evidence:
    with sessions() as session:
        generation = get_generation(session, "default", 0)
        assert generation is not None
        reading = Reading(window=DAY, reward_kinds=("authorisation",), segment_keys=("issuer_country",))
        return read_evidence(session, generation, AS_OF, reading, cache)


def test_every_decision_of_the_window_is_read_with_exact_times_segments_and_first_arrivals(
    ledger: sessionmaker[Session],
) -> None:
    current = evidence(ledger).current
    frame = current.decisions
    assert current.total == 4 and list(frame["decision_id"]) == ["d1", "d2", "d3", "d4"]
    expected = [AS_OF - timedelta(hours=h, microseconds=m) for h, m in ((20, 1), (10, 999_999), (5, 7), (1, 0))]
    assert list(frame["decided_at"]) == [pd.Timestamp(t) for t in expected]
    assert list(frame["issuer_country"]) == ["FR", "DE", "FR", "US"]  # d2's from its context
    arrived = frame["received:authorisation"]
    assert arrived.iloc[0] == pd.Timestamp(AS_OF - timedelta(hours=19))
    assert arrived.iloc[1] == pd.Timestamp(AS_OF - timedelta(hours=9, microseconds=3))
    assert arrived.iloc[2:].isna().all()


def test_the_sample_carries_the_latest_label_received_by_as_of(ledger: sessionmaker[Session]) -> None:
    sample = evidence(ledger).current.sample.set_index("decision_id")
    labels = sample["label:authorisation"]
    assert labels["d1"] == 1.0 and labels["d2"] == 1.0 and np.isnan(labels["d3"]) and np.isnan(labels["d4"])
    assert sample.loc["d2", "context"] == {"issuer_country": "DE", "amount_eur": 12.0}
    assert sample.loc["d2", "issuer_country"] == "DE" and not sample["fallback"].any()


def test_the_reference_window_is_the_day_before_and_its_sample_is_cached(
    ledger: sessionmaker[Session], tmp_path: Path
) -> None:
    cache = ReferenceCache(tmp_path)
    first = evidence(ledger, cache=cache).reference
    assert first.total == 1 and list(first.decisions["decision_id"]) == ["d0"]
    assert len(list(tmp_path.glob("*.pickle"))) == 1
    again = evidence(ledger, cache=cache).reference
    pd.testing.assert_frame_equal(again.sample, first.sample)
    assert again.cache_name == first.cache_name


def test_stored_rewards_that_are_not_0_or_1_are_skipped_and_counted(ledger: sessionmaker[Session]) -> None:
    """Values an older version accepted (any finite number) must not reach the gate's binary metrics: the latest
    valid revision is the label, and the invalid rows are counted in the window."""
    with ledger() as session, session.begin():
        session.execute(
            insert(Reward),
            [
                {
                    "decision_id": d,
                    "kind": "authorisation",
                    "value": v,
                    "revision": r,
                    "observed_at": t,
                    "received_at": t,
                }
                for d, v, r, t in (
                    ("d1", 0.5, 3, AS_OF - timedelta(hours=1)),  # the latest revision, invalid: revision 2 stands
                    ("d4", 7.0, 1, AS_OF - timedelta(minutes=30)),  # the only one, invalid: no label value
                    ("d4", -1.0, 2, AS_OF + timedelta(minutes=5)),  # received after as-of: not read at all
                )
            ],
        )
    current = evidence(ledger).current
    labels = current.sample.set_index("decision_id")["label:authorisation"]
    assert labels["d1"] == 1.0 and labels["d2"] == 1.0 and np.isnan(labels["d4"])
    assert current.invalid_rewards == {("d1", "authorisation", 3), ("d4", "authorisation", 1)}
    assert current.to_dict()["invalid_rewards_skipped"] == 2
    # The arrival of an outcome is still an arrival: completeness counts it, reliability has no value for it.
    assert current.decisions.set_index("decision_id")["received:authorisation"].notna()["d4"]
