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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy.orm import Session

from banditgate.ledger import matured
from banditgate.ledger.bulk import paused_gc
from banditgate.ledger.reward_kinds import RewardKind, kind_rule
from banditgate.policies.oracles.features import ACTION_ID, ACTION_PREFIX, CONTEXT_PREFIX


@dataclass
class TrainingSet:
    """Matured decisions of one policy in a window, in time order.

    ``frame`` has one row per decision (context columns, ``action_id`` and the chosen action's features);
    the other arrays are aligned with it, ``chosen_index`` being the position of the chosen action in its
    decision's candidate set. ``actions`` (every candidate, with features) is kept only for the most recent
    rows asked for, by row number: evaluation needs it, training does not, and for a million decisions it
    would cost gigabytes. Decisions that offered the same candidate set share its decoded objects: read them,
    do not change them.
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
    #: The last candidate frame built from these logs (see ``evaluation.candidate_frame``): choosing the
    #: exploration and the OPE report score the same held-out decisions.
    candidate_frame_cache: tuple[bytes, pd.DataFrame, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

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

    def contexts(self, rows: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """:meth:`context` of several rows: one slice of the frame instead of one row lookup each."""
        names = [name for name in self.frame.columns if name.startswith(CONTEXT_PREFIX)]
        keys = [name[len(CONTEXT_PREFIX) :] for name in names]
        block = self.frame.iloc[np.asarray(rows, dtype=np.int64)][names]
        return [
            {key: value for key, value in zip(keys, values, strict=True) if value is not None and value == value}
            for values in block.itertuples(index=False, name=None)
        ]

    def split(self, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Indices of a time split: the first ``1 - fraction`` of rows for training, the rest held out."""
        cut = round(len(self) * (1.0 - fraction))
        return np.arange(cut), np.arange(cut, len(self))


#: Distinct candidate-set documents remembered while reading (the memo starts over beyond that).
_CANDIDATE_SETS = 10_000


@paused_gc()
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
    total = 0
    labels = matured.latest_rewards(session, reward_kind, as_of, rule)
    invalid = matured.invalid_reward_counts(session, reward_kind, as_of, rule)
    skipped = 0
    columns = _Columns()
    ids: list[str] = []
    values: list[float] = []
    propensities: list[float] = []
    served_by: list[int] = []
    times: list[datetime] = []
    recent: deque[tuple[int, list[dict[str, Any]]]] = deque(maxlen=actions_for_last)
    # Most decisions offer one of a few candidate sets: each distinct document is decoded once (with where each
    # action id sits), which saves most of the read's JSON decoding.
    candidate_sets: dict[str, tuple[list[dict[str, Any]], dict[str, int]]] = {}
    chosen: list[int] = []
    for batch in matured.window_decisions(session, policy, start, as_of, generations):
        total += len(batch)
        contexts: list[dict[str, Any]] = []
        action_ids: list[str] = []
        features: list[dict[str, Any]] = []
        for decision_id, generation, context, actions_json, action_id, propensity, decided_at in batch:
            if invalid:
                skipped += invalid.get(decision_id, 0)
            value = labels.get(decision_id)
            if value is None:
                continue  # not matured: its reward has not been received by as-of
            known = candidate_sets.get(actions_json)
            if known is None:
                if len(candidate_sets) >= _CANDIDATE_SETS:
                    candidate_sets.clear()
                actions = orjson.loads(actions_json)
                positions: dict[str, int] = {}
                for i, action in enumerate(actions):
                    positions.setdefault(action["id"], i)
                known = candidate_sets[actions_json] = (actions, positions)
            actions, positions = known
            index = positions[action_id]
            contexts.append(orjson.loads(context))
            action_ids.append(action_id)
            features.append(actions[index].get("features") or {})
            ids.append(decision_id)
            values.append(value)
            propensities.append(propensity)
            served_by.append(generation)
            times.append(decided_at)
            chosen.append(index)
            if actions_for_last:
                recent.append((len(ids) - 1, actions))
        columns.extend(contexts, action_ids, features)
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


class _Columns:
    """Column-wise accumulation: a million dicts would cost gigabytes, a list per column does not.

    Columns appear in the order their keys are first seen (the action id, context keys, action feature keys);
    a column absent from some rows holds None there. Rows are added a batch at a time, and a run of rows whose
    documents have the same keys in the same order (nearly every row of a log) is transposed at once.
    """

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {}
        self._strings: dict[str, str] = {}
        self._rows = 0

    def extend(self, contexts: list[dict[str, Any]], action_ids: list[str], features: list[dict[str, Any]]) -> None:
        """Append one row per (context, chosen action id, chosen action's features)."""
        layouts = [(tuple(context), tuple(chosen)) for context, chosen in zip(contexts, features, strict=True)]
        start = 0
        while start < len(layouts):
            layout = layouts[start]
            end = start + 1
            while end < len(layouts) and layouts[end] == layout:
                end += 1
            context_keys, feature_keys = layout
            names = [ACTION_ID, *(CONTEXT_PREFIX + k for k in context_keys), *(ACTION_PREFIX + k for k in feature_keys)]
            run = [
                action_ids[start:end],
                *zip(*(context.values() for context in contexts[start:end]), strict=True),
                *zip(*(chosen.values() for chosen in features[start:end]), strict=True),
            ]
            for name, column_values in zip(names, run, strict=True):
                self._column(name).extend(self._interned(column_values))
            self._rows += end - start
            start = end

    def _column(self, name: str) -> list[Any]:
        """The column ``name``, created if new and padded with None up to the rows added so far."""
        column = self._columns.get(name)
        if column is None:
            column = self._columns[name] = []
        if len(column) < self._rows:
            column.extend([None] * (self._rows - len(column)))  # the column was absent from earlier rows
        return column

    def _interned(self, values: Any) -> Any:
        """``values`` with one string object per distinct category, not one per row."""
        kinds = set(map(type, values))
        if str not in kinds:
            return values
        if len(kinds) == 1:
            return map(self._strings.setdefault, values, values)
        return [self._strings.setdefault(v, v) if type(v) is str else v for v in values]

    def frame(self) -> pd.DataFrame:
        for column in self._columns.values():
            column.extend([None] * (self._rows - len(column)))
        # pandas infers the dtype in C: numbers become float64 or int64 columns (8 bytes a value instead
        # of a Python object each); strings, and booleans mixed with nulls, stay objects.
        return pd.DataFrame({name: pd.Series(values) for name, values in self._columns.items()})
