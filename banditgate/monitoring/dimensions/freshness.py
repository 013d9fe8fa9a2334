"""Freshness: how recent the confirmed labels behind the evidence are."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from banditgate.monitoring.dimensions.base import (
    NANOSECONDS_PER_DAY,
    NAT,
    Instant,
    Measurement,
    bounded,
    check_confidence,
    instant_ns,
    integer_parameter,
    iso,
    times_ns,
    undefined,
    z_value,
)
from banditgate.policies.exploration.base import number_parameter


def freshness(
    label_times: Any, as_of: Instant, lambda_per_day: float, recent: int = 500, confidence: float = 0.95
) -> Measurement:
    """``F = exp(-lambda * dt)``, ``dt`` = days from the median observation time of the ``recent`` most recent
    confirmed labels to ``as_of``.

    The median of the most recent labels, rather than the newest one, keeps a single early-arriving label
    (an authorisation seconds old) from making stale evidence look fresh. Labels observed after ``as_of``
    are ignored, so a gate replayed as of a past time reads what it read then. NaT entries (no label) are
    skipped. With no label by ``as_of``, F reads 0 with the interval [0, 1].

    Interval: F at the 25th and 75th percentile observation times of the same recent labels
    (``exp(-lambda * dt_q25) <= F <= exp(-lambda * dt_q75)``), widened to the distribution-free confidence
    interval of their median (order statistics ``t_(j) <= median <= t_(n-j+1)``, ``j`` from the binomial
    distribution ``Bin(n, 1/2)``). The spread says how uneven the labels' arrival was (a burst of old labels
    replayed yesterday versus a steady trickle); the median's interval says how few they are: below six
    labels no pair of order statistics covers the median at 95%, so F reads [0, 1] (one label says little
    about how fresh the evidence is). On hundreds of labels the spread is the wider of the two.

    Parameters
    ----------
    label_times
        Observation times of the labels: numpy ``datetime64`` (UTC) or a pandas datetime Series.
    as_of
        The time the evidence is judged at (naive = UTC).
    lambda_per_day
        Decay rate per day: 0.02 for fraud, 0.005 for credit in the paper.
    recent
        How many of the most recent labels the median is taken over.
    confidence
        Coverage of the median's interval.

    Examples
    --------
    >>> import numpy as np
    >>> times = np.array(["2026-01-01", "2026-01-09", "2026-01-11"], dtype="datetime64[ns]")
    >>> m = freshness(times, "2026-01-21", lambda_per_day=0.02)  # median 2026-01-09: 12 days
    >>> round(m.value, 4), m.detail["age_days"]
    (0.7866, 12.0)

    References
    ----------
    "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (freshness dimension).
    """
    lam = number_parameter("lambda_per_day", lambda_per_day, low=0.0)
    recent = integer_parameter("recent", recent, 1)
    as_of_ns = instant_ns(as_of)
    times = times_ns(label_times, "label_times")
    return freshness_ns(times, as_of_ns, lam, recent, check_confidence(confidence))


def freshness_ns(
    times: np.ndarray, as_of_ns: int, lambda_per_day: float, recent: int, confidence: float = 0.95
) -> Measurement:
    """:func:`freshness` on int64 UTC nanoseconds (NaT as ``NAT``), for callers that convert once."""
    confirmed = times[(times != NAT) & (times <= as_of_ns)]
    detail: dict[str, Any] = {
        "method": "exp(-lambda * days since the median time of the recent labels)",
        "interval": "F at the 25th and 75th percentile times of the recent labels, widened to the "
        "distribution-free interval of their median",
        "lambda_per_day": lambda_per_day,
        "recent": recent,
        "labels_available": int(confirmed.size),
        "as_of": iso(as_of_ns),
    }
    if confirmed.size == 0:
        return undefined("freshness", "no confirmed labels by as_of", **detail)
    if confirmed.size > recent:
        confirmed = np.partition(confirmed, confirmed.size - recent)[confirmed.size - recent :]
    # Quantiles of offsets from the newest label, not of epoch nanoseconds (~1.8e18, beyond float64's exact
    # integers), stay accurate to a few nanoseconds.
    newest = int(confirmed.max())
    q25, median, q75 = (
        newest + round(q) for q in np.quantile((confirmed - newest).astype(np.float64), [0.25, 0.5, 0.75])
    )
    ages = [(as_of_ns - t) / NANOSECONDS_PER_DAY for t in (q25, median, q75)]
    value, low, high = (math.exp(-lambda_per_day * age) for age in (ages[1], ages[0], ages[2]))
    rank = median_rank(confidence=confidence, n=int(confirmed.size))
    if rank is None:
        # The median may be any time up to as_of: F anywhere from 0 (1 when it does not decay) to 1.
        low, high, median_interval = (1.0 if lambda_per_day == 0.0 else 0.0), 1.0, None
    else:
        ordered = np.sort(confirmed)
        older, newer = int(ordered[rank - 1]), int(ordered[confirmed.size - rank])
        low = min(low, math.exp(-lambda_per_day * (as_of_ns - older) / NANOSECONDS_PER_DAY))
        high = max(high, math.exp(-lambda_per_day * (as_of_ns - newer) / NANOSECONDS_PER_DAY))
        median_interval = [iso(older), iso(newer)]
    detail |= {
        "labels_used": int(confirmed.size),
        "median_label_at": iso(median),
        "q25_label_at": iso(q25),
        "q75_label_at": iso(q75),
        "median_interval": median_interval,
        "age_days": ages[1],
    }
    return bounded("freshness", value, low, high, confirmed.size, detail)


#: Above this many labels, the median's order statistics come from the normal approximation of the binomial.
_EXACT_RANKS = 1000


def median_rank(confidence: float, n: int) -> int | None:
    """The largest ``j`` such that the order statistics ``x_(j) <= median <= x_(n-j+1)`` of ``n`` values cover
    the median with at least ``confidence`` (``P(Bin(n, 1/2) < j) <= (1 - confidence) / 2``), or None when no
    ``j >= 1`` does (fewer than six values at 95%).

    >>> median_rank(0.95, 5), median_rank(0.95, 6), median_rank(0.95, 100)
    (None, 1, 40)

    References
    ----------
    Conover, "Practical Nonparametric Statistics", 3rd ed., 1999, section 3.2 (confidence interval for a
    quantile).
    """
    tail = (1.0 - confidence) / 2.0
    if n > _EXACT_RANKS:
        rank = math.floor((n - z_value(confidence) * math.sqrt(n)) / 2.0)
        return rank if rank >= 1 else None
    total, coefficient, below, rank = 2**n, 1, 0, 0
    # below = sum of C(n, i) for i < rank + 1; stop before the lower tail exceeds its share of alpha.
    while rank < n and (below + coefficient) / total <= tail:
        below += coefficient
        rank += 1
        coefficient = coefficient * (n - rank + 1) // rank
    return rank if rank >= 1 else None
