"""Label latency: when the reward of a decision arrives, as an empirical survival curve per reward kind.

For one reward kind, each decision's *arrival time* is how long after the decision its label was observed.
Decisions still without a label at ``as_of`` are right-censored at their age ``as_of - decided_at``: all we
know is that the label takes longer than that, if it comes at all. The Kaplan-Meier estimate of the
survival function ``S(t) = P(no label by age t)`` uses both:

``S(t) = prod_{t_j <= t} (1 - d_j / n_j)``, ``d_j`` labels arriving at age ``t_j``, ``n_j`` decisions still
unlabelled and observed up to at least ``t_j`` (censored decisions count as at risk at their own age).

Not every decision ever gets a label (a declined payment gets no chargeback), so S need not fall to 0: it
levels off at the share that never will, once the follow-up is long enough to show it. Hence
``expected_completeness(age) = 1 - S(age)``, the chance that a decision of that age has its label, rather
than a parametric arrival distribution that would force completeness to 1.

Beyond the largest arrival time observed, S is held at its last value: no label is expected later than any
seen so far. That is conservative for the gate (completeness never grows past what history has shown), and
it is why :func:`days_until_completeness` can answer "never" (None). Estimate the curve from cohorts old
enough to have a long follow-up (a longer history than the window being judged) and pass it in.

Interval: Greenwood's variance ``Var S(t) = S(t)^2 sum_{t_j <= t} d_j / (n_j (n_j - d_j))`` on the
``log(-log S)`` scale (Kalbfleisch & Prentice), ``S^exp(+-z se)`` with ``se = sqrt(sum d/(n(n-d))) / |log S|``,
which keeps the bounds in [0, 1]; where S reaches 0 both bounds are 0.

References
----------
Kaplan & Meier, "Nonparametric estimation from incomplete observations", JASA 53(282), 1958; Greenwood,
"The natural duration of cancer", Reports on Public Health and Medical Subjects 33, 1926; Kalbfleisch &
Prentice, "The Statistical Analysis of Failure Time Data", 2nd ed., 2002, section 4.3; Maller & Zhou,
"Survival Analysis with Long-Term Survivors", 1996 (curves that level off above 0).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from banditgate.monitoring.dimensions.base import (
    NANOSECONDS_PER_DAY,
    NAT,
    Instant,
    check_confidence,
    instant_ns,
    integer_parameter,
    times_ns,
    z_value,
)
from banditgate.policies.exploration.base import number_parameter

#: How many points :meth:`SurvivalCurve.to_dict` keeps by default (enough for a plot, small for a report).
REPORT_POINTS = 200


@dataclass(frozen=True, eq=False)
class SurvivalCurve:
    """A Kaplan-Meier curve of label arrival: ``S(t)`` at each distinct arrival age ``t`` (days).

    Parameters
    ----------
    times
        Distinct ages (days) at which at least one label arrived, ascending.
    survival
        ``S`` just after each time (S = 1 before the first).
    lower, upper
        Pointwise confidence bounds of ``survival``.
    n_at_risk
        Decisions still unlabelled and observed up to at least each time.
    events
        Labels arriving at each time.
    n
        Decisions the curve is estimated from.
    censored
        Of those, decisions without a label (censored at their age).
    follow_up_days
        The largest age observed (arrival or censoring): the curve says nothing about later ages.
    confidence
        Level of the bounds.
    arrived_before_decision
        Labels observed before their decision (clock skew), counted as arriving at age 0.

    Examples
    --------
    >>> curve = kaplan_meier([1.0, 2.0, 2.0, 3.0, 4.0, 5.0], [True, True, True, False, True, False])
    >>> curve.times.tolist(), curve.survival.round(4).tolist()
    ([1.0, 2.0, 4.0], [0.8333, 0.5, 0.25])
    >>> curve.expected_completeness([0.5, 2.0, 30.0]).tolist()  # flat beyond day 4
    [0.0, 0.5, 0.75]
    """

    times: np.ndarray
    survival: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n_at_risk: np.ndarray
    events: np.ndarray
    n: int
    censored: int
    follow_up_days: float
    confidence: float
    arrived_before_decision: int = 0

    def __post_init__(self) -> None:
        for name in ("times", "survival", "lower", "upper", "n_at_risk", "events"):
            getattr(self, name).setflags(write=False)

    def survival_at(self, days: ArrayLike) -> np.ndarray:
        """``S`` at each age in ``days`` (1 before the first arrival, flat beyond the last)."""
        ages = _ages(days)
        if self.times.size == 0:
            return np.ones_like(ages)
        position = np.searchsorted(self.times, ages, side="right") - 1
        return np.where(position >= 0, self.survival[np.maximum(position, 0)], 1.0)

    def expected_completeness(self, age_days: ArrayLike) -> np.ndarray:
        """``1 - S(age)``: the chance that a decision of that age has its label (same shape as the input)."""
        return 1.0 - self.survival_at(age_days)

    def expected_window_completeness(self, ages: ArrayLike) -> float:
        """The completeness a window of decisions of these ages should have: the mean of ``1 - S(age)``.

        0 for an empty window (no decisions: no evidence), as completeness reads it.
        """
        expected = self.expected_completeness(ages)
        return float(expected.mean()) if expected.size else 0.0

    def to_dict(self, max_points: int = REPORT_POINTS) -> dict[str, Any]:
        """JSON-ready summary; the curve is downsampled to at most ``max_points`` of its own points.

        The kept points are spread evenly over the arrivals (by index), always with the first and the last,
        and keep their exact values, so a step plot of them is the curve at a coarser resolution.
        """
        integer_parameter("max_points", max_points, 2)
        keep = np.unique(np.linspace(0, self.times.size - 1, min(max_points, self.times.size)).round().astype(int))
        return {
            "n": self.n,
            "censored": self.censored,
            "arrived": int(self.events.sum()),
            "follow_up_days": self.follow_up_days,
            "confidence": self.confidence,
            "arrived_before_decision": self.arrived_before_decision,
            "final_completeness": float(1.0 - self.survival[-1]) if self.times.size else 0.0,
            "points": {
                "times": self.times[keep].tolist(),
                "survival": self.survival[keep].tolist(),
                "lower": self.lower[keep].tolist(),
                "upper": self.upper[keep].tolist(),
                "n_at_risk": self.n_at_risk[keep].tolist(),
                "events": self.events[keep].tolist(),
            },
        }


def kaplan_meier(durations: ArrayLike, events: ArrayLike, confidence: float = 0.95) -> SurvivalCurve:
    """The Kaplan-Meier curve of ``durations`` (days, >= 0) where ``events`` marks arrivals (else censored).

    One sort (``np.unique``) and cumulative sums / products: ``O(n log n)`` for n durations.
    """
    z = z_value(confidence)
    ages = _ages(durations)
    arrived = np.asarray(events)
    if arrived.shape != ages.shape or ages.ndim != 1:
        raise ValueError(f"durations and events must be 1-d of the same length, got {ages.shape} and {arrived.shape}")
    if arrived.dtype != bool:
        if not np.isin(arrived, (0, 1)).all():
            raise ValueError("events must be booleans (or 0/1): True when the label arrived")
        arrived = arrived.astype(bool)
    times, inverse, counts = np.unique(ages, return_inverse=True, return_counts=True)
    arrivals = np.bincount(inverse, weights=arrived, minlength=times.size)
    at_risk = ages.size - (np.cumsum(counts) - counts)
    kept = arrivals > 0
    times, arrivals, at_risk = times[kept], arrivals[kept].astype(np.int64), at_risk[kept]
    survival = np.cumprod(1.0 - arrivals / at_risk)
    # Once every decision at risk has its label, S is 0 and Greenwood's sum infinite: bounds set to 0 below.
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = np.cumsum(arrivals / (at_risk * (at_risk - arrivals)))
        spread = np.exp(z * np.sqrt(greenwood) / np.abs(np.log(survival)))
    positive = survival > 0
    lower = np.where(positive, survival**spread, 0.0)
    upper = np.where(positive, survival ** (1.0 / spread), 0.0)
    return SurvivalCurve(
        times=times,
        survival=survival,
        lower=lower,
        upper=upper,
        n_at_risk=at_risk,
        events=arrivals,
        n=int(ages.size),
        censored=int(ages.size - np.count_nonzero(arrived)),
        follow_up_days=float(ages.max()) if ages.size else 0.0,
        confidence=check_confidence(confidence),
    )


def arrival_curve(decided_at: Any, label_observed_at: Any, as_of: Instant, confidence: float = 0.95) -> SurvivalCurve:
    """The label-arrival curve of decisions as of ``as_of`` (for one reward kind).

    ``duration = label_observed_at - decided_at`` for decisions labelled by ``as_of``; the others (NaT, or a
    label observed after ``as_of``) are censored at ``as_of - decided_at``. Decisions made after ``as_of`` are
    left out. A label observed before its decision (clock skew between the gateway and this service) counts
    as arriving at age 0, and is counted in ``arrived_before_decision``.

    Examples
    --------
    >>> import pandas as pd
    >>> decided = pd.to_datetime(["2026-01-01", "2026-01-01", "2026-01-05", "2026-01-08"], utc=True)
    >>> observed = pd.to_datetime(["2026-01-03", None, "2026-01-06", None], utc=True)
    >>> curve = arrival_curve(decided, observed, "2026-01-10")  # ages: 2, 9+, 1, 2+
    >>> curve.times.tolist(), curve.survival.tolist()
    ([1.0, 2.0], [0.75, 0.5])
    """
    return _arrival_curve(*_decisions(decided_at, label_observed_at, as_of), confidence)


def _arrival_curve(decided: np.ndarray, observed: np.ndarray, as_of_ns: int, confidence: float) -> SurvivalCurve:
    arrived = (observed != NAT) & (observed <= as_of_ns)
    durations = np.where(arrived, observed - decided, as_of_ns - decided)
    early = int(np.count_nonzero(durations < 0))
    curve = kaplan_meier(np.maximum(durations, 0) / NANOSECONDS_PER_DAY, arrived, confidence)
    return dataclasses.replace(curve, arrived_before_decision=early)


def days_until_completeness(
    frame: pd.DataFrame,
    as_of: Instant,
    target: float,
    *,
    curve: SurvivalCurve | None = None,
    resolution_days: float = 1.0 / 24.0,
) -> float | None:
    """Days from ``as_of`` until the window's expected completeness reaches ``target`` (None: never).

    The window is the decisions in ``frame`` (columns ``decided_at`` and ``label_observed_at``) made by
    ``as_of``; no new decisions join it. At ``as_of + t`` its expected completeness is

    ``(L + sum_u P(arrive by a_u + t | not by a_u)) / N``, ``P(...) = (S(a_u) - S(a_u + t)) / S(a_u)``,

    with L the decisions labelled by ``as_of``, ``u`` the others and ``a_u`` their ages: an unlabelled
    decision is judged by the arrivals still ahead of it, not by the share already behind it. (A decision
    whose age has S = 0 should have its label by the curve, yet has none: it counts as never arriving.)

    That completeness only grows with t, so the answer is found by bisection on a grid of
    ``resolution_days`` (one hour by default): the smallest multiple of it at which the target is reached,
    0 if it already is. None when even the curve's final level does not reach it, or for an empty window.

    Parameters
    ----------
    frame
        The window's decisions.
    as_of
        Now.
    target
        Completeness to reach, in (0, 1].
    curve
        The arrival curve to use; by default estimated from ``frame`` itself (short follow-up: prefer a curve
        from older cohorts, see the module docstring).
    resolution_days
        Grid of the answer.

    Examples
    --------
    >>> import pandas as pd
    >>> curve = kaplan_meier([1.0, 2.0, 3.0, 4.0], [True] * 4)  # S: 0.75, 0.5, 0.25, 0 at days 1..4
    >>> now = pd.Timestamp("2026-01-10", tz="UTC")
    >>> frame = pd.DataFrame({"decided_at": [now - pd.Timedelta(days=a) for a in (0, 0, 1.5, 2.5)],
    ...                       "label_observed_at": pd.Series([pd.NaT] * 4, dtype="datetime64[ns, UTC]")})
    >>> days_until_completeness(frame, now, 0.5, curve=curve)  # at t = 1.5: (0.25 + 0.25 + 2/3 + 1) / 4
    1.5
    """
    target = number_parameter("target", target, low=0.0, high=1.0)
    if target == 0.0:
        raise ValueError("target must be in (0, 1], got 0")
    resolution = number_parameter("resolution_days", resolution_days, low=0.0)
    if resolution == 0.0:
        raise ValueError("resolution_days must be positive, got 0")
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("decided_at", "label_observed_at") if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the columns {missing}")
    decided, observed, as_of_ns = _decisions(frame["decided_at"], frame["label_observed_at"], as_of)
    if curve is None:
        curve = _arrival_curve(decided, observed, as_of_ns, 0.95)
    if decided.size == 0:
        return None
    arrived = (observed != NAT) & (observed <= as_of_ns)
    ages = np.sort((as_of_ns - decided[~arrived]) / NANOSECONDS_PER_DAY)
    start = curve.survival_at(ages)
    # Decisions the curve says should have arrived already (S = 0) can only stay unlabelled: left out.
    waiting = start > 0
    ages, start = ages[waiting], start[waiting]
    labelled = int(np.count_nonzero(arrived))

    def completeness_after(days: float) -> float:
        arriving = float(np.sum(1.0 - curve.survival_at(ages + days) / start))
        return (labelled + arriving) / decided.size

    if completeness_after(0.0) >= target:
        return 0.0
    horizon = max(0.0, float(curve.times[-1]) - float(ages[0])) if curve.times.size and ages.size else 0.0
    steps_high = math.ceil(horizon / resolution)
    if completeness_after(steps_high * resolution) < target:
        return None
    steps_low = 0
    while steps_high - steps_low > 1:
        middle = (steps_low + steps_high) // 2
        if completeness_after(middle * resolution) >= target:
            steps_high = middle
        else:
            steps_low = middle
    return steps_high * resolution


def _decisions(decided_at: Any, label_observed_at: Any, as_of: Instant) -> tuple[np.ndarray, np.ndarray, int]:
    """Decision and label times (UTC ns) of the decisions made by ``as_of``, and ``as_of``."""
    as_of_ns = instant_ns(as_of)
    decided = times_ns(decided_at, "decided_at")
    observed = times_ns(label_observed_at, "label_observed_at")
    if decided.shape != observed.shape:
        raise ValueError(f"decided_at and label_observed_at differ in length: {decided.size} vs {observed.size}")
    if (decided == NAT).any():
        raise ValueError("every decision needs its decided_at")
    made = decided <= as_of_ns
    return decided[made], observed[made], as_of_ns


def _ages(days: ArrayLike) -> np.ndarray:
    ages = np.asarray(days, dtype=np.float64)
    if not (np.isfinite(ages).all() and (ages >= 0).all()):
        raise ValueError("ages and durations must be finite and non-negative (days)")
    return ages
