"""Outcomes of a decision and when they become known: an authorisation in seconds, a chargeback in months.

Two reward events follow a decision:

- ``authorisation``: 1.0 if the issuer authorised the payment, else 0.0, observed 0.2-5 s after the decision
  (log-normal around the action's typical latency, so forced 3-D Secure answers later).
- ``chargeback`` (authorised payments only): 1.0 if the payment is charged back, else 0.0, observed 45-180
  days later: ``45 + LogNormal(median 25 days, sigma 0.6)`` truncated at 180, right-skewed (median about 70
  days, a tail into the fourth month and beyond). By default a clean payment's 0 arrives after a delay from
  the same law, so the label's arrival time says nothing about its value; ``clean_label_delay_days`` instead
  confirms every 0 at a fixed age (e.g. 120 days, the end of the usual dispute window), which makes early
  labels positive-biased, as in production.

**What to train on.** The service should learn from ``authorisation``: it is the service's reward (docs/api.md), it is
known within seconds, and every decision gets one. Chargebacks are the slow, rare cost of an authorisation.
They can be folded in later as a penalised reward, ``r = authorised - penalty * chargeback`` (the penalty is
the cost of a chargeback relative to the margin on a payment: fees, the lost goods and the amount; 10-50 is
typical), whose expectation is ``p_auth * (1 - penalty * q_chargeback)``. Training on it means waiting for
labels to mature (the blind period), so a practical scheme trains on authorisations and uses matured
chargebacks to re-weight or to gate generations (see :func:`combined_reward`).

Outcomes are drawn from uniforms fixed per transaction (:class:`OutcomeNoise`), not per action: whichever
action the service picks, ``authorised = u < p(x, a, t)``. The outcome is then a pure function of (seed,
transaction, action) whatever order the driver asks in, and two policies run on the same traffic are compared
with common random numbers.

References
----------
Visa Core Rules and Mastercard Chargeback Guide (dispute time limits of about 120 days from processing);
the delay law's shape is a modelling choice, not fitted to scheme data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
from scipy.special import ndtr, ndtri

_STANDARD_NORMAL = NormalDist()

AUTHORISATION = "authorisation"
CHARGEBACK = "chargeback"


@dataclass(frozen=True, slots=True)
class TruncatedLogNormal:
    """``offset + LogNormal(log(median), sigma)`` truncated to ``[low, high]``, sampled by inverse CDF.

    Parameters
    ----------
    median
        Median of the log-normal part (before the offset and the truncation).
    sigma
        Standard deviation of its logarithm.
    low, high
        Truncation bounds of the whole value; ``low >= offset``.
    offset
        Shift added to the log-normal part.

    Examples
    --------
    >>> law = TruncatedLogNormal(median=25.0, sigma=0.6, low=45.0, high=180.0, offset=45.0)
    >>> [round(float(law.quantile(u)), 1) for u in (0.0, 0.5, 0.99)]
    [45.0, 70.0, 141.0]
    """

    median: float
    sigma: float
    low: float
    high: float
    offset: float = 0.0

    def quantile(self, u: float | np.ndarray, median: float | np.ndarray | None = None) -> float | np.ndarray:
        """The value at probability ``u`` in [0, 1]; ``median`` overrides the law's median (per value)."""
        median = self.median if median is None else median
        if isinstance(u, float | int) and isinstance(median, float | int):
            return self._scalar_quantile(float(u), float(median))
        mu = np.log(median)
        with np.errstate(divide="ignore"):
            lo = ndtr((np.log(self.low - self.offset) - mu) / self.sigma)
        hi = ndtr((np.log(self.high - self.offset) - mu) / self.sigma)
        u = np.asarray(u, dtype=np.float64)
        p = np.clip(lo + u * (hi - lo), 1e-300, 1.0 - 1e-16)
        value = np.clip(self.offset + np.exp(mu + self.sigma * ndtri(p)), self.low, self.high)
        return np.where(u <= 0.0, self.low, np.where(u >= 1.0, self.high, value))

    def _scalar_quantile(self, u: float, median: float) -> float:
        # The same as the vectorised path in plain floats: ~20x faster for one outcome at a time.
        if u <= 0.0:
            return self.low
        if u >= 1.0:
            return self.high
        mu = math.log(median)
        excess = self.low - self.offset
        lo = 0.0 if excess <= 0.0 else _STANDARD_NORMAL.cdf((math.log(excess) - mu) / self.sigma)
        hi = _STANDARD_NORMAL.cdf((math.log(self.high - self.offset) - mu) / self.sigma)
        p = min(max(lo + u * (hi - lo), 1e-300), 1.0 - 1e-16)
        value = self.offset + math.exp(mu + self.sigma * _STANDARD_NORMAL.inv_cdf(p))
        return min(max(value, self.low), self.high)


#: Seconds from decision to authorisation result; the median is the action's latency (see ``authorisation_delay``).
AUTHORISATION_DELAY_S = TruncatedLogNormal(median=0.5, sigma=0.5, low=0.2, high=5.0)
#: Days from decision to chargeback label.
CHARGEBACK_DELAY_DAYS = TruncatedLogNormal(median=25.0, sigma=0.6, low=45.0, high=180.0, offset=45.0)


