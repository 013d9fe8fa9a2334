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
    instant_ns,
    integer_parameter,
    iso,
    times_ns,
    undefined,
)
from banditgate.policies.exploration.base import number_parameter


def freshness(label_times: Any, as_of: Instant, lambda_per_day: float, recent: int = 500) -> Measurement:
    """``F = exp(-lambda * dt)``, ``dt`` = days from the median observation time of the ``recent`` most recent
    confirmed labels to ``as_of``.

    The median of the most recent labels, rather than the newest one, keeps a single early-arriving label
    (an authorisation seconds old) from making stale evidence look fresh. Labels observed after ``as_of``
    are ignored, so a gate replayed as of a past time reads what it read then. NaT entries (no label) are
    skipped. With no label by ``as_of``, F reads 0 with the interval [0, 1].

    Interval: F at the 25th and 75th percentile observation times of the same recent labels
    (``exp(-lambda * dt_q25) <= F <= exp(-lambda * dt_q75)``). It is a spread, not a sampling interval: the
    recent labels are not a sample from anything, but how much F depends on which of them one looks at says
    how uneven their arrival was (a burst of old labels replayed yesterday versus a steady trickle).

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
    return freshness_ns(times, as_of_ns, lam, recent)


def freshness_ns(times: np.ndarray, as_of_ns: int, lambda_per_day: float, recent: int) -> Measurement:
    """:func:`freshness` on int64 UTC nanoseconds (NaT as ``NAT``), for callers that convert once."""
    confirmed = times[(times != NAT) & (times <= as_of_ns)]
    detail: dict[str, Any] = {
        "method": "exp(-lambda * days since the median time of the recent labels)",
        "interval": "F at the 25th and 75th percentile times of the recent labels",
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
    detail |= {
        "labels_used": int(confirmed.size),
        "median_label_at": iso(median),
        "q25_label_at": iso(q25),
        "q75_label_at": iso(q75),
        "age_days": ages[1],
    }
    return bounded("freshness", value, low, high, confirmed.size, detail)
