"""The training set's read, column-wise build and batch context lookup give what a row-by-row build gives."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import matured, registry
from banditgate.ledger.bulk import paused_gc
from banditgate.ledger.models import Decision, Reward
from banditgate.pipelines import training_set
from banditgate.pipelines.evaluation import candidate_frame
from banditgate.pipelines.training_set import TrainingSet, _Columns, load_training_set
from banditgate.policies.oracles.features import ACTION_ID, ACTION_PREFIX, CONTEXT_PREFIX
from banditgate.simulator import PaymentWorld
from tests.support.ledger_fill import fill

# Two batches of (context, chosen action id, chosen action's features): runs of one key layout, keys in another
# order, a None, keys that appear only later, a column mixing strings and numbers, an empty document.
BATCHES: list[list[tuple[dict[str, Any], str, dict[str, Any]]]] = [
    [
        ({"amount": 10, "country": "NL"}, "none", {"fee": 1.5}),
        ({"amount": 12, "country": "NL"}, "3ds", {"fee": 2.0}),
        ({"amount": 7, "country": "DE"}, "none", {"fee": 1.5}),
        ({"country": "FR", "amount": None}, "none", {}),
        ({"amount": 3, "recurring": True}, "3ds", {"fee": 2.0, "acquirer": "local"}),
    ],
    [
        ({"amount": 4.5, "country": 49}, "none", {"fee": None}),
        ({}, "3ds", {}),
        ({"amount": 8, "country": "NL", "recurring": False}, "none", {"fee": 1.5}),
    ],
]


def row_by_row(batches: list[list[tuple[dict[str, Any], str, dict[str, Any]]]]) -> pd.DataFrame:
    """The reference: one cell at a time, columns in the order their keys are first seen, None where absent."""
    columns: dict[str, list[Any]] = {}
    rows = [row for batch in batches for row in batch]
    for n, (context, action_id, features) in enumerate(rows):
        cells = {ACTION_ID: action_id}
        cells.update({CONTEXT_PREFIX + k: v for k, v in context.items()})
        cells.update({ACTION_PREFIX + k: v for k, v in features.items()})
        for name, value in cells.items():
            columns.setdefault(name, [None] * n).append(value)
        for column in columns.values():
            column.extend([None] * (n + 1 - len(column)))
    return pd.DataFrame({name: pd.Series(values) for name, values in columns.items()})


def built(batches: list[list[tuple[dict[str, Any], str, dict[str, Any]]]]) -> pd.DataFrame:
    columns = _Columns()
    for batch in batches:
        contexts, action_ids, features = (list(part) for part in zip(*batch, strict=True))
        columns.extend(contexts, action_ids, features)
    return columns.frame()


def test_the_column_wise_build_equals_a_row_by_row_build() -> None:
    frame, expected = built(BATCHES), row_by_row(BATCHES)
    assert list(frame.columns) == [ACTION_ID, "c:amount", "c:country", "a:fee", "c:recurring", "a:acquirer"]
    assert list(frame.columns) == list(expected.columns)
    assert frame.dtypes.to_dict() == expected.dtypes.to_dict()
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["c:country"].tolist() == ["NL", "NL", "DE", "FR", None, 49, None, "NL"]
    assert frame["c:recurring"].tolist() == [None, None, None, None, True, None, None, False]


def test_equal_strings_are_one_object() -> None:
    # Strings decoded from JSON are new objects each: one per distinct category keeps a million rows small.
    batches = [[({"country": "".join(["N", "L"])}, "".join(["no", "ne"]), {}) for _ in range(3)]]
    frame = built(batches)
    countries, ids = frame["c:country"].tolist(), frame[ACTION_ID].tolist()
    assert countries[0] is countries[1] is countries[2] and ids[0] is ids[1] is ids[2]


def in_memory(frame: pd.DataFrame) -> TrainingSet:
    n = len(frame)
    return TrainingSet(
        policy="default",
        reward_kind="authorisation",
        window_start=datetime(2026, 1, 1, tzinfo=UTC),
        as_of=datetime(2026, 1, 2, tzinfo=UTC),
        decisions_in_window=n,
        decision_ids=[f"d{i}" for i in range(n)],
        frame=frame,
        rewards=np.zeros(n),
        propensities=np.ones(n),
        generations=np.zeros(n, dtype=np.int64),
        decided_at=np.zeros(n, dtype=object),
        chosen_index=np.zeros(n, dtype=np.int64),
        actions={},
    )


def test_contexts_of_several_rows_equal_their_contexts_one_by_one() -> None:
    logs = in_memory(built(BATCHES))
    rows = np.array([7, 0, 3, 5, 6, 4])
    batch = logs.contexts(rows)
    one_by_one = [logs.context(i) for i in rows]
    assert batch == one_by_one

    # Plain JSON types, as the contexts were sent (a row lookup hands back numpy floats).
    assert {type(v) for c in batch for v in c.values()} <= {str, int, float, bool}
    assert batch[2] == {"country": "FR"} and batch[4] == {}
    assert logs.contexts([]) == []


def test_the_candidate_frame_is_built_once_for_the_same_rows() -> None:
    logs = in_memory(built(BATCHES))
    logs.actions = {i: [{"id": "none", "features": {"fee": 1.5}}, {"id": "3ds"}] for i in range(len(logs))}
    frame, offsets = candidate_frame(logs, np.array([1, 2, 3]))
    assert offsets.tolist() == [0, 2, 4, 6] and frame["action_id"].tolist() == ["none", "3ds"] * 3
    assert frame["c:country"].tolist() == ["NL", "NL", "DE", "DE", "FR", "FR"]
    assert candidate_frame(logs, np.array([1, 2, 3]))[0] is frame  # the OPE report reuses the gamma choice's
    other, _ = candidate_frame(logs, np.array([1, 2]))
    assert other is not frame and len(other) == 4


def test_paused_gc_restores_the_collector() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a collector the caller had disabled stays disabled
    finally:
        gc.enable()


def test_the_read_equals_a_decision_by_decision_reference(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches and a small memo of candidate sets, so that batches, runs and the memo's restarts all happen.
    monkeypatch.setattr(matured, "BATCH", 37)
    monkeypatch.setattr(training_set, "_CANDIDATE_SETS", 3)
    world = PaymentWorld("none", seed=5)
    with sessions() as session, session.begin():
        registry.put_policy(session, "default", registry.PolicySpec(), actor="test")
    fill(sessions, tmp_path, world, start=world.epoch, days=1, per_day=300, seed=2)
    as_of = world.epoch + timedelta(days=1)
    with sessions() as session, session.begin():
        ids = session.scalars(select(Decision.decision_id).order_by(Decision.decision_id)).all()
        session.execute(delete(Reward).where(Reward.decision_id.in_(ids[::7])))  # not matured: left out
        first = session.scalars(
            select(Reward).where(Reward.decision_id == ids[1], Reward.kind == "authorisation")
        ).one()
        session.add(  # a later revision received before as-of wins
            Reward(
                decision_id=ids[1],
                kind=first.kind,
                value=1.0 - first.value,
                revision=first.revision + 1,
                observed_at=first.observed_at,
                received_at=first.received_at,
            )
        )
    with sessions() as session:
        logs = load_training_set(session, "default", as_of, timedelta(days=2), actions_for_last=50)
        decisions = session.scalars(
            select(Decision).where(Decision.decided_at < as_of).order_by(Decision.decided_at, Decision.decision_id)
        ).all()
        labels = {}
        for reward in session.scalars(
            select(Reward).where(Reward.kind == "authorisation", Reward.received_at <= as_of).order_by(Reward.revision)
        ):
            labels[reward.decision_id] = reward.value
    expected = [d for d in decisions if d.decision_id in labels]
    assert 0 < len(expected) < len(decisions) == logs.decisions_in_window
    assert logs.rewards[logs.decision_ids.index(ids[1])] == 1.0 - first.value
    assert logs.decision_ids == [d.decision_id for d in expected]
    assert logs.rewards.tolist() == [labels[d.decision_id] for d in expected]
    assert logs.propensities.tolist() == [d.propensity for d in expected]
    assert list(logs.decided_at) == [d.decided_at for d in expected]
    chosen = [next(i for i, a in enumerate(d.actions) if a["id"] == d.action_id) for d in expected]
    assert logs.chosen_index.tolist() == chosen
    assert logs.contexts(range(len(expected))) == [d.context for d in expected]
    features = [d.actions[i].get("features") or {} for d, i in zip(expected, chosen, strict=True)]
    for name in logs.frame.columns:
        if name.startswith(ACTION_PREFIX):
            key = name[len(ACTION_PREFIX) :]
            assert logs.frame[name].tolist() == [f.get(key) for f in features], name
    assert logs.frame[ACTION_ID].tolist() == [d.action_id for d in expected]
    assert sorted(logs.actions) == list(range(len(expected) - 50, len(expected)))
    assert [logs.actions[i] for i in sorted(logs.actions)] == [d.actions for d in expected[-50:]]
