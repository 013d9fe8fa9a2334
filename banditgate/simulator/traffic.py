"""Traffic: transactions arriving over simulated days, each with its context, eligible actions and fate.

A day of traffic is generated at once, vectorised (:class:`TrafficBatch`): arrival times follow the
hour-of-day and weekday volume curves of :mod:`~banditgate.simulator.seasonality` in the world's time zone,
then contexts, eligibility, the true probabilities of every action and the outcome noise are drawn for the
whole day. :class:`Transaction` objects are views on one row of a batch.

Each day draws from its own random streams, derived from ``(seed, day)``, so any day can be generated on its
own and the streams are independent of the drift scenario: arrivals and contexts depend on the seed (and
covariate drift), the outcome noise on the seed only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from banditgate.policies.actions import Action
from banditgate.simulator.actions import ActionCatalogue
from banditgate.simulator.contexts import ContextBatch
from banditgate.simulator.outcomes import Outcome, OutcomeNoise, realise
from banditgate.simulator.seasonality import HOUR_VOLUME, WEEKDAY_VOLUME

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS_PER_HOUR = 3_600_000_000
MICROS_PER_DAY = 24 * MICROS_PER_HOUR

#: Random-stream labels, mixed with (seed, day) into each day's generators.
ARRIVALS_STREAM, CONTEXTS_STREAM, NOISE_STREAM = 101, 102, 103


def to_micros(t: datetime) -> int:
    """Microseconds since 1970-01-01 UTC of an aware datetime (exact)."""
    return (t - UNIX_EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    """The UTC datetime of :func:`to_micros`' count (exact)."""
    return UNIX_EPOCH + timedelta(microseconds=micros)


def day_rng(seed: int, day: int, stream: int) -> np.random.Generator:
    """The generator of one random stream of one simulated day."""
    if seed < 0 or day < 0:
        raise ValueError(f"seed and day must be non-negative, got seed={seed}, day={day}")
    return np.random.default_rng([seed, day, stream])


