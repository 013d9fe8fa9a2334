"""Proxy category 1, score distribution: PSI and KS between the reference and current oracle scores.

A generation's evidence was gathered on the scores its oracle produced on the reference window. When the
scores it produces now are distributed differently, the decisions it takes now are not the ones that evidence
describes. Two statistics, larger is worse:

- Population stability index on ``B`` bins cut at the reference's quantiles,
  ``PSI = sum_b (c_b - r_b) ln(c_b / r_b)`` with ``r_b``, ``c_b`` the reference and current shares of bin
  ``b``; an empty bin's share is raised to :data:`PSI_EPSILON` so the logarithm stays finite.
- Two-sample Kolmogorov-Smirnov distance ``KS = sup_x |F_ref(x) - F_cur(x)|``, the statistic behind the
  representativeness dimension ``P = max(0, 1 - KS / KS_cap)``.

Reference: "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (PSI on 10 bins with the
trigger 0.25, KS with ``KS_cap = 0.30``); Siddiqi, "Credit Risk Scorecards", Wiley 2006, ch. 8 (PSI and its
0.1 / 0.25 rules of thumb).
"""

from __future__ import annotations

import numpy as np
from scipy.special import kolmogorov

from banditgate.monitoring.proxies.base import ProxyReading, reading, unavailable

CATEGORY = "score_distribution"

#: Share given to an empty bin, so that ``ln(c / r)`` stays finite (the usual PSI convention).
PSI_EPSILON = 1e-4

#: PSI at or beyond which the proxy alerts: the paper's trigger, the scorecard rule for a significant shift.
PSI_TRIGGER = 0.25
#: PSI at which the proxy reads 0: twice the trigger, so an alerting PSI still reads at most 0.5.
PSI_CAP = 0.5
#: KS at which the proxy reads 0: ``KS_cap`` of the representativeness dimension.
KS_CAP = 0.30
#: KS at or beyond which the proxy alerts: representativeness down to 2/3, above the 99.9% null quantile
#: (about ``1.95 * sqrt(1/n + 1/m)``, 0.062 at 1,000 rows against a large reference) from ``min_rows`` up.
KS_TRIGGER = 0.10

#: Rows each side needs by default: the 99.9% null quantiles of KS (0.062) and PSI on 10 bins
#: (``chi2_9(0.999) * (1/n + 1/m)`` = 0.028) then sit well below their triggers, so noise alone rarely alerts.
MIN_ROWS = 1000


