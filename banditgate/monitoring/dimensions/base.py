"""What every sufficiency dimension returns, and the conversions the dimensions share.

A dimension is one number in [0, 1] (1 = the evidence fully holds on that account) with an interval and the
sample behind it: a :class:`Measurement`. When the data cannot define it (no decisions, no labels, no
scores), it reads 0 with the interval [0, 1] and says why in ``detail["reason"]``: no evidence is not
sufficient evidence, and the interval says that nothing is known.

Reference: "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (the four dimensions
completeness, freshness, reliability and representativeness).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

#: The four dimensions, in the order reports list them.
DIMENSIONS = ("completeness", "freshness", "reliability", "representativeness")

NANOSECONDS_PER_DAY = 86_400 * 10**9

#: How :func:`times_ns` encodes NaT.
NAT = np.iinfo(np.int64).min

#: Anything :func:`instant_ns` accepts as a point in time.
Instant = pd.Timestamp | datetime | np.datetime64 | str


@dataclass(frozen=True)
class Measurement:
    """One dimension measured on one window (or segment).

    Parameters
    ----------
    name
        The dimension, e.g. ``"completeness"``.
    value
        Point estimate in [0, 1].
    low, high
        Interval around ``value`` (95% by default; ``detail`` says how it was obtained), with
        ``0 <= low <= value <= high <= 1``.
    n
        The sample behind the value (decisions, labels or scores, as ``detail`` says).
    detail
        JSON-serialisable specifics: the method, the counts, and ``reason`` when the value is undefined.

    Examples
    --------
    >>> Measurement("completeness", 0.5, 0.3, 0.7, 20, {"method": "wilson"}).to_dict()["interval"]
    [0.3, 0.7]
    """

    name: str
    value: float
    low: float
    high: float
    n: int
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not all(math.isfinite(x) for x in (self.value, self.low, self.high)):
            raise ValueError(
                f"{self.name}: value and interval must be finite, got {self.value}, {self.low}, {self.high}"
            )
        if not 0.0 <= self.low <= self.value <= self.high <= 1.0:
            raise ValueError(
                f"{self.name}: need 0 <= low <= value <= high <= 1, got {self.low}, {self.value}, {self.high}"
            )
        if self.n < 0:
            raise ValueError(f"{self.name}: n must be non-negative, got {self.n}")

    @property
    def defined(self) -> bool:
        """False when the data could not define the dimension (see ``detail["reason"]``)."""
        return "reason" not in self.detail

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "interval": [self.low, self.high],
            "n": self.n,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True)
class DimensionSet:
    """The four dimensions of one window or segment."""

    completeness: Measurement
    freshness: Measurement
    reliability: Measurement
    representativeness: Measurement

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in DIMENSIONS}


def undefined(name: str, reason: str, n: int = 0, **detail: Any) -> Measurement:
    """A dimension the data cannot define: 0, interval [0, 1], and why."""
    return Measurement(name, 0.0, 0.0, 1.0, n, {"reason": reason, **detail})


def bounded(name: str, value: float, low: float, high: float, n: int, detail: Mapping[str, Any]) -> Measurement:
    """A measurement with the interval clipped to [0, 1] and widened to contain the value.

    Percentile-bootstrap intervals need not contain the point estimate, and rounding can push a bound a hair
    past 0 or 1; both are repaired here rather than rejected.
    """
    value = min(1.0, max(0.0, float(value)))
    low = min(value, max(0.0, float(low)))
    high = max(value, min(1.0, float(high)))
    return Measurement(name, value, low, high, int(n), detail)


def wilson(share: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``share`` observed on ``n`` trials (``n >= 1``).

    ``centre = (s + z^2 / 2n) / (1 + z^2 / n)``, ``half = z / (1 + z^2 / n) * sqrt(s (1 - s) / n + z^2 / 4n^2)``.
    Never zero-width, however few the trials or extreme the share: one trial that succeeded reads [0.21, 1].

    >>> [round(x, 4) for x in wilson(1.0, 1)]
    [0.2065, 1.0]
    """
    z = z_value(confidence)
    denominator = 1.0 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half = z * math.sqrt(max(0.0, share * (1.0 - share)) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def z_value(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence`` (1.96 at 0.95)."""
    return NormalDist().inv_cdf(0.5 + check_confidence(confidence) / 2.0)


def check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def integer_parameter(name: str, value: object, low: int) -> int:
    """``value`` as an int of at least ``low``, or a ValueError that names the parameter (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return int(value)


def instant_ns(value: Instant, name: str = "as_of") -> int:
    """A point in time as UTC nanoseconds since the epoch; naive values are taken as UTC.

    >>> instant_ns("1970-01-02T01:00:00+01:00") == 86_400 * 10**9
    True
    """
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a point in time, got {value!r}: {exc}") from None
    if stamp is pd.NaT:
        raise ValueError(f"{name} must be a point in time, got NaT")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.as_unit("ns").value)


def times_ns(values: Any, name: str) -> np.ndarray:
    """Datetimes as int64 UTC nanoseconds, with NaT as :data:`NAT`.

    Accepts a numpy ``datetime64`` array (taken as UTC) or a pandas Series / Index / array of datetimes
    (naive = UTC, any time zone converted). Anything else (numbers, strings, objects) is refused, so an epoch
    in the wrong unit cannot slip through as a date.
    """
    if isinstance(values, pd.Series | pd.Index):
        values = values.array
    if not isinstance(values, pd.api.extensions.ExtensionArray):
        values = np.asarray(values)
    if not (values.dtype.kind == "M" or isinstance(values.dtype, pd.DatetimeTZDtype)):
        raise ValueError(f"{name} must hold datetimes (numpy datetime64 or pandas datetime), got dtype {values.dtype}")
    # A time-zone-aware index stores UTC nanoseconds already; a naive one is taken as UTC.
    return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8)


def iso(ns: int | np.integer) -> str:
    """UTC nanoseconds as an ISO-8601 string."""
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()
