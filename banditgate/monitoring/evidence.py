"""The evidence behind a generation, read from the ledger as of a point in time.

A gate evaluation judges one generation of a policy at a time ``as_of`` on two windows of decisions:

- the *current* window, the policy's decisions (whichever generation served them) made in
  ``(as_of - window, as_of]``: what production traffic looks like now and how many of its labels are in;
- the *reference* window, what the generation knows: its training window (for a generation without one,
  generation 0, the window of the same length just before the current one). Its rows carry ``held_out``:
  whether retraining held the decision out at the end of the window. The model never fitted those, so its
  scores on them are out-of-sample like its scores in production (in-sample scores are more spread and would
  read as drift): they are the reference *scores*, while the whole window is the reference *contexts*.

Everything is read as of ``as_of``: decisions made after it and rewards *received* after it do not exist
yet, so an evaluation replayed later gives the same answer. A label is the latest revision received by
``as_of``; its arrival time is when its first revision was received.

Every decision of both windows is read as a few flat columns (times, generation, action, labels, segment
values extracted by the database from the JSON context), which is what completeness, freshness, label
latency, maturity and operational counts need. Contexts, candidate sets and probability vectors, which the
scores and the drift statistics need, are read for a seeded random sample of each window only
(``sample_size`` decisions), so the cost of an evaluation stops growing with the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import String, Text, and_, cast, select, type_coerce
from sqlalchemy.orm import Session

from banditgate.ledger.models import Decision, Generation, Reward

#: Columns of every window frame; plus one column per segment key.
FLAT_COLUMNS = ("decision_id", "decided_at", "generation", "action_id", "fallback")
#: Columns the sample frames add.
SAMPLE_COLUMNS = ("context", "actions", "probabilities")

_IN_CHUNK = 900  # SQLite allows 999 bound parameters per statement


@dataclass(frozen=True)
class Window:
    """Decisions of one window: flat rows, and a sample of them in full.

    ``decisions`` has :data:`FLAT_COLUMNS`, the segment columns, and per reward kind ``k`` read: ``label:k``
    (the latest value received by as-of, NaN if none) and ``received:k`` (first arrival, NaT if none). It
    holds every decision of the current window, and only the sampled ones of the reference. ``sample`` is a
    seeded random subset of the window (same columns) with :data:`SAMPLE_COLUMNS` added. ``total`` counts
    the window's decisions.
    """

    start: datetime
    end: datetime
    total: int
    decisions: pd.DataFrame
    sample: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "decisions": self.total,
            "sampled": len(self.sample),
        }


@dataclass(frozen=True)
class Evidence:
    """What the ledger holds about a policy as of ``as_of``: the current and the reference window."""

    policy: str
    as_of: datetime
    current: Window
    reference: Window
    reward_kinds: tuple[str, ...]
    segment_keys: tuple[str, ...]


def read_evidence(
    session: Session,
    generation: Generation,
    as_of: datetime,
    *,
    window: timedelta,
    reward_kinds: Sequence[str],
    segment_keys: Sequence[str] = (),
    sample_size: int = 20_000,
    seed: int = 0,
) -> Evidence:
    """Read the current window in full and a sample of the reference window (see the module docstring)."""
    start = as_of - window
    if generation.training_window_start is not None and generation.training_window_end is not None:
        reference_start = generation.training_window_start
        reference_end = min(generation.training_window_end, as_of)
    else:
        reference_start, reference_end = start - window, start
    reader = _Reader(session, generation.policy, as_of, tuple(dict.fromkeys(reward_kinds)), tuple(segment_keys))
    rng = np.random.default_rng(seed)
    held_out = int(generation.row_counts.get("held_out") or 0)
    current = reader.window(start, as_of, sample_size, rng, complete=True)
    reference = reader.window(reference_start, reference_end, sample_size, rng, complete=False, held_out=held_out)
    return Evidence(generation.policy, as_of, current, reference, reader.kinds, reader.keys)


@dataclass(frozen=True)
class _Reader:
    session: Session
    policy: str
    as_of: datetime
    kinds: tuple[str, ...]
    keys: tuple[str, ...]

    def window(
        self,
        start: datetime,
        end: datetime,
        sample_size: int,
        rng: np.random.Generator,
        *,
        complete: bool,
        held_out: int = 0,
    ) -> Window:
        """The window's decisions (all of them when ``complete``); its last ``held_out`` ones are marked."""
        in_window = and_(Decision.policy == self.policy, Decision.decided_at > start, Decision.decided_at <= end)
        if complete:
            frame = self._flat([in_window])
            total = len(frame)
            picked = np.sort(rng.choice(total, size=min(sample_size, total), replace=False))
            sample = frame.iloc[picked].reset_index(drop=True)
        else:
            ids = self.session.scalars(
                select(Decision.decision_id).where(in_window).order_by(Decision.decided_at, Decision.decision_id)
            ).all()
            total = len(ids)
            picked = np.sort(rng.choice(total, size=min(sample_size, total), replace=False))
            chosen = [ids[i] for i in picked]
            frame = self._flat(
                [Decision.decision_id.in_(chosen[i : i + _IN_CHUNK]) for i in range(0, len(chosen), _IN_CHUNK)]
            )
            held = np.zeros(total, dtype=bool)
            held[total - min(held_out, total) :] = True
            frame["held_out"] = frame["decision_id"].map(dict(zip(ids, held, strict=True))).astype(bool)
            sample = frame.copy()
        details = self._details(sample["decision_id"].tolist())
        for column in SAMPLE_COLUMNS:
            sample[column] = [details[d][column] for d in sample["decision_id"]]
        return Window(start, end, total, frame, sample)

    def _flat(self, conditions: list[Any]) -> pd.DataFrame:
        """Flat rows and labels of the decisions matching any of ``conditions``, in decision time order."""
        # Times come back as the driver gives them (text on SQLite) and are parsed by pandas in one vectorised
        # call: per-row conversion to datetime objects costs seconds on a million rows.
        columns = [
            Decision.decision_id,
            type_coerce(Decision.decided_at, String).label("decided_at"),
            Decision.generation,
            Decision.action_id,
            Decision.exploration_params["fallback"].as_string().label("fallback"),
            *(Decision.context[key].as_string().label(f"segment:{key}") for key in self.keys),
        ]
        names = [*FLAT_COLUMNS, *(f"segment:{k}" for k in self.keys)]
        rows = [row for condition in conditions for row in self.session.execute(select(*columns).where(condition))]
        frame = pd.DataFrame(rows, columns=names)
        frame["decided_at"] = _utc(frame["decided_at"])
        frame["fallback"] = frame["fallback"].notna()
        for key in self.keys:
            frame[key] = frame.pop(f"segment:{key}").astype(object)
        for kind in self.kinds:
            frame = frame.merge(self._labels(conditions, kind), how="left", left_on="decision_id", right_index=True)
        return frame.sort_values(["decided_at", "decision_id"], kind="stable").reset_index(drop=True)

    def _labels(self, conditions: list[Any], kind: str) -> pd.DataFrame:
        """Per decision: the latest value of ``kind`` received by as-of, and when its first revision arrived."""
        received = type_coerce(Reward.received_at, String).label("received_at")
        query = select(Reward.decision_id, Reward.value, Reward.revision, received).join(
            Decision, Decision.decision_id == Reward.decision_id
        )
        rows = [
            row
            for condition in conditions
            for row in self.session.execute(
                query.where(condition, Reward.kind == kind, Reward.received_at <= self.as_of)
            )
        ]
        rewards = pd.DataFrame(rows, columns=["decision_id", "value", "revision", "received_at"])
        rewards["received_at"] = _utc(rewards["received_at"])
        grouped = rewards.sort_values("revision", kind="stable").groupby("decision_id", sort=False)
        return pd.DataFrame(
            {
                f"label:{kind}": grouped["value"].last().astype(np.float64),
                f"received:{kind}": grouped["received_at"].min(),
            }
        )

    def _details(self, decision_ids: list[str]) -> dict[str, dict[str, Any]]:
        # Read as text and parsed with orjson: several times faster than the JSON type's json.loads.
        columns = [cast(getattr(Decision, c), Text) for c in SAMPLE_COLUMNS]
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(decision_ids), _IN_CHUNK):
            query = select(Decision.decision_id, *columns).where(
                Decision.decision_id.in_(decision_ids[i : i + _IN_CHUNK])
            )
            for decision_id, *documents in self.session.execute(query):
                found[decision_id] = {c: orjson.loads(d) for c, d in zip(SAMPLE_COLUMNS, documents, strict=True)}
        return found


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps (SQLite's naive UTC text, or PostgreSQL's aware datetimes) as datetime64[ns, UTC]."""
    return pd.to_datetime(values, utc=True, format="ISO8601")
