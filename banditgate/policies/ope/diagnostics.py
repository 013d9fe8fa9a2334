"""Importance-weight diagnostics: how much of the logged data really speaks for the target policy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Share of rows whose weights make up the "top" in :attr:`WeightDiagnostics.top_share`.
TOP_FRACTION = 0.01


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``, in ``[0, n]`` (0 when every weight is 0).

    ``n`` when all weights are equal; close to 1 when a single row carries nearly all the weight.

    >>> effective_sample_size(np.array([1.0, 1.0, 1.0, 1.0])), effective_sample_size(np.array([4.0, 0.0, 0.0, 0.0]))
    (4.0, 1.0)

    Reference: Kish, *Survey Sampling* (1965); Owen, *Monte Carlo theory, methods and examples*, ch. 9 (2013).
    """
    square_sum = float(np.dot(weights, weights))
    return float(weights.sum()) ** 2 / square_sum if square_sum > 0.0 else 0.0


def top_share(weights: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Share of the total weight carried by the ``ceil(fraction * n)`` largest weights (NaN if all are 0).

    ``fraction`` (0.01 by default) when weights are equal; near 1 when a few rows dominate.

    >>> top_share(np.array([96.0] + [1.0] * 4 + [0.0] * 95))
    0.96
    """
    total = float(weights.sum())
    if total <= 0.0:
        return math.nan
    k = math.ceil(fraction * weights.size)
    return float(np.partition(weights, weights.size - k)[weights.size - k :].sum()) / total


def hill_tail_index(weights: np.ndarray) -> float:
    """Hill estimate of the extreme-value index ``xi`` of the positive weights (NaN if fewer than 3).

    With the positive weights sorted in decreasing order ``w_(1) >= w_(2) >= ...`` and ``k =
    floor(sqrt(m))`` of the ``m`` positive weights (at least 2, at most ``m - 1``):

        xi = (1/k) * sum_{j=1..k} log(w_(j) / w_(k+1))

    ``xi`` is the inverse of the Pareto tail exponent ``alpha``. Reading: ``xi`` near 0 is a light tail
    (weights bounded, e.g. by a probability floor, give small values); ``xi >= 0.5`` means the weights
    behave as if their variance were infinite, so IPS-type estimates converge slowly and their normal
    intervals are not to be trusted (the same thresholds as the ``k-hat`` diagnostic of Pareto-smoothed
    importance sampling: below 0.5 fine, 0.5 to 0.7 doubtful, above 0.7 unreliable). The estimate uses only
    the ``k`` largest weights, so it is noisy on small samples and is a warning light, not a test.

    >>> rng = np.random.default_rng(0)
    >>> round(hill_tail_index(rng.pareto(2.0, 100_000) + 1.0), 1)  # Pareto with alpha = 2, so xi = 0.5
    0.5

    References: Hill, "A simple general approach to inference about the tail of a distribution", Annals of
    Statistics 3(5), 1975; Vehtari, Simpson, Gelman, Yao & Gabry, "Pareto Smoothed Importance Sampling",
    JMLR 25, 2024 (arXiv:1507.02646).
    """
    positive = weights[weights > 0.0]
    m = positive.size
    if m < 3:
        return math.nan
    k = min(max(2, math.isqrt(m)), m - 1)
    top = np.sort(np.partition(positive, m - k - 1)[m - k - 1 :])  # the k + 1 largest, increasing
    return float(np.mean(np.log(top[1:] / top[0])))


@dataclass(frozen=True)
class WeightDiagnostics:
    """Summary of the importance weights ``w_i = pi(a_i | x_i) / p_i`` of a logged data set.

    Attributes
    ----------
    ess
        Effective sample size, see :func:`effective_sample_size`.
    max_weight
        Largest weight: the most any single row counts for, relative to an on-policy row.
    mean_weight
        Average weight; close to 1 when the logged propensities are right and the target policy only uses
        actions the logging policies could take (a mean far from 1 points at wrong propensities).
    top_share
        Share of the total weight in the top 1% of rows, see :func:`top_share`.
    tail_index
        Hill estimate of the weights' extreme-value index, see :func:`hill_tail_index`.
    """

    ess: float
    max_weight: float
    mean_weight: float
    top_share: float
    tail_index: float

    @classmethod
    def of(cls, weights: np.ndarray) -> WeightDiagnostics:
        """Diagnostics of a 1-d array of non-negative weights.

        >>> round(WeightDiagnostics.of(np.array([0.5, 1.5, 1.0, 1.0])).ess, 3)  # 4^2 / 4.5
        3.556
        """
        return cls(
            ess=effective_sample_size(weights),
            max_weight=float(weights.max()),
            mean_weight=float(weights.mean()),
            top_share=top_share(weights),
            tail_index=hill_tail_index(weights),
        )
