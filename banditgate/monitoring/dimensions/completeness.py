"""Completeness: the share of the window's decisions whose label has arrived."""

from __future__ import annotations

from banditgate.monitoring.dimensions.base import (
    Measurement,
    bounded,
    check_confidence,
    integer_parameter,
    undefined,
    wilson,
)


def completeness(labelled: int, total: int, confidence: float = 0.95) -> Measurement:
    """``C = labelled / total`` with the Wilson score interval.

    ``centre = (C + z^2 / 2n) / (1 + z^2 / n)``, ``half = z / (1 + z^2 / n) * sqrt(C (1 - C) / n + z^2 / 4n^2)``.
    Unlike the normal interval ``C +- z sqrt(C (1 - C) / n)``, it stays inside [0, 1] and keeps its coverage
    when C is near 0 or 1, which is where completeness lives early and late in a blind period. A window
    without decisions reads 0 with the interval [0, 1]: no evidence is not sufficient evidence.

    Examples
    --------
    >>> m = completeness(30, 100)
    >>> m.value, round(m.low, 4), round(m.high, 4)
    (0.3, 0.2189, 0.3958)
    >>> completeness(0, 0).detail["reason"]
    'no decisions in the window'

    References
    ----------
    Wilson, "Probable inference, the law of succession, and statistical inference", JASA 22(158), 1927;
    Brown, Cai & DasGupta, "Interval estimation for a binomial proportion", Statistical Science 16(2), 2001.
    """
    labelled, total = integer_parameter("labelled", labelled, 0), integer_parameter("total", total, 0)
    if labelled > total:
        raise ValueError(f"labelled ({labelled}) cannot exceed total ({total})")
    check_confidence(confidence)
    detail = {"method": "wilson", "labelled": labelled, "total": total, "confidence": confidence}
    if total == 0:
        return undefined("completeness", "no decisions in the window", **detail)
    share = labelled / total
    return bounded("completeness", share, *wilson(share, total, confidence), total, detail)
