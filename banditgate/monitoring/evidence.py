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
``as_of``; its arrival time is when its first revision was received. The gate judges binary labels: a stored
value other than 0 or 1 (one an older version accepted) is skipped, so the latest valid revision is the
label, and counted in the window's ``invalid_rewards_skipped``.

Every decision of the current window is read as four narrow columns: its id, time, chosen action and segment
values, from the covering index ``ix_decisions_window`` alone, and when the label of the *arrival kind* (the
first reward kind) first arrived, from the covering index ``ix_rewards_arrival``. That is what completeness,
freshness, label latency, maturity and segment counts need, and it costs a few seconds per million decisions
instead of reading every row and its JSON documents. Everything else (generation, fallback flag, every
kind's label, context, candidate set, probability vector) is read for a seeded random sample of each window
only (``sample_size`` decisions), so the cost of an evaluation stops growing with the window.

The reference window lies in the past: given a :class:`~banditgate.monitoring.reference_cache.ReferenceCache`,
its sample is read once and reused while the window holds the same decisions (its labels are read afresh on
every evaluation). Each window is sampled with a random stream of its own, so the reference's sample does
not depend on how many decisions the current window holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import BigInteger, ColumnElement, Text, and_, cast, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from banditgate.ledger.bulk import paused_gc
from banditgate.ledger.models import Decision, Generation, Reward
from banditgate.monitoring.reference_cache import ReferenceCache

#: Columns of every window frame; plus one column per segment key and ``received:<arrival kind>``.
FLAT_COLUMNS = ("decision_id", "decided_at", "action_id")
#: Columns the sample frames add to the flat ones; plus ``label:<kind>`` and ``received:<kind>`` per kind.
SAMPLE_COLUMNS = ("generation", "fallback", "context", "actions", "probabilities")
_DOCUMENTS = ("context", "actions", "probabilities")

_IN_CHUNK = 900  # SQLite allows 999 bound parameters per statement


@dataclass(frozen=True)
class Window:
    """Decisions of one window: flat rows, and a sample of them in full.

    ``decisions`` has :data:`FLAT_COLUMNS`, one column per segment key, and ``received:<arrival kind>`` (when
    the first revision of that kind arrived, NaT if none by as-of). It holds every decision of the current
    window, and only the sampled ones of the reference. ``sample`` is a seeded random subset of the window in
    decision-time order, with the same columns, :data:`SAMPLE_COLUMNS`, and per reward kind ``k`` read
    ``label:k`` (the latest valid value received by as-of, NaN if none) and ``received:k``; ``sampled`` holds
    the positions of its rows in ``decisions``. ``total`` counts the window's decisions; ``invalid_rewards``
    are the stored rewards of the sample's decisions that were not 0 or 1, as (decision, kind, revision).
    """

    start: datetime
    end: datetime
    total: int
    decisions: pd.DataFrame
    sample: pd.DataFrame
    sampled: np.ndarray
    cache_name: str | None = None  # the reference sample's cache entry, for what is derived from it
    invalid_rewards: frozenset[tuple[str, str, int]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "decisions": self.total,
            "sampled": len(self.sample),
            "invalid_rewards_skipped": len(self.invalid_rewards),
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


@dataclass(frozen=True)
class Reading:
    """What an evaluation reads: the current ``window``'s length, the reward kinds (the first is the arrival
    kind, whose first arrival is read for every decision), the segment keys, and the samples' size and seed."""

    window: timedelta
    reward_kinds: tuple[str, ...]
    segment_keys: tuple[str, ...] = ()
    sample_size: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.reward_kinds:
            raise ValueError("an evidence reading needs at least one reward kind")


def read_evidence(
    session: Session, generation: Generation, as_of: datetime, reading: Reading, cache: ReferenceCache | None = None
) -> Evidence:
    """Read the current window in full and a sample of the reference window (see the module docstring)."""
    reader = _Reader.for_reading(session, generation.policy, as_of, reading)
    stream = np.random.default_rng(_streams(reading.seed)[0])
    current = reader.current(as_of - reading.window, as_of, reading.sample_size, stream)
    reference = read_reference(session, generation, as_of, reading, cache)
    return Evidence(generation.policy, as_of, current, reference, reader.kinds, reader.keys)


def read_reference(
    session: Session, generation: Generation, as_of: datetime, reading: Reading, cache: ReferenceCache | None = None
) -> Window:
    """The reference window of :func:`read_evidence` alone (e.g. to fill the cache when a generation is made)."""
    if generation.training_window_start is not None and generation.training_window_end is not None:
        start, end = generation.training_window_start, min(generation.training_window_end, as_of)
    else:
        start, end = as_of - 2 * reading.window, as_of - reading.window
    reader = _Reader.for_reading(session, generation.policy, as_of, reading)
    held_out = int(generation.row_counts.get("held_out") or 0)
    return reader.reference(start, end, reading.sample_size, reading.seed, held_out, cache)


@dataclass(frozen=True)
class _Reader:
    session: Session
    policy: str
    as_of: datetime
    kinds: tuple[str, ...]
    keys: tuple[str, ...]

    @classmethod
    def for_reading(cls, session: Session, policy: str, as_of: datetime, reading: Reading) -> _Reader:
        return cls(session, policy, as_of, tuple(dict.fromkeys(reading.reward_kinds)), tuple(reading.segment_keys))

    def current(self, start: datetime, end: datetime, sample_size: int, rng: np.random.Generator) -> Window:
        """Every decision of the window, flat, and a sample of them in full."""
        in_window = self._in_window(start, end)
        segments = self._segment_columns(in_window)
        arrival = f"received:{self.kinds[0]}"
        statement = (
            select(Decision.decision_id, _Micros(Decision.decided_at), Decision.action_id, *segments, self._arrival())
            .where(in_window)
            .order_by(Decision.decided_at, Decision.decision_id)
        )
        columns = self._columns(statement, [*FLAT_COLUMNS, *self.keys, arrival])
        total = len(columns["decision_id"])
        frame = pd.DataFrame(
            {
                "decision_id": columns["decision_id"],
                "decided_at": _times(columns["decided_at"]),
                "action_id": columns["action_id"],
                **{key: columns[key] for key in self.keys},
                arrival: _times(columns[arrival]),
            }
        )
        picked = np.sort(rng.choice(total, size=min(sample_size, total), replace=False))
        sample, skipped = self._with_labels(self._details([columns["decision_id"][i] for i in picked], segments))
        return Window(start, end, total, frame, sample, picked, invalid_rewards=skipped)

    def reference(
        self,
        start: datetime,
        end: datetime,
        sample_size: int,
        seed: int,
        held_out: int,
        cache: ReferenceCache | None,
    ) -> Window:
        """A sample of the window in full; its flat rows are the sample's. The last ``held_out`` are marked."""
        in_window = self._in_window(start, end)
        total = self.session.scalar(select(func.count()).where(in_window)) or 0
        name = ReferenceCache.name(
            entry="reference sample",
            policy=self.policy,
            window=[start.isoformat(), end.isoformat()],
            decisions=total,
            sample_size=sample_size,
            seed=seed,
            held_out=held_out,
            segment_keys=self.keys,
        )
        sample = cache.load(name) if cache is not None else None
        if sample is None:
            ordered = select(Decision.decision_id).where(in_window).order_by(Decision.decided_at, Decision.decision_id)
            ids = [row[0] for row in _raw(self.session, ordered)]
            rng = np.random.default_rng(_streams(seed)[1])
            picked = np.sort(rng.choice(len(ids), size=min(sample_size, len(ids)), replace=False))
            sample = self._details([ids[i] for i in picked], self._segment_columns(in_window))
            sample["held_out"] = picked >= len(ids) - min(held_out, len(ids))
            if cache is not None:
                cache.store(name, sample)
        sample, skipped = self._with_labels(sample)
        flat = [*FLAT_COLUMNS, *self.keys, f"received:{self.kinds[0]}"]
        return Window(start, end, total, sample[flat].copy(), sample, np.arange(len(sample)), name, skipped)

    def _in_window(self, start: datetime, end: datetime) -> ColumnElement[bool]:
        return and_(Decision.policy == self.policy, Decision.decided_at > start, Decision.decided_at <= end)

    def _segment_columns(self, in_window: ColumnElement[bool]) -> list[ColumnElement[Any]]:
        """Each segment key's value: from the logged segment values, or from the context where they lack it.

        Decisions logged before the key was configured lack it; reading the context costs a read of every row,
        so it is done only for a window where some decision lacks the key.
        """
        columns = []
        for key in self.keys:
            logged = Decision.segment_values[key].as_string()
            lacking = self.session.scalar(select(func.count()).where(in_window, _lacks(self.session, key)))
            value = logged if not lacking else func.coalesce(logged, Decision.context[key].as_string())
            columns.append(value.label(f"segment:{key}"))
        return columns

    def _arrival(self) -> ColumnElement[Any]:
        """When the first revision of the arrival kind's label arrived, by as-of: a correlated lookup that the
        covering index ``ix_rewards_arrival`` answers without reading reward rows."""
        return (
            select(_Micros(func.min(Reward.received_at)))
            .where(
                Reward.decision_id == Decision.decision_id,
                Reward.kind == self.kinds[0],
                Reward.received_at <= self.as_of,
            )
            .scalar_subquery()
        )

    def _details(self, decision_ids: list[str], segments: list[ColumnElement[Any]]) -> pd.DataFrame:
        """The sampled decisions in full, in the order given (labels apart: :meth:`_with_labels`)."""
        fallback = Decision.exploration_params["fallback"].as_string().is_not(None)
        head = ["decision_id", "decided_at", "generation", "action_id", "fallback", *self.keys]
        found: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks(decision_ids):
            statement = select(
                Decision.decision_id,
                _Micros(Decision.decided_at),
                Decision.generation,
                Decision.action_id,
                fallback,
                *segments,
                # Read as text and parsed with orjson: several times faster than the JSON type's json.loads.
                *(cast(getattr(Decision, c), Text) for c in _DOCUMENTS),
            ).where(Decision.decision_id.in_(chunk))
            for row in _raw(self.session, statement):
                found[row[0]] = row
        rows = [found[d] for d in decision_ids]
        sample = pd.DataFrame([row[: len(head)] for row in rows], columns=head)
        sample["decided_at"] = _times(sample["decided_at"].to_numpy())
        sample["fallback"] = sample["fallback"].astype(bool)
        for i, column in enumerate(_DOCUMENTS, start=len(head)):
            sample[column] = [orjson.loads(row[i]) for row in rows]
        return sample

    def _with_labels(self, sample: pd.DataFrame) -> tuple[pd.DataFrame, frozenset[tuple[str, str, int]]]:
        """A copy of ``sample`` with every kind's label as of as-of, and the invalid rewards skipped."""
        sample = sample.copy()
        labels, skipped = self._labels(sample["decision_id"].tolist())
        for kind in self.kinds:
            sample[f"label:{kind}"] = sample["decision_id"].map(labels[f"label:{kind}"]).astype(np.float64)
            sample[f"received:{kind}"] = _times(sample["decision_id"].map(labels[f"received:{kind}"]).to_numpy())
        return sample, skipped

    def _labels(self, decision_ids: list[str]) -> tuple[pd.DataFrame, frozenset[tuple[str, str, int]]]:
        """Per decision and kind: the latest valid value received by as-of, and when its first revision arrived
        (valid or not, like the arrival times of the whole window); and the invalid rewards skipped."""
        rows = []
        for chunk in _chunks(decision_ids):
            statement = select(
                Reward.decision_id, Reward.kind, Reward.value, Reward.revision, _Micros(Reward.received_at)
            ).where(Reward.decision_id.in_(chunk), Reward.kind.in_(self.kinds), Reward.received_at <= self.as_of)
            rows.extend(_raw(self.session, statement))
        rewards = pd.DataFrame(rows, columns=["decision_id", "kind", "value", "revision", "received_at"])
        valid = rewards["value"].isin((0.0, 1.0)).to_numpy(dtype=bool)
        invalid = rewards.loc[~valid, ["decision_id", "kind", "revision"]]
        skipped = frozenset((str(d), str(k), int(r)) for d, k, r in invalid.itertuples(index=False))
        ordered = rewards.sort_values("revision", kind="stable")
        latest = ordered[valid[ordered.index]].groupby(["kind", "decision_id"], sort=False)["value"].last()
        latest = latest.astype(np.float64)
        first = ordered.groupby(["kind", "decision_id"], sort=False)["received_at"].min().astype(np.float64)
        out = pd.DataFrame(index=pd.Index(decision_ids, name="decision_id").unique())
        valued = set(latest.index.get_level_values("kind"))
        found = set(first.index.get_level_values("kind"))
        for kind in self.kinds:
            out[f"label:{kind}"] = latest.xs(kind, level="kind") if kind in valued else np.nan
            out[f"received:{kind}"] = first.xs(kind, level="kind") if kind in found else np.nan
        return out, skipped

    def _columns(self, statement: Any, names: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        with paused_gc():
            rows = _raw(self.session, statement)
            values = list(zip(*rows, strict=True)) if rows else [() for _ in names]
            del rows  # freed by reference counting now, instead of traversed by the collector once it is back on
        return dict(zip(names, values, strict=True))


def _raw(session: Session, statement: Any) -> list[tuple[Any, ...]]:
    """The statement's rows as the driver returns them: plain tuples, without SQLAlchemy's per-row processing
    (a second or more per million rows). Callers select only values that need no processing."""
    result = session.connection().execute(statement)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


class _Micros(FunctionElement[int]):
    """A timestamp as integer microseconds since the epoch, computed by the database.

    SQLite stores SQLAlchemy's ``YYYY-MM-DD HH:MM:SS.ffffff`` text; PostgreSQL a timestamp. Integers cross the
    driver cheaply and become datetime64 in one vectorised step, where parsing a million texts costs a second.
    """

    type = BigInteger()
    name = "micros"
    inherit_cache = True


@compiles(_Micros, "sqlite")
def _micros_sqlite(element: _Micros, compiler: Any, **kw: Any) -> str:
    text = compiler.process(next(iter(element.clauses)), **kw)
    # Whole seconds from the text without its fraction: SQLite's date functions round to the millisecond, which
    # would turn 59.999999 into the next second.
    return (
        f"(CAST(strftime('%s', substr({text}, 1, 19)) AS INTEGER) * 1000000 + CAST(substr({text}, 21, 6) AS INTEGER))"
    )


@compiles(_Micros, "postgresql")
def _micros_postgresql(element: _Micros, compiler: Any, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(next(iter(element.clauses)), **kw)}) * 1000000 AS BIGINT)"


def _lacks(session: Session, key: str) -> ColumnElement[bool]:
    """Whether a decision's logged segment values lack ``key`` (absent, not merely null)."""
    if session.get_bind().dialect.name == "postgresql":
        return ~type_coerce(Decision.segment_values, JSONB).has_key(key)
    return func.json_type(Decision.segment_values, f'$."{key}"').is_(None)


def _times(micros: Sequence[Any]) -> pd.Series:
    """Microseconds since the epoch (None or NaN for none) as datetime64[ns, UTC]."""
    # Through float64, which converts None in C and holds every microsecond exactly until the year 2255.
    values = np.array(micros, dtype=np.float64)
    missing = np.isnan(values)
    nanos = np.where(missing, 0.0, values).astype(np.int64) * 1000
    nanos[missing] = np.iinfo(np.int64).min  # NaT
    return pd.Series(pd.DatetimeIndex(nanos.view("datetime64[ns]")).tz_localize("UTC"))


def _streams(seed: int) -> list[np.random.SeedSequence]:
    """Independent random streams for the current and the reference window's samples."""
    return np.random.SeedSequence(seed).spawn(2)


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i : i + _IN_CHUNK]