def authorisation_delay(latency_ms: float | np.ndarray, u: float | np.ndarray) -> float | np.ndarray:
    """Seconds until the authorisation result of an action with typical latency ``latency_ms``."""
    return AUTHORISATION_DELAY_S.quantile(u, median=latency_ms / 1000.0)


def chargeback_delay(
    u: float | np.ndarray, clean_label_delay_days: float | None = None, chargeback: bool = True
) -> float | np.ndarray:
    """Days until the chargeback label: from :data:`CHARGEBACK_DELAY_DAYS`, or fixed for a clean payment."""
    if not chargeback and clean_label_delay_days is not None:
        return float(clean_label_delay_days)
    return CHARGEBACK_DELAY_DAYS.quantile(u)


class OutcomeNoise(NamedTuple):
    """The uniforms that decide a transaction's outcomes, whatever the action."""

    authorisation: float
    authorisation_delay: float
    chargeback: float
    chargeback_delay: float


@dataclass(frozen=True, slots=True)
class RewardEvent:
    """One reward, to be posted to ``POST /v1/rewards`` once the simulated clock reaches ``observed_at``.

    Attributes
    ----------
    decision_id
        The transaction (and decision) id.
    kind
        ``authorisation`` or ``chargeback``.
    value
        1.0 or 0.0.
    delay
        Time from the decision to the observation.
    observed_at
        Simulated time the outcome becomes known (decision time + delay), timezone-aware.
    """

    decision_id: str
    kind: str
    value: float
    delay: timedelta
    observed_at: datetime

    def payload(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/rewards``.

        >>> from datetime import UTC
        >>> at = datetime(2026, 1, 5, 12, tzinfo=UTC)
        >>> RewardEvent("tx-1", "authorisation", 1.0, timedelta(seconds=1.5), at).payload()
        {'decision_id': 'tx-1', 'reward': 1.0, 'kind': 'authorisation', 'observed_at': '2026-01-05T12:00:00+00:00'}
        """
        return {
            "decision_id": self.decision_id,
            "reward": self.value,
            "kind": self.kind,
            "observed_at": self.observed_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happens to a transaction under one action.

    Attributes
    ----------
    decision_id, action_id
        The transaction and the action taken.
    authorised
        Whether the issuer authorised it.
    chargeback
        Whether it is charged back (``None`` when declined: there is nothing to charge back).
    p_authorisation, p_chargeback
        The true probabilities behind the draw (the chargeback one given authorisation).
    events
        The reward events, in the order they are observed.
    """

    decision_id: str
    action_id: str
    authorised: bool
    chargeback: bool | None
    p_authorisation: float
    p_chargeback: float
    events: tuple[RewardEvent, ...]


def realise(
    decision_id: str,
    action_id: str,
    decided_at: datetime,
    latency_ms: float,
    p_authorisation: float,
    p_chargeback: float,
    noise: OutcomeNoise,
    clean_label_delay_days: float | None = None,
) -> Outcome:
    """Draw the outcome of one decision from its noise and the true probabilities of the chosen action.

    >>> from datetime import UTC
    >>> at = datetime(2026, 1, 5, 12, tzinfo=UTC)
    >>> out = realise("tx-1", "none", at, 320.0, 0.9, 0.01, OutcomeNoise(0.5, 0.5, 0.001, 0.5))
    >>> out.authorised, out.chargeback, [(e.kind, e.value) for e in out.events]
    (True, True, [('authorisation', 1.0), ('chargeback', 1.0)])
    >>> round(out.events[0].delay.total_seconds(), 2), out.events[1].delay.days
    (0.36, 69)
    """
    authorised = noise.authorisation < p_authorisation
    auth_delay = timedelta(seconds=round(authorisation_delay(latency_ms, noise.authorisation_delay), 6))
    events = [RewardEvent(decision_id, AUTHORISATION, float(authorised), auth_delay, decided_at + auth_delay)]
    chargeback: bool | None = None
    if authorised:
        chargeback = noise.chargeback < p_chargeback
        days = chargeback_delay(noise.chargeback_delay, clean_label_delay_days, chargeback)
        delay = timedelta(seconds=round(days * 86400.0, 3))
        events.append(RewardEvent(decision_id, CHARGEBACK, float(chargeback), delay, decided_at + delay))
    return Outcome(
        decision_id, action_id, authorised, chargeback, float(p_authorisation), float(p_chargeback), tuple(events)
    )


def combined_reward(authorised: float, chargeback: float, penalty: float = 20.0) -> float:
    """A reward that also counts fraud: ``authorised - penalty * chargeback`` (0 when declined).

    Its expectation under an action is ``p_auth * (1 - penalty * q_chargeback)``; ``penalty`` is the cost of a
    chargeback in units of the margin earned on an authorised payment.

    >>> combined_reward(1.0, 0.0), combined_reward(1.0, 1.0, penalty=20.0), combined_reward(0.0, 0.0)
    (1.0, -19.0, 0.0)
    """
    return float(authorised) - penalty * float(chargeback)