def _scores(values: object, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of scores, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (drop decisions without a score first)")
    return array


def _non_empty(values: object, name: str) -> np.ndarray:
    array = _scores(values, name)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    return array


def psi(reference: object, current: object, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` on ``bins`` reference-quantile bins.

    The inner bin edges are the reference's ``1/B, ..., (B-1)/B`` quantiles, the outer bins are open, and a
    value equal to an edge falls in the bin above it. Repeated quantiles (a reference with ties) are merged,
    so a reference of few distinct values gets fewer bins rather than empty ones. Empty bins count as
    :data:`PSI_EPSILON`.

    >>> psi([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0], bins=2)
    0.0
    >>> round(psi([0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 3.0], bins=2), 6)  # (1/4) ln(3/2) - (1/4) ln(1/2)
    0.274653
    """
    ref_share, cur_share, _ = _binned_shares(
        _non_empty(reference, "reference"), _non_empty(current, "current"), _integer_at_least(bins, "bins", low=2)
    )
    return _psi(ref_share, cur_share)


def _psi(ref_share: np.ndarray, cur_share: np.ndarray) -> float:
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def _integer_at_least(value: object, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _binned_shares(reference: np.ndarray, current: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference and current shares per reference-quantile bin (empty bins at :data:`PSI_EPSILON`), and the edges."""
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))
    n_bins = edges.size + 1
    ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=n_bins) / reference.size
    cur_share = np.bincount(np.searchsorted(edges, current, side="right"), minlength=n_bins) / current.size
    return np.maximum(ref_share, PSI_EPSILON), np.maximum(cur_share, PSI_EPSILON), edges


def ks_statistic(reference: object, current: object) -> float:
    """Two-sample Kolmogorov-Smirnov distance ``sup_x |F_ref(x) - F_cur(x)|`` (both ECDFs right-continuous).

    Evaluating both ECDFs at every observed value (``searchsorted`` on the sorted samples) finds the supremum
    exactly, in ``O((n + m) log(n + m))``.

    >>> ks_statistic([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    0.5
    >>> ks_statistic([1.0, 2.0], [1.0, 2.0])
    0.0
    """
    reference = np.sort(_non_empty(reference, "reference"))
    current = np.sort(_non_empty(current, "current"))
    points = np.concatenate([reference, current])
    f_ref = np.searchsorted(reference, points, side="right") / reference.size
    f_cur = np.searchsorted(current, points, side="right") / current.size
    return float(np.max(np.abs(f_ref - f_cur)))


def score_distribution_proxies(
    reference_scores: object, current_scores: object, *, bins: int = 10, min_rows: int = MIN_ROWS
) -> list[ProxyReading]:
    """``score_psi`` and ``score_ks`` of the current scores against the reference scores.

    Coverage:

    - ``score_ks`` covers representativeness: it is the statistic that defines that dimension.
    - ``score_psi`` covers representativeness and reliability: a stable score distribution is the standard
      condition under which a scorecard's validated performance is still assumed to hold (the PSI rule of
      thumb exists for exactly that decision), so a PSI beyond the trigger also says the measured reliability
      no longer describes the current decisions.

    Both are ``unavailable`` when either side has fewer than ``min_rows`` scores.

    Parameters
    ----------
    reference_scores, current_scores
        The oracle's scores (e.g. of the chosen action) on the reference and the current window.
    bins
        PSI bins (the paper uses 10).
    min_rows
        Scores needed on each side.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref, cur = rng.normal(0.0, 1.0, 5000), rng.normal(0.5, 1.0, 5000)
    >>> readings = score_distribution_proxies(ref, cur)
    >>> [(r.name, r.status, round(r.statistic, 3), round(r.normalised, 3)) for r in readings]
    [('score_psi', 'alert', 0.266, 0.468), ('score_ks', 'alert', 0.218, 0.274)]
    >>> score_distribution_proxies(ref, cur[:10])[1].detail["reason"]
    'current window has 10 scores, fewer than the 1000 needed'
    """
    reference = _scores(reference_scores, "reference_scores")
    current = _scores(current_scores, "current_scores")
    bins = _integer_at_least(bins, "bins", low=2)
    min_rows = _integer_at_least(min_rows, "min_rows")
    psi_spec = {"cap": PSI_CAP, "trigger": PSI_TRIGGER, "covers": ("representativeness", "reliability")}
    ks_spec = {"cap": KS_CAP, "trigger": KS_TRIGGER, "covers": ("representativeness",)}
    for side, scores in (("reference", reference), ("current", current)):
        if scores.size < min_rows:
            reason = f"{side} window has {scores.size} scores, fewer than the {min_rows} needed"
            return [
                unavailable("score_psi", CATEGORY, reason, **psi_spec),
                unavailable("score_ks", CATEGORY, reason, **ks_spec),
            ]

    ref_share, cur_share, edges = _binned_shares(reference, current, bins)
    psi_value = _psi(ref_share, cur_share)
    ks_value = ks_statistic(reference, current)
    n, m = reference.size, current.size
    counts = {"n_reference": int(n), "n_current": int(m)}
    return [
        reading(
            "score_psi",
            CATEGORY,
            psi_value,
            **psi_spec,
            detail={
                **counts,
                "edges": edges.tolist(),
                "reference_shares": ref_share.tolist(),
                "current_shares": cur_share.tolist(),
            },
        ),
        reading(
            "score_ks",
            CATEGORY,
            ks_value,
            **ks_spec,
            # Asymptotic two-sample p-value (Smirnov), to tell a real shift from noise on small windows.
            detail={**counts, "p_value": float(kolmogorov(ks_value * np.sqrt(n * m / (n + m))))},
        ),
    ]
