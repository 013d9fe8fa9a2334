"""Reliability: the model's quality on the decisions whose labels have arrived (retroactively labelled).

Three metrics, each in [0, 1] with a percentile-bootstrap interval:

- ``f1``: binary F1 of ``p >= threshold`` against the label, ``F1 = 2 TP / (2 TP + FP + FN)`` (the paper's).
- ``brier_skill``: ``max(0, 1 - Brier / (q (1 - q)))``, ``Brier = mean((p - y)^2)``, ``q`` the prevalence of
  the labelled rows: the share of the outcome variance the probabilities explain beyond always predicting
  the prevalence.
- ``calibration``: ``1 - ECE``, ``ECE = sum_b (n_b / n) |mean(y)_b - mean(p)_b|`` over equal-width bins of p.

Why not only F1. At a 3% prevalence (fraud), F1 rests on the few positives alone: 1,000 labelled decisions
hold about 30, so one positive more or less caught moves F1 by several points and its bootstrap interval
spans tens of points. It also depends on the threshold and on the prevalence itself: under prior drift
(P(Y) changes) a model whose ranking and calibration are unchanged sees its F1 move, and it ignores true
negatives, which are most of the decisions. And it is undefined when a window has no positive labels,
which at 3% is routine for small segments. The calibration-based metrics use every labelled row, are
defined whichever classes are present (``calibration``) or need only both classes (``brier_skill``), and
measure what the bandit consumes: the oracle's probabilities feed the exploration rule as they are
(SquareCB weights actions by score gaps), so a model whose probabilities are off is unreliable even if its
ranking at one threshold is good. They answer different questions: ``1 - ECE`` is blind to discrimination
(predicting the prevalence for every row is perfectly calibrated), which Brier skill catches (it scores
that predictor 0); read them together when the choice matters.

Bootstrap without resampling rows. Each metric depends on the rows only through per-cell counts and sums:
the confusion-matrix cells (F1), the label classes (Brier) or the (bin, label) cells (ECE). An ordinary
bootstrap resample of n rows draws the cell counts from ``Multinomial(n, counts / n)``, which is what is
drawn here, exactly, so the cost is ``O(n)`` once plus ``O(n_boot x cells)``, whatever n (a million rows
cost the same bootstrap as a thousand). For the sums of p (ECE) and of ``(p - y)^2`` (Brier) within a cell,
the sum of k rows drawn with replacement from the cell is taken as normal with mean ``k m`` and variance
``k v`` (the cell's mean and variance), clipped to the cell's range; this is exact for F1 and, for the
others, accurate unless a cell holds only a handful of rows. Replicates where a metric is undefined (no
positive drawn for F1, one class for Brier skill) count as 0, the conservative reading. The percentile
interval is widened to contain the point estimate when it does not (it need not: ECE's finite-sample bias
shifts its bootstrap distribution up, so the interval of ``1 - ECE`` leans low).

Small samples. A bootstrap only redraws what it has seen: one labelled decision (or a hundred that are all
true positives) gives the same value in every replicate and a zero-width interval, as if the metric were
known exactly. So the interval is also widened to contain the Wilson interval of the value read as a
proportion of its trials (the labelled rows; for F1 the rows that enter it, ``TP + FP + FN``): one label
reads about [0.2, 1] whatever its score, and on thousands of rows the bootstrap's own interval is the wider
one almost everywhere.

Undefined cases read 0 with the interval [0, 1] and a reason: no labelled rows (all metrics), no positive
labels (F1, whose recall has no denominator), one class only (Brier skill, whose reference score is 0).
Scores outside [0, 1] (a regression oracle may step slightly outside) are clipped and counted.

References
----------
"Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (reliability dimension); Brier,
"Verification of forecasts expressed in terms of probability", Monthly Weather Review 78(1), 1950;
Naeini, Cooper & Hauskrecht, "Obtaining well calibrated probabilities using Bayesian binning", AAAI 2015;
Guo et al., "On calibration of modern neural networks", ICML 2017; Saito & Rehmsmeier, "The precision-recall
plot is more informative than the ROC plot when evaluating binary classifiers on imbalanced datasets",
PLoS ONE 10(3), 2015; Efron & Tibshirani, "An Introduction to the Bootstrap", 1993.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from banditgate.monitoring.dimensions.base import (
    Measurement,
    bounded,
    check_confidence,
    integer_parameter,
    undefined,
    wilson,
)
from banditgate.policies.exploration.base import number_parameter

#: The reliability metrics :func:`reliability` dispatches to.
RELIABILITY_METRICS = ("f1", "brier_skill", "calibration")

DEFAULT_BOOTSTRAP = 1000


def f1_reliability(
    y: ArrayLike,
    p: ArrayLike,
    threshold: float = 0.5,
    *,
    confidence: float = 0.95,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Measurement:
    """Binary F1 of ``p >= threshold`` on labels ``y``, with a percentile-bootstrap interval.

    Examples
    --------
    >>> m = f1_reliability([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.8])  # TP 2, FP 1, FN 1
    >>> round(m.value, 4), m.detail["tp"], m.detail["fp"], m.detail["fn"], m.detail["tn"]
    (0.6667, 2, 1, 1, 1)
    >>> f1_reliability([0, 0], [0.1, 0.7]).detail["reason"]
    'no positive labels: F1 is undefined (recall has no denominator)'
    """
    threshold = number_parameter("threshold", threshold, low=0.0, high=1.0)
    labels, scores, detail = _inputs(y, p, confidence, n_boot, seed)
    detail |= {"method": f"binary F1 at threshold {threshold}, percentile bootstrap", "threshold": threshold}
    if labels.size == 0:
        return undefined("reliability", "no labelled decisions", **detail)
    positive, predicted = labels == 1.0, scores >= threshold
    tp = int(np.count_nonzero(positive & predicted))
    fp = int(np.count_nonzero(predicted)) - tp
    fn = int(np.count_nonzero(positive)) - tp
    tn = labels.size - tp - fp - fn
    detail |= {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "prevalence": (tp + fn) / labels.size,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
    }
    if tp + fn == 0:
        return undefined(
            "reliability", "no positive labels: F1 is undefined (recall has no denominator)", labels.size, **detail
        )
    value = 2 * tp / (2 * tp + fp + fn)
    draws = _resample_counts(np.array([tp, fp, fn, tn]), n_boot, np.random.default_rng(seed))
    drawn_tp, drawn_fp, drawn_fn = (draws[:, i].astype(np.float64) for i in range(3))
    denominator = 2 * drawn_tp + drawn_fp + drawn_fn
    replicates = np.where(drawn_tp + drawn_fn > 0, 2 * drawn_tp / np.maximum(denominator, 1.0), 0.0)
    low, high = _interval(value, replicates, tp + fp + fn, confidence)
    return bounded("reliability", value, low, high, labels.size, detail)


def brier_skill_reliability(
    y: ArrayLike, p: ArrayLike, *, confidence: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> Measurement:
    """Brier skill score against the prevalence, floored at 0, with a percentile-bootstrap interval.

    Examples
    --------
    >>> m = brier_skill_reliability([1, 0, 0, 0], [0.8, 0.2, 0.1, 0.1])  # Brier 0.025, q (1 - q) 0.1875
    >>> round(m.value, 4), round(m.detail["brier"], 4)
    (0.8667, 0.025)
    """
    labels, scores, detail = _inputs(y, p, confidence, n_boot, seed)
    detail |= {"method": "Brier skill vs the prevalence, max(0, 1 - Brier / (q (1 - q))), percentile bootstrap"}
    if labels.size == 0:
        return undefined("reliability", "no labelled decisions", **detail)
    n = labels.size
    errors = (scores - labels) ** 2
    prevalence = float(labels.mean())
    brier = float(errors.mean())
    detail |= {"brier": brier, "prevalence": prevalence}
    if prevalence in (0.0, 1.0):
        reason = "all labels are one class: the reference Brier score q (1 - q) is 0, so the skill is undefined"
        return undefined("reliability", reason, n, **detail)
    skill = 1.0 - brier / (prevalence * (1.0 - prevalence))
    detail |= {"reference_brier": prevalence * (1.0 - prevalence), "skill": skill}
    cells = labels.astype(np.int64)
    counts, sums = _resample_cells(cells, errors, 2, n_boot, seed)
    drawn_q = counts[:, 1] / n
    variance = drawn_q * (1.0 - drawn_q)
    replicates = np.where(variance > 0, 1.0 - sums.sum(axis=1) / n / np.where(variance > 0, variance, 1.0), 0.0)
    low, high = _interval(max(0.0, skill), np.maximum(replicates, 0.0), n, confidence)
    return bounded("reliability", max(0.0, skill), low, high, n, detail)


def calibration_reliability(
    y: ArrayLike,
    p: ArrayLike,
    bins: int = 10,
    *,
    confidence: float = 0.95,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Measurement:
    """``1 - ECE`` over ``bins`` equal-width bins of p on [0, 1], with a percentile-bootstrap interval.

    Examples
    --------
    >>> m = calibration_reliability([1, 0, 0, 0], [0.8, 0.2, 0.1, 0.1], bins=2)
    >>> round(m.value, 4)  # bin [0, .5): |0 - 0.1333| * 3/4; bin [.5, 1]: |1 - 0.8| * 1/4
    0.85
    """
    bins = integer_parameter("bins", bins, 1)
    labels, scores, detail = _inputs(y, p, confidence, n_boot, seed)
    detail |= {"method": f"1 - expected calibration error over {bins} equal-width bins, percentile bootstrap"}
    if labels.size == 0:
        return undefined("reliability", "no labelled decisions", **detail)
    n = labels.size
    which = np.minimum((scores * bins).astype(np.int64), bins - 1)
    in_bin = np.bincount(which, minlength=bins)
    label_sums = np.bincount(which, weights=labels, minlength=bins)
    score_sums = np.bincount(which, weights=scores, minlength=bins)
    ece = float(np.abs(label_sums - score_sums).sum() / n)
    detail |= {
        "ece": ece,
        "bins": [
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": int(in_bin[b]),
                "mean_score": float(score_sums[b] / in_bin[b]),
                "mean_label": float(label_sums[b] / in_bin[b]),
            }
            for b in np.flatnonzero(in_bin)
        ],
    }
    cells = which * 2 + labels.astype(np.int64)
    counts, sums = _resample_cells(cells, scores, 2 * bins, n_boot, seed)
    drawn_labels = counts[:, 1::2]
    drawn_scores = sums[:, 0::2] + sums[:, 1::2]
    replicates = 1.0 - np.abs(drawn_labels - drawn_scores).sum(axis=1) / n
    return bounded("reliability", 1.0 - ece, *_interval(1.0 - ece, replicates, n, confidence), n, detail)


_METRICS: dict[str, Callable[..., Measurement]] = {
    "f1": f1_reliability,
    "brier_skill": brier_skill_reliability,
    "calibration": calibration_reliability,
}


def reliability(y: ArrayLike, p: ArrayLike, metric: str = "f1", **kw: Any) -> Measurement:
    """Reliability by the named metric (one of :data:`RELIABILITY_METRICS`); ``kw`` goes to that metric.

    >>> reliability([1, 0, 1], [0.9, 0.2, 0.3], metric="f1", threshold=0.25).value
    1.0
    """
    try:
        measure = _METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown reliability metric {metric!r}; known: {', '.join(RELIABILITY_METRICS)}") from None
    try:
        return measure(y, p, **kw)
    except TypeError as exc:
        raise ValueError(f"bad parameters for reliability metric {metric!r}: {exc}") from None


def _inputs(
    y: ArrayLike, p: ArrayLike, confidence: float, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Validated labels and clipped scores as float64 arrays, and the detail every metric reports."""
    check_confidence(confidence)
    integer_parameter("n_boot", n_boot, 2)
    integer_parameter("seed", seed, 0)
    labels = np.asarray(y, dtype=np.float64)
    scores = np.asarray(p, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"y and p must be 1-d arrays of the same length, got shapes {labels.shape} and {scores.shape}")
    if not ((labels == 0.0) | (labels == 1.0)).all():
        raise ValueError("y must hold only 0 and 1 (a label per labelled decision)")
    if not np.isfinite(scores).all():
        raise ValueError("p must hold finite predicted probabilities (drop decisions without an oracle score)")
    outside = int(np.count_nonzero((scores < 0.0) | (scores > 1.0)))
    if outside:
        scores = np.clip(scores, 0.0, 1.0)
    detail = {"confidence": confidence, "n_boot": n_boot, "seed": seed, "scores_clipped": outside}
    return labels, scores, detail


