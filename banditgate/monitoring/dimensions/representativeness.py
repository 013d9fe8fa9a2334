"""Representativeness: how close production's score distribution stays to the reference one."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from banditgate.monitoring.dimensions.base import Measurement, bounded, check_confidence, undefined
from banditgate.policies.exploration.base import number_parameter


def representativeness(
    reference_scores: ArrayLike, production_scores: ArrayLike, ks_cap: float = 0.30, confidence: float = 0.95
) -> Measurement:
    """``P = max(0, 1 - D / ks_cap)``, D the two-sample Kolmogorov-Smirnov statistic between the scores.

    ``D = sup_x |F_ref(x) - F_prod(x)|`` over the empirical distribution functions of the reference scores
    (e.g. the oracle's scores on the generation's training window) and the production scores of the window.
    NaN scores (decisions without an oracle) are dropped. With either sample empty, P reads 0 with the
    interval [0, 1].

    Interval: the Dvoretzky-Kiefer-Wolfowitz bound applied to both samples,
    ``eps = sqrt(ln(2 / alpha) / 2 * (1/n + 1/m))``: with probability at least about ``1 - alpha``, the
    population KS distance is within ``D +- eps``. That range is clipped to [0, 1] and mapped through
    ``1 - D / ks_cap`` (the lower end of P from ``D + eps``).

    Parameters
    ----------
    reference_scores, production_scores
        1-d arrays of scores.
    ks_cap
        The distance at which P reads 0 (0.30 in the paper).
    confidence
        Level of the interval (``alpha = 1 - confidence``).

    Examples
    --------
    >>> m = representativeness([0.1, 0.2, 0.3, 0.4], [0.3, 0.4, 0.5, 0.6], ks_cap=0.6)
    >>> m.detail["ks"], round(m.value, 4)
    (0.5, 0.1667)

    References
    ----------
    "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (representativeness dimension);
    Dvoretzky, Kiefer & Wolfowitz, Annals of Mathematical Statistics 27(3), 1956; Massart, "The tight
    constant in the Dvoretzky-Kiefer-Wolfowitz inequality", Annals of Probability 18(3), 1990.
    """
    reference = sorted_scores("reference_scores", reference_scores)
    production = sorted_scores("production_scores", production_scores)
    distance = ks_statistic_sorted(reference, production) if reference.size and production.size else None
    return representativeness_from_ks(distance, reference.size, production.size, ks_cap, confidence)


def representativeness_from_ks(
    distance: float | None, n_reference: int, n_production: int, ks_cap: float = 0.30, confidence: float = 0.95
) -> Measurement:
    """:func:`representativeness` from a KS distance computed elsewhere (None when a sample is empty).

    >>> round(representativeness_from_ks(0.06, 10_000, 5_000).low, 4)  # eps = 0.0235
    0.7216
    """
    cap = number_parameter("ks_cap", ks_cap, low=0.0)
    if cap == 0.0:
        raise ValueError("ks_cap must be positive, got 0")
    confidence = check_confidence(confidence)
    detail: dict[str, Any] = {
        "method": "two-sample Kolmogorov-Smirnov, P = max(0, 1 - D / ks_cap), DKW interval",
        "ks_cap": cap,
        "confidence": confidence,
        "n_reference": int(n_reference),
        "n_production": int(n_production),
    }
    if n_reference == 0 or n_production == 0 or distance is None:
        which = "reference" if n_reference == 0 else "production"
        return undefined("representativeness", f"no {which} scores", int(n_production), **detail)
    eps = math.sqrt(math.log(2.0 / (1.0 - confidence)) / 2.0 * (1.0 / n_reference + 1.0 / n_production))
    low_distance, high_distance = max(0.0, distance - eps), min(1.0, distance + eps)
    detail |= {"ks": distance, "ks_interval": [low_distance, high_distance], "dkw_eps": eps}
    value, low, high = (max(0.0, 1.0 - d / cap) for d in (distance, high_distance, low_distance))
    return bounded("representativeness", value, low, high, n_production, detail)


def ks_statistic(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``sup_x |F_a(x) - F_b(x)|`` (NaN dropped).

    >>> round(ks_statistic([1.0, 2.0, 3.0], [2.0, 3.0, 4.0, float("nan")]), 4)
    0.3333
    """
    a, b = sorted_scores("a", a), sorted_scores("b", b)
    if a.size == 0 or b.size == 0:
        raise ValueError("the KS statistic needs two non-empty samples")
    return ks_statistic_sorted(a, b)


def ks_statistic_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`ks_statistic` of two non-empty sorted finite arrays, in ``O(k log l)`` for sizes k <= l.

    Binary searches of the smaller sample into the larger one, then :func:`ks_at_points`.
    """
    small, large = (a, b) if a.size <= b.size else (b, a)
    at, before = (np.searchsorted(large, small, side=side) / large.size for side in ("right", "left"))
    return ks_at_points(small, at, before)


def ks_at_points(sample: np.ndarray, other_at: np.ndarray, other_before: np.ndarray) -> float:
    """The KS distance between a sorted sample and a distribution G given at the sample's points.

    ``other_at[i] = G(x_i)`` and ``other_before[i] = G(x_i^-)`` (the limit from the left). Between two
    consecutive points of the sample its distribution function is constant while G only grows, so their
    difference is monotone there and its largest absolute value is reached at one of the ends: at a point
    itself or just before the next one. The two values at each point therefore give the exact supremum, and
    G need only be known at the sample's points (for a shared reference, computed once for all segments).
    """
    at, before = (np.searchsorted(sample, sample, side=side) / sample.size for side in ("right", "left"))
    return float(max(np.abs(at - other_at).max(), np.abs(before - other_before).max()))


def sorted_scores(name: str, values: ArrayLike) -> np.ndarray:
    """The finite scores of a 1-d array, sorted (NaN = no score, dropped; infinities refused)."""
    scores = np.asarray(values, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array, got shape {scores.shape}")
    if np.isinf(scores).any():
        raise ValueError(f"{name} must be finite or NaN (no score), got infinities")
    return np.sort(scores[~np.isnan(scores)])
