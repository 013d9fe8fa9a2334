"""The payment world: structure, ground truth, drift and traffic behind one seeded object.

A :class:`PaymentWorld` is fixed by its seed (BIN table, merchants, latent issuer traits), its drift scenario,
its epoch (day 0 of the drift schedule) and its time zone. Traffic is drawn from it with a separate traffic
seed, so one world can produce independent samples (train on seed 1, evaluate on seed 2) and two worlds that
differ only in their scenario produce the same arrivals and noise for the same traffic seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from banditgate.policies.actions import Action
from banditgate.simulator.actions import ActionCatalogue
from banditgate.simulator.authorisation import AuthorisationModel, IssuerTraits
from banditgate.simulator.cards import CardTable
from banditgate.simulator.chargebacks import ChargebackModel
from banditgate.simulator.clock import require_aware
from banditgate.simulator.contexts import ContextBatch, ContextSampler, ContextSchema
from banditgate.simulator.drift import DriftEffects, DriftScenario, as_scenario
from banditgate.simulator.merchants import MerchantTable
from banditgate.simulator.outcomes import Outcome
from banditgate.simulator.seasonality import local_time_fields
from banditgate.simulator.traffic import (
    ARRIVALS_STREAM,
    CONTEXTS_STREAM,
    MICROS_PER_DAY,
    NOISE_STREAM,
    TrafficBatch,
    Transaction,
    arrival_micros,
    day_rng,
    to_micros,
)

#: Default day 0 of the drift schedule: a Monday.
DEFAULT_EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
DEFAULT_TIMEZONE = "Europe/Amsterdam"

# Random-stream labels of the world's structure, mixed with its seed.
_CARDS_STREAM, _MERCHANTS_STREAM, _ISSUERS_STREAM = 1, 2, 3


class PaymentWorld:
    """A seeded synthetic payment world with a drift scenario.

    Parameters
    ----------
    scenario
        A preset name (``none``, ``covariate``, ``concept``, ``prior``, ``mixed``) or a
        :class:`~banditgate.simulator.drift.DriftScenario`.
    seed
        Seed of the world's structure (BINs, merchants, issuers' latent traits).
    epoch
        Day 0 of the drift schedule (timezone-aware).
    timezone
        IANA time zone of the merchants' local time (``hour_of_day``, ``day_of_week``, seasonality).
    clean_label_delay_days
        ``None``: a clean payment's chargeback label (0) arrives after the same random delay as a chargeback;
        a number: it is confirmed at that fixed age (see :mod:`~banditgate.simulator.outcomes`).

    Examples
    --------
    >>> world = PaymentWorld("concept")
    >>> t, tx = next(world.traffic(days=1, decisions_per_day=2000, seed=1))
    >>> tx.id, len(tx.context), tx.eligible[:2]
    ('sim1-d000-000000', 22, ('none', 'route_secondary'))
    >>> p = world.authorisation_probability(tx.context, "none", t)
    >>> abs(p - tx.authorisation_probability("none")) < 1e-12, 0.0 < p < 1.0
    (True, True)
    >>> world.best_action(tx.context, tx.eligible, t) == tx.best_action()
    True
    >>> [e.kind for e in tx.outcome("none").events][:1]
    ['authorisation']
    """

    def __init__(
        self,
        scenario: str | DriftScenario = "none",
        *,
        seed: int = 0,
        epoch: datetime = DEFAULT_EPOCH,
        timezone: str = DEFAULT_TIMEZONE,
        clean_label_delay_days: float | None = None,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if clean_label_delay_days is not None and not 0.0 < clean_label_delay_days <= 540.0:
            raise ValueError(f"clean_label_delay_days must be in (0, 540], got {clean_label_delay_days!r}")
        self.scenario = as_scenario(scenario)
        self.seed = seed
        self.epoch = require_aware(epoch, "epoch")
        self.timezone = ZoneInfo(timezone)
        self.clean_label_delay_days = clean_label_delay_days
        self.cards = CardTable.generate(np.random.default_rng([seed, _CARDS_STREAM]))
        self.merchants = MerchantTable.generate(np.random.default_rng([seed, _MERCHANTS_STREAM]))
        traits = IssuerTraits.generate(np.random.default_rng([seed, _ISSUERS_STREAM]), len(self.cards.issuers))
        self.catalogue = ActionCatalogue()
        self.schema = ContextSchema.for_world(self.cards, self.merchants)
        offset = self.epoch.astimezone(self.timezone).utcoffset() or timedelta(0)
        self.sampler = ContextSampler(self.schema, self.cards, self.merchants, round(offset / timedelta(hours=1)))
        self.authorisation = AuthorisationModel(self.cards, self.catalogue, traits)
        self.chargebacks = ChargebackModel(self.catalogue)
        self._epoch_micros = to_micros(self.epoch)

    def __repr__(self) -> str:
        return f"PaymentWorld(scenario={self.scenario.name!r}, seed={self.seed}, epoch={self.epoch.isoformat()})"

    # -- time ------------------------------------------------------------------------------------------

    def day(self, t: datetime) -> float:
        """Days since the epoch (the drift schedule's clock)."""
        return (to_micros(require_aware(t)) - self._epoch_micros) / MICROS_PER_DAY

    def effects(self, t: datetime) -> DriftEffects:
        """The drift effects at ``t``."""
        return self.scenario.effects(self.day(t))

    def _effects_at(self, micros: np.ndarray) -> DriftEffects:
        return self.scenario.effects((micros - self._epoch_micros) / MICROS_PER_DAY)

    def utc_offsets(self, micros: np.ndarray) -> np.ndarray:
        """Local UTC offsets (seconds) of UTC timestamps in microseconds (looked up once per hour)."""
        hours, inverse = np.unique(np.asarray(micros) // 3_600_000_000, return_inverse=True)
        offsets = [
            (datetime.fromtimestamp(h * 3600, UTC).astimezone(self.timezone).utcoffset() or timedelta(0))
            // timedelta(seconds=1)
            for h in hours.tolist()
        ]
        return np.asarray(offsets, dtype=np.int64)[inverse].reshape(np.shape(micros))

    # -- contexts and actions --------------------------------------------------------------------------

    def sample_contexts(self, times: Sequence[datetime], rng: np.random.Generator) -> ContextBatch:
        """Contexts of transactions at the given times, drawn with ``rng`` (covariate drift applies)."""
        micros = np.array([to_micros(require_aware(t)) for t in times], dtype=np.int64)
        return self._sample(micros, rng)

    def sample_context(self, t: datetime, rng: np.random.Generator) -> dict[str, Any]:
        """One context at time ``t``.

        >>> world = PaymentWorld()
        >>> context = world.sample_context(datetime(2026, 2, 6, 20, tzinfo=UTC), np.random.default_rng(0))
        >>> context["hour_of_day"], context["day_of_week"], sorted(context)[:3]
        (21, 4, ['amount', 'amount_eur', 'bin'])
        """
        return self.sample_contexts([t], rng).records()[0]

    def _sample(self, micros: np.ndarray, rng: np.random.Generator) -> ContextBatch:
        hour, weekday = local_time_fields(micros, self.utc_offsets(micros))
        return self.sampler.sample(hour, weekday, self._effects_at(micros).covariate, rng)

    def encode(self, contexts: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> ContextBatch:
        """Columns of one context dict or of a sequence of them (``ValueError`` on missing or unknown values)."""
        records = [contexts] if isinstance(contexts, Mapping) else list(contexts)
        return self.schema.encode(records)

    def eligible_actions(self, context: Mapping[str, Any]) -> tuple[str, ...]:
        """Ids of the actions the rules allow for this context, in catalogue order."""
        return self.catalogue.eligible_ids(self.catalogue.eligibility(self.encode(context)))[0]

    def actions(self, action_ids: Sequence[str]) -> list[Action]:
        """The actions with their features."""
        return self.catalogue.actions(list(action_ids))

    # -- ground truth ----------------------------------------------------------------------------------

    def authorisation_matrix(self, contexts: ContextBatch, times: Sequence[datetime] | np.ndarray) -> np.ndarray:
        """True authorisation probabilities (n contexts, every catalogue action) at the given times.

        ``times`` are datetimes or microseconds since 1970 (UTC), one per context.
        """
        return self.authorisation.probabilities(contexts, self._effects_at(self._micros(times)))

    def chargeback_matrix(self, contexts: ContextBatch, times: Sequence[datetime] | np.ndarray) -> np.ndarray:
        """True chargeback probabilities given authorisation (n contexts, every catalogue action)."""
        return self.chargebacks.probabilities(contexts, self._effects_at(self._micros(times)))

    def authorisation_probabilities(
        self, context: Mapping[str, Any], action_ids: Sequence[str] | None, t: datetime
    ) -> np.ndarray:
        """True authorisation probability of each action (all catalogue actions when ``None``) at ``t``."""
        row = self.authorisation_matrix(self.encode(context), [t])[0]
        ids = self.catalogue.ids if action_ids is None else action_ids
        return row[[self.catalogue.position(a) for a in ids]]

    def authorisation_probability(self, context: Mapping[str, Any], action_id: str, t: datetime) -> float:
        """True probability that the issuer authorises the payment under ``action_id`` at ``t``."""
        return float(self.authorisation_probabilities(context, [action_id], t)[0])

    def chargeback_probability(self, context: Mapping[str, Any], action_id: str, t: datetime) -> float:
        """True probability of a chargeback given authorisation under ``action_id`` at ``t``."""
        row = self.chargeback_matrix(self.encode(context), [t])[0]
        return float(row[self.catalogue.position(action_id)])

    def best_action(self, context: Mapping[str, Any], eligible: Sequence[str] | None, t: datetime) -> str:
        """The action among ``eligible`` (default: the rules' eligible set) most likely to be authorised.

        Ties go to the first in ``eligible`` order.
        """
        ids = self.eligible_actions(context) if eligible is None else tuple(eligible)
        if not ids:
            raise ValueError("no eligible actions")
        return ids[int(np.argmax(self.authorisation_probabilities(context, ids, t)))]

    def policy_value(self, context: Mapping[str, Any], probabilities: Mapping[str, float], t: datetime) -> float:
        """True expected authorisation of a policy in this context: ``sum_a pi(a|x) p(x, a, t)``."""
        ids = list(probabilities)
        p = self.authorisation_probabilities(context, ids, t)
        return float(np.dot([probabilities[a] for a in ids], p))

    def outcome(self, transaction: Transaction, action_id: str) -> Outcome:
        """What happens to a generated transaction under ``action_id`` (see :meth:`Transaction.outcome`)."""
        return transaction.outcome(action_id)

    # -- traffic ---------------------------------------------------------------------------------------

    def day_batch(
        self,
        start: datetime | None = None,
        day: int = 0,
        decisions_per_day: int = 1000,
        seed: int = 0,
        id_prefix: str | None = None,
    ) -> TrafficBatch:
        """Day ``day`` (counted from ``start``, default the epoch) of the traffic of ``seed``, generated alone."""
        start = self.epoch if start is None else require_aware(start, "start")
        if decisions_per_day <= 0:
            raise ValueError(f"decisions_per_day must be positive, got {decisions_per_day}")
        prefix = f"sim{seed}-" if id_prefix is None else id_prefix
        micros = arrival_micros(
            to_micros(start), day, decisions_per_day, self.utc_offsets, day_rng(seed, day, ARRIVALS_STREAM)
        )
        contexts = self._sample(micros, day_rng(seed, day, CONTEXTS_STREAM))
        effects = self._effects_at(micros)
        noise = day_rng(seed, day, NOISE_STREAM).random((micros.size, 4))
        return TrafficBatch(
            ids=[f"{prefix}d{day:03d}-{i:06d}" for i in range(micros.size)],
            micros=micros,
            contexts=contexts,
            eligible=self.catalogue.eligibility(contexts),
            p_authorisation=self.authorisation.probabilities(contexts, effects),
            p_chargeback=self.chargebacks.probabilities(contexts, effects),
            noise=noise,
            catalogue=self.catalogue,
            clean_label_delay_days=self.clean_label_delay_days,
        )

    def traffic_batches(
        self,
        start: datetime | None = None,
        days: int = 90,
        decisions_per_day: int = 1000,
        seed: int = 0,
        id_prefix: str | None = None,
    ) -> Iterator[TrafficBatch]:
        """One :class:`TrafficBatch` per simulated day, in order (vectorised analysis, benchmarks)."""
        for day in range(days):
            yield self.day_batch(start, day, decisions_per_day, seed, id_prefix)

    def traffic(
        self,
        start: datetime | None = None,
        days: int = 90,
        decisions_per_day: int = 1000,
        seed: int = 0,
        id_prefix: str | None = None,
    ) -> Iterator[tuple[datetime, Transaction]]:
        """``(t, transaction)`` in time order over ``days`` days from ``start`` (default: the epoch).

        About ``decisions_per_day`` transactions a day (exactly that on average over a whole week; weekdays and
        hours follow the seasonality curves). Ids are ``f"{id_prefix}d{day:03d}-{i:06d}"`` with the prefix
        ``f"sim{seed}-"`` by default.
        """
        for batch in self.traffic_batches(start, days, decisions_per_day, seed, id_prefix):
            for tx in batch.transactions():
                yield tx.t, tx

    def _micros(self, times: Sequence[datetime] | np.ndarray) -> np.ndarray:
        if isinstance(times, np.ndarray) and times.dtype.kind in "iu":
            return times.astype(np.int64)
        return np.array([to_micros(require_aware(t)) for t in times], dtype=np.int64)


def traffic(
    start: datetime,
    days: int,
    decisions_per_day: int,
    seed: int,
    *,
    scenario: str | DriftScenario = "none",
    world: PaymentWorld | None = None,
) -> Iterator[tuple[datetime, Transaction]]:
    """Traffic of a world (default: a seed-0 world with ``scenario`` whose epoch is ``start``).

    >>> from datetime import UTC
    >>> stream = traffic(datetime(2026, 3, 2, tzinfo=UTC), days=2, decisions_per_day=500, seed=3)
    >>> times = [t for t, _ in stream]
    >>> 900 < len(times) < 1100, times == sorted(times)
    (True, True)
    """
    world = PaymentWorld(scenario, epoch=start) if world is None else world
    return world.traffic(start, days, decisions_per_day, seed)