def arrival_micros(
    start_micros: int,
    day: int,
    decisions_per_day: int,
    utc_offsets: Any,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sorted arrival times (microseconds since 1970, UTC) in ``[start + day, start + day + 1 day)``.

    The day is cut into 24 one-hour slots; the day's count is ``round(decisions_per_day * mean intensity)``
    (intensity = hour volume x weekday volume at each slot's local mid-point, so a week averages
    ``decisions_per_day``), spread over slots by a multinomial draw and uniformly within each slot.
    ``utc_offsets`` maps an array of UTC microseconds to local UTC offsets in seconds.
    """
    slot_starts = start_micros + day * MICROS_PER_DAY + np.arange(24, dtype=np.int64) * MICROS_PER_HOUR
    mid = slot_starts + MICROS_PER_HOUR // 2
    local = mid // 1_000_000 + utc_offsets(mid)
    intensity = HOUR_VOLUME[(local // 3600) % 24] * WEEKDAY_VOLUME[(local // 86400 + 3) % 7]
    count = round(decisions_per_day * float(intensity.mean()))
    per_slot = rng.multinomial(count, intensity / intensity.sum())
    offsets = np.floor(rng.random(count) * MICROS_PER_HOUR).astype(np.int64)
    return np.sort(np.repeat(slot_starts, per_slot) + offsets)


@dataclass(frozen=True, eq=False)
class TrafficBatch:
    """The transactions of one simulated day, as columns.

    Attributes
    ----------
    ids
        Transaction ids (use them as ``decision_id``).
    micros
        Arrival times, microseconds since 1970 UTC, sorted.
    contexts
        The contexts.
    eligible
        Boolean matrix (n, n actions) over ``catalogue.ids``.
    p_authorisation, p_chargeback
        True probabilities (n, n actions): authorisation, and chargeback given authorisation, at arrival time.
    noise
        Outcome uniforms (n, 4), columns as in :class:`~banditgate.simulator.outcomes.OutcomeNoise`.
    catalogue
        The world's actions.
    clean_label_delay_days
        See :mod:`~banditgate.simulator.outcomes`.
    """

    ids: list[str]
    micros: np.ndarray
    contexts: ContextBatch
    eligible: np.ndarray
    p_authorisation: np.ndarray
    p_chargeback: np.ndarray
    noise: np.ndarray
    catalogue: ActionCatalogue
    clean_label_delay_days: float | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def times(self) -> list[datetime]:
        """Arrival times as UTC datetimes."""
        return [from_micros(m) for m in self.micros.tolist()]

    def transactions(self) -> Iterator[Transaction]:
        """The transactions in arrival order."""
        records = self.contexts.records()
        eligible = self.catalogue.eligible_ids(self.eligible)
        for row, (tx_id, t, context, ids) in enumerate(zip(self.ids, self.times(), records, eligible, strict=True)):
            yield Transaction(tx_id, t, context, ids, self, row)

    def best_actions(self) -> np.ndarray:
        """Per transaction, the catalogue index of the eligible action most likely to be authorised."""
        return np.argmax(np.where(self.eligible, self.p_authorisation, -np.inf), axis=1)

    def expected_reward(self, probabilities: np.ndarray) -> np.ndarray:
        """Per transaction, the true expected authorisation ``sum_a pi(a|x) p(x, a)`` of a policy given as an
        (n, n actions) matrix of action probabilities (zero off the eligible set)."""
        if np.any(probabilities[~self.eligible] != 0.0):
            raise ValueError("a policy must give zero probability to ineligible actions")
        return (probabilities * self.p_authorisation).sum(axis=1)

    def to_frame(self) -> pd.DataFrame:
        """Contexts with ``t``, the number of eligible actions and the best action's probability (analysis)."""
        frame = self.contexts.to_frame()
        frame.insert(0, "t", pd.to_datetime(self.micros, unit="us", utc=True))
        frame.insert(0, "id", self.ids)
        frame["n_eligible"] = self.eligible.sum(axis=1)
        best = self.best_actions()
        frame["best_action"] = pd.Categorical.from_codes(best, self.catalogue.ids)
        frame["p_best"] = self.p_authorisation[np.arange(len(self)), best]
        return frame


@dataclass(frozen=True, slots=True)
class Transaction:
    """One payment to decide on.

    Attributes
    ----------
    id
        Transaction id, to be sent as the ``decision_id``.
    t
        Simulated arrival time (UTC).
    context
        The flat context to send (22 features; strings, numbers and booleans).
    eligible
        Ids of the eligible actions, in catalogue order (at least two).
    batch, row
        Where the ground truth lives (never send it to the service).
    """

    id: str
    t: datetime
    context: dict[str, Any]
    eligible: tuple[str, ...]
    batch: TrafficBatch = field(repr=False, compare=False)
    row: int = field(repr=False, compare=False)

    def actions(self) -> list[Action]:
        """The eligible actions with their features."""
        return self.batch.catalogue.actions(self.eligible)

    def decision_request(self, policy: str | None = None) -> dict[str, Any]:
        """The JSON body of ``POST /v1/decisions`` for this transaction."""
        body: dict[str, Any] = {
            "decision_id": self.id,
            "context": self.context,
            "actions": [{"id": a.id, "features": dict(a.features)} for a in self.actions()],
        }
        if policy is not None:
            body["policy"] = policy
        return body

    def _column(self, action_id: str) -> int:
        j = self.batch.catalogue.position(action_id)
        if not self.batch.eligible[self.row, j]:
            raise ValueError(f"action {action_id!r} is not eligible for transaction {self.id}")
        return j

    def authorisation_probability(self, action_id: str) -> float:
        """True probability that the issuer authorises this payment under an eligible action."""
        return float(self.batch.p_authorisation[self.row, self._column(action_id)])

    def chargeback_probability(self, action_id: str) -> float:
        """True probability of a chargeback, given authorisation under an eligible action."""
        return float(self.batch.p_chargeback[self.row, self._column(action_id)])

    def best_action(self) -> str:
        """The eligible action most likely to be authorised (first in catalogue order on ties)."""
        scores = np.where(self.batch.eligible[self.row], self.batch.p_authorisation[self.row], -np.inf)
        return self.batch.catalogue.ids[int(np.argmax(scores))]

    def expected_reward(self, probabilities: Mapping[str, float]) -> float:
        """True expected authorisation of a policy's action probabilities (e.g. a decision's ``probabilities``)."""
        return float(sum(p * self.authorisation_probability(a) for a, p in probabilities.items()))

    def outcome(self, action_id: str) -> Outcome:
        """What happens if ``action_id`` is taken: the authorisation and, if authorised, the chargeback label."""
        j = self._column(action_id)
        batch = self.batch
        return realise(
            self.id,
            action_id,
            self.t,
            batch.catalogue.specs[j].latency_ms,
            float(batch.p_authorisation[self.row, j]),
            float(batch.p_chargeback[self.row, j]),
            OutcomeNoise(*batch.noise[self.row].tolist()),
            batch.clean_label_delay_days,
        )
