"""The matured part of a policy's decision log, as columns ready for an oracle.

A decision enters the training set only once its reward of the chosen kind has been *received* by the
as-of time (late labels are simply not there yet), and the latest revision received by then wins. A stored
value outside its kind's rule (one an older version accepted) is skipped, so the latest valid revision wins,
and counted (``invalid_rewards_skipped``). The
window is the short-term memory of the Adyen setting: only decisions made in the last ``window`` before
``as_of`` count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import Text, and_, cast, func, select
from sqlalchemy.orm import Session

from banditgate.ledger.models import Decision, Reward
from banditgate.ledger.reward_kinds import RewardKind, kind_rule
from banditgate.policies.oracles.features import ACTION_ID, ACTION_PREFIX, CONTEXT_PREFIX

_FETCH = 20_000


@dataclass
class TrainingSet:
    """Matured decisions of one policy in a window, in time order.

    ``frame`` has one row per decision (context columns, ``action_id`` and the chosen action's features);
    the other arrays are aligned with it, ``chosen_index`` being the position of the chosen action in its
    decision's candidate set. ``actions`` (every candidate, with features) is kept only for the most recent
    rows asked for, by row number: evaluation needs it, training does not, and for a million decisions it
    would cost gigabytes.
    """

    policy: str
    reward_kind: str
    window_start: datetime
    as_of: datetime
    decisions_in_window: int
    decision_ids: list[str]
    frame: pd.DataFrame
    rewards: np.ndarray
    propensities: np.ndarray
    generations: np.ndarray
    decided_at: np.ndarray
    chosen_index: np.ndarray
    actions: dict[int, list[dict[str, Any]]]
    invalid_rewards_skipped: int = 0

    def __len__(self) -> int:
        return len(self.decision_ids)

    def row_counts(self) -> dict[str, Any]:
        """What the generation registry records about its training data."""
        positives = int((self.rewards > 0).sum())
        return {
            "decisions_in_window": self.decisions_in_window,
            "matured": len(self),
            "unlabelled": self.decisions_in_window - len(self),
            "positive_rate": positives / len(self) if len(self) else None,
            "invalid_rewards_skipped": self.invalid_rewards_skipped,
            "by_generation": {
                str(g): int(n) for g, n in zip(*np.unique(self.generations, return_counts=True), strict=True)
            },
        }

    def context(self, row: int) -> dict[str, Any]:
        """The context of one decision as it was sent (absent keys stay absent)."""
        values = self.frame.iloc[row]
        return {
            name[len(CONTEXT_PREFIX) :]: value
            for name, value in values.items()
            if name.startswith(CONTEXT_PREFIX) and value is not None and value == value  # NaN: absent
        }

    def split(self, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Indices of a time split: the first ``1 - fraction`` of rows for training, the rest held out."""
        cut = round(len(self) * (1.0 - fraction))
        return np.arange(cut), np.arange(cut, len(self))


def load_training_set(
    session: Session,
    policy: str,
    as_of: datetime,
    window: timedelta,
    reward_kind: str = "authorisation",
    generations: list[int] | None = None,
    actions_for_last: int = 0,
    progress: Any = None,
    reward_rule: RewardKind | None = None,
) -> TrainingSet:
    """Read the matured decisions of ``policy`` made in ``[as_of - window, as_of)``.

    Parameters
    ----------
    generations
        Only decisions served by these generations (default: all of them, pooled; each row keeps its own
        logged propensity, so importance weights stay right across generations).
    actions_for_last
        Keep the full candidate sets of this many most recent matured decisions (for off-policy evaluation).
    progress
        Called with the number of rows read so far (a progress bar's ``update``).
    reward_rule
        The values ``reward_kind`` takes (default: :func:`~banditgate.ledger.reward_kinds.kind_rule`); stored
        values outside it are skipped and counted.
    """
    rule = reward_rule or kind_rule(reward_kind)
    start = as_of - window
    in_window = and_(Decision.policy == policy, Decision.decided_at >= start, Decision.decided_at < as_of)
    if generations is not None:
        in_window = and_(in_window, Decision.generation.in_(generations))
    total = 0
    # The latest revision received by as-of, per decision: one ordered scan into a dict. (A join against a
    # grouped subquery let PostgreSQL pick a quadratic plan on freshly written tables.)
    labels: dict[str, float] = {}
    received = and_(Reward.kind == reward_kind, Reward.received_at <= as_of)
    revisions = (
        select(Reward.decision_id, Reward.value)
        .where(received, rule.valid(Reward.value))
        .order_by(Reward.decision_id, Reward.revision)
    )
    for batch in _batches(session.execute(revisions.execution_options(yield_per=_FETCH))):
        labels.update(batch)
    invalid: dict[str, int] = {}  # decision -> its invalid values (rare: no index spent on them)
    for decision_id, count in session.execute(
        select(Reward.decision_id, func.count())
        .where(received, rule.invalid(Reward.value))
        .group_by(Reward.decision_id)
    ):
        invalid[decision_id] = count
    skipped = 0
    query = (
        select(
            Decision.decision_id,
            Decision.generation,
            cast(Decision.context, Text),
            cast(Decision.actions, Text),
            Decision.action_id,
            Decision.propensity,
            Decision.decided_at,
        )
        .where(in_window)
        .order_by(Decision.decided_at, Decision.decision_id)
    )
    columns = _Columns()
    ids: list[str] = []
    values: list[float] = []
    propensities: list[float] = []
    served_by: list[int] = []
    times: list[datetime] = []
    recent: deque[tuple[int, list[dict[str, Any]]]] = deque(maxlen=actions_for_last)
    chosen: list[int] = []
    for batch in _batches(session.execute(query.execution_options(yield_per=_FETCH))):
        total += len(batch)
        for decision_id, generation, context, actions_json, action_id, propensity, decided_at in batch:
            if invalid:
                skipped += invalid.get(decision_id, 0)
            value = labels.get(decision_id)
            if value is None:
                continue  # not matured: its reward has not been received by as-of
            actions = orjson.loads(actions_json)
            index = next(i for i, action in enumerate(actions) if action["id"] == action_id)
            columns.add(orjson.loads(context), action_id, actions[index].get("features") or {})
            ids.append(decision_id)
            values.append(value)
            propensities.append(propensity)
            served_by.append(generation)
            times.append(decided_at)
            chosen.append(index)
            if actions_for_last:
                recent.append((len(ids) - 1, actions))
        if progress is not None:
            progress(len(batch))
    return TrainingSet(
        policy=policy,
        reward_kind=reward_kind,
        window_start=start,
        as_of=as_of,
        decisions_in_window=total,
        decision_ids=ids,
        frame=columns.frame(),
        rewards=np.asarray(values, dtype=np.float64),
        propensities=np.asarray(propensities, dtype=np.float64),
        generations=np.asarray(served_by, dtype=np.int64),
        decided_at=np.asarray(times, dtype=object),
        chosen_index=np.asarray(chosen, dtype=np.int64),
        actions=dict(recent),
        invalid_rewards_skipped=skipped,
    )


def _batches(result: Any) -> Iterator[list[Any]]:
    while batch := result.fetchmany(_FETCH):
        yield batch


class _Columns:
    """Column-wise accumulation: a million dicts would cost gigabytes, a list per column does not."""

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {}
        self._strings: dict[str, str] = {}
        self._rows = 0

    def add(self, context: dict[str, Any], action_id: str, features: dict[str, Any]) -> None:
        self._set(ACTION_ID, action_id)
        for key, value in context.items():
            self._set(CONTEXT_PREFIX + key, value)
        for key, value in features.items():
            self._set(ACTION_PREFIX + key, value)
        self._rows += 1

    def _set(self, name: str, value: Any) -> None:
        column = self._columns.get(name)
        if column is None:
            column = self._columns[name] = []
        if len(column) < self._rows:
            column.extend([None] * (self._rows - len(column)))  # the column was absent from earlier rows
        if isinstance(value, str):
            value = self._strings.setdefault(value, value)  # one object per distinct category, not per row
        column.append(value)

    def frame(self) -> pd.DataFrame:
        for column in self._columns.values():
            column.extend([None] * (self._rows - len(column)))
        # pandas infers the dtype in C: numbers become float64 or int64 columns (8 bytes a value instead
        # of a Python object each); strings, and booleans mixed with nulls, stay objects.
        return pd.DataFrame({name: pd.Series(values) for name, values in self._columns.items()})