def _resample_counts(counts: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Cell counts of ``n_boot`` bootstrap resamples: ``Multinomial(n, counts / n)``, shape (n_boot, cells)."""
    n = int(counts.sum())
    return rng.multinomial(n, counts / n, size=n_boot)


def _resample_cells(
    cells: np.ndarray, values: np.ndarray, n_cells: int, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-replicate cell counts and sums of ``values`` over the cells, both of shape (n_boot, n_cells).

    Counts are exact bootstrap draws; a cell's sum over its k drawn rows is ``k m + sqrt(k v) Z`` clipped to
    ``[k min, k max]`` (see the module docstring).
    """
    counts = np.bincount(cells, minlength=n_cells)
    sums = np.bincount(cells, weights=values, minlength=n_cells)
    squares = np.bincount(cells, weights=values * values, minlength=n_cells)
    occupied = counts > 0
    mean = np.divide(sums, counts, out=np.zeros(n_cells), where=occupied)
    variance = np.maximum(np.divide(squares, counts, out=np.zeros(n_cells), where=occupied) - mean * mean, 0.0)
    # Values lie in [0, 1], so these starts are overwritten in every occupied cell.
    low, high = np.ones(n_cells), np.zeros(n_cells)
    np.minimum.at(low, cells, values)
    np.maximum.at(high, cells, values)
    rng = np.random.default_rng(seed)
    drawn = np.zeros((n_boot, n_cells), dtype=np.int64)
    drawn[:, occupied] = _resample_counts(counts[occupied], n_boot, rng)
    noise = rng.standard_normal(drawn.shape) * np.sqrt(drawn * variance)
    return drawn, np.clip(drawn * mean + noise, drawn * low, drawn * high)


def _interval(value: float, replicates: np.ndarray, trials: int, confidence: float) -> tuple[float, float]:
    """The percentile interval of the replicates, widened to the Wilson interval of ``value`` on ``trials``
    (see "Small samples" in the module docstring)."""
    low, high = np.quantile(replicates, [0.5 - confidence / 2.0, 0.5 + confidence / 2.0])
    wilson_low, wilson_high = wilson(min(1.0, max(0.0, value)), trials, confidence)
    return min(float(low), wilson_low), max(float(high), wilson_high)
