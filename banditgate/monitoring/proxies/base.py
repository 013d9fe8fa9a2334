"""What every proxy indicator returns, and how proxies stand in for the four sufficiency dimensions.

A proxy indicator estimates, without labels, how much of the evidence behind a generation still holds. Each
computes a statistic ``stat_j`` where larger means worse (a drift distance, a disagreement share, a missing
label share...), normalised as ``P_j = max(0, 1 - stat_j / cap_j)``, so 1 is "no sign of trouble" and 0 is
"at or beyond the cap". Each proxy covers one or more of the dimensions completeness (C), freshness (F),
reliability (R) and representativeness (P); a dimension's proxy estimate is the mean of the ``P_j`` of the
proxies that cover it (:func:`proxy_dimensions`), which the gate turns into a label-free S_proxy.

Reference: "Evidence sufficiency under delayed ground truth", arXiv 2604.15740, section on proxy indicators
(seven categories: score distribution, feature drift, uncertainty, cross-model disagreement, operational
signals, outcome maturity, proxy ground truth).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: The four sufficiency dimensions a proxy may cover.
DIMENSIONS = ("completeness", "freshness", "reliability", "representativeness")

#: The seven proxy categories of the paper.
CATEGORIES = (
    "score_distribution",
    "feature_drift",
    "uncertainty",
    "disagreement",
    "operational",
    "outcome_maturity",
    "proxy_ground_truth",
)

#: ``ok``: computed, below its trigger; ``alert``: computed, at or beyond its trigger; ``unavailable``: could
#: not be computed from what the window holds (say why in ``detail["reason"]``), and then it covers nothing.
Status = Literal["ok", "alert", "unavailable"]


def normalise(statistic: float, cap: float) -> float:
    """``P = max(0, 1 - statistic / cap)``, clipped to [0, 1].

    >>> normalise(0.1, 0.25), normalise(0.5, 0.25), normalise(0.0, 0.25)
    (0.6, 0.0, 1.0)
    """
    if not cap > 0:
        raise ValueError(f"a proxy cap must be positive, got {cap}")
    if math.isnan(statistic):
        raise ValueError("a proxy statistic must be a number, got NaN")
    return min(1.0, max(0.0, 1.0 - statistic / cap))


@dataclass(frozen=True)
class ProxyReading:
    """One proxy indicator's value on one window.

    Parameters
    ----------
    name
        Stable identifier, e.g. ``"score_psi"``.
    category
        One of :data:`CATEGORIES`.
    statistic
        The raw statistic, larger is worse (NaN when ``status == "unavailable"``).
    cap
        The statistic at which the proxy reads 0.
    trigger
        The statistic at or beyond which the proxy is in ``alert`` (e.g. PSI 0.25).
    covers
        The dimensions (of :data:`DIMENSIONS`) this proxy stands in for.
    status
        ``ok``, ``alert`` or ``unavailable``.
    detail
        JSON-serialisable specifics: per-column values, counts, the reason when unavailable.
    """

    name: str
    category: str
    statistic: float
    cap: float
    trigger: float
    covers: tuple[str, ...]
    status: Status
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown proxy category {self.category!r}; expected one of {CATEGORIES}")
        unknown = set(self.covers) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown dimensions {sorted(unknown)}; expected some of {DIMENSIONS}")

    @property
    def normalised(self) -> float | None:
        """``P_j``, or None when unavailable."""
        if self.status == "unavailable":
            return None
        return normalise(self.statistic, self.cap)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "statistic": None if math.isnan(self.statistic) else self.statistic,
            "cap": self.cap,
            "trigger": self.trigger,
            "normalised": self.normalised,
            "covers": list(self.covers),
            "status": self.status,
            "detail": dict(self.detail),
        }


def reading(
    name: str,
    category: str,
    statistic: float,
    *,
    cap: float,
    trigger: float,
    covers: Iterable[str],
    detail: Mapping[str, Any] | None = None,
) -> ProxyReading:
    """A computed reading, in ``alert`` when ``statistic >= trigger``."""
    status: Status = "alert" if statistic >= trigger else "ok"
    return ProxyReading(name, category, float(statistic), cap, trigger, tuple(covers), status, detail or {})


def unavailable(
    name: str, category: str, reason: str, *, cap: float, trigger: float, covers: Iterable[str]
) -> ProxyReading:
    """A proxy that could not be computed on this window, and why."""
    return ProxyReading(name, category, math.nan, cap, trigger, tuple(covers), "unavailable", {"reason": reason})


def proxy_dimensions(readings: Iterable[ProxyReading]) -> dict[str, float | None]:
    """Each dimension's proxy estimate: the mean ``P_j`` of the available proxies covering it (None if none).

    >>> r = [reading("a", "score_distribution", 0.1, cap=0.5, trigger=0.25, covers=["representativeness"]),
    ...      reading("b", "uncertainty", 0.0, cap=1.0, trigger=0.5, covers=["reliability", "representativeness"])]
    >>> {k: (round(v, 3) if v is not None else v) for k, v in proxy_dimensions(r).items()}
    {'completeness': None, 'freshness': None, 'reliability': 1.0, 'representativeness': 0.9}
    """
    sums = dict.fromkeys(DIMENSIONS, 0.0)
    counts = dict.fromkeys(DIMENSIONS, 0)
    for item in readings:
        value = item.normalised
        if value is None:
            continue
        for dimension in item.covers:
            sums[dimension] += value
            counts[dimension] += 1
    return {d: (sums[d] / counts[d] if counts[d] else None) for d in DIMENSIONS}
