"""Proxy category 3, uncertainty: how sure the policy and its oracle are, now against the reference.

Per decision ``i`` with ``K_i`` eligible actions and probability vector ``p_i`` (the exploration rule's):

- normalised decision entropy ``h_i = -sum_a p_ia ln p_ia / ln K_i`` in [0, 1] (0 when ``K_i = 1``): 0 for a
  certain choice, 1 for the uniform one, comparable across decisions with different numbers of actions;
- confidence ``c_i = max_a p_ia``;
- prediction entropy ``b_i = -(q_i log2 q_i + (1 - q_i) log2 (1 - q_i))`` in [0, 1] of the oracle's predicted
  probability ``q_i`` that the chosen action succeeds (1 bit at ``q = 1/2``).

A model that meets contexts unlike those it was trained and validated on usually becomes less (or wrongly
more) sure of itself, so each statistic compares the current window with the reference, in either direction:
``|mean h_cur - mean h_ref|``, ``|mean b_cur - mean b_ref|`` and the KS distance between the confidence
distributions. They see covariate drift through the model's eyes; concept drift, which leaves the model's
inputs and outputs unchanged, is invisible to them by construction.

Reference: "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (proxy category 3, prediction
entropy and confidence drift); Shannon, "A mathematical theory of communication", Bell Syst. Tech. J. 27, 1948.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
from scipy.special import entr

from banditgate.monitoring.proxies.base import ProxyReading, reading, unavailable
from banditgate.monitoring.proxies.score_distribution import MIN_ROWS, ks_statistic

CATEGORY = "uncertainty"

#: Tolerance on each probability vector summing to one.
SUM_TOLERANCE = 1e-6

#: Entropy shifts (both entropies are in [0, 1]): an alert at 5% of the maximum entropy, about five standard
#: errors of a mean difference at ``MIN_ROWS`` rows a side for a typical spread of entropies (0.2); reading 0
#: at 20%, a move of a whole typical standard deviation.
ENTROPY_SHIFT_TRIGGER = 0.05
ENTROPY_SHIFT_CAP = 0.20
#: Confidence drift is a KS distance on a model output, read on the scale of the score KS proxy.
CONFIDENCE_KS_TRIGGER = 0.10
CONFIDENCE_KS_CAP = 0.30


def probability_matrix(probabilities: object, n_actions: object = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-decision probability vectors as an ``(n, K_max)`` matrix and the mask of each row's actions.

    Parameters
    ----------
    probabilities
        Either a sequence of 1-d vectors (one per decision, of any lengths), or a 2-d array whose row ``i``
        holds decision ``i``'s vector followed by padding.
    n_actions
        For a 2-d array: the number of actions of each decision, its first ``n_actions[i]`` entries; the rest
        of the row is padding and ignored. When omitted, NaN entries are the padding.

    Returns
    -------
    The matrix, with 0 outside each row's actions, and the boolean mask of the actions. Raises ``ValueError``
    when a vector is empty, has a negative or non-finite entry or does not sum to one.

    Examples
    --------
    >>> matrix, mask = probability_matrix([[0.5, 0.5], [1.0], [0.2, 0.3, 0.5]])
    >>> matrix.tolist(), mask.sum(axis=1).tolist()
    ([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], [2, 1, 3])
    >>> probability_matrix(np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]), n_actions=[2, 1])[1].tolist()
    [[True, True, False], [True, False, False]]
    """
    if isinstance(probabilities, np.ndarray) and probabilities.ndim == 2:
        matrix = probabilities.astype(np.float64)
        if n_actions is None:
            mask = ~np.isnan(matrix)
        else:
            counts = np.asarray(n_actions)
            if counts.shape != (matrix.shape[0],) or counts.dtype.kind not in "iu":
                raise ValueError(f"n_actions must be {matrix.shape[0]} integers, one per row of probabilities")
            if np.any((counts < 1) | (counts > matrix.shape[1])):
                raise ValueError(f"n_actions must lie in [1, {matrix.shape[1]}] (the matrix's width)")
            mask = np.arange(matrix.shape[1]) < counts[:, None]
    elif isinstance(probabilities, Sequence | np.ndarray) and not isinstance(probabilities, str | bytes):
        if n_actions is not None:
            raise ValueError("n_actions is for a padded 2-d array; a sequence of vectors carries its own lengths")
        matrix, mask = _pad(probabilities)
    else:
        raise ValueError(f"probabilities must be a sequence of vectors or a 2-d array, got {type(probabilities)}")
    if matrix.shape[0] and not np.all(mask.any(axis=1)):
        raise ValueError("every decision needs at least one action; found an empty probability vector")
    values = np.where(mask, matrix, 0.0)
    if not np.all(np.isfinite(values)) or np.any(values < 0.0):
        raise ValueError("probabilities must be finite and non-negative")
    if np.any(np.abs(values.sum(axis=1) - 1.0) > SUM_TOLERANCE):
        raise ValueError(f"each probability vector must sum to 1 (within {SUM_TOLERANCE})")
    return values, mask


def _pad(vectors: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    # Streaming the values once through np.fromiter is several times faster than one array per decision.
    try:
        lengths = np.fromiter(map(len, vectors), dtype=np.int64, count=len(vectors))
        values = np.fromiter(chain.from_iterable(vectors), dtype=np.float64, count=int(lengths.sum()))
    except (TypeError, ValueError):
        raise ValueError("each probability vector must be a 1-d sequence of numbers") from None
    width = int(lengths.max(initial=0))
    matrix = np.zeros((len(vectors), width))
    mask = np.arange(width) < lengths[:, None]
    matrix[mask] = values  # the mask's row-major order is the order of the concatenated vectors
    return matrix, mask


def decision_entropy(probabilities: object, n_actions: object = None) -> np.ndarray:
    """Normalised entropy ``H(p_i) / ln K_i`` of each decision's probability vector (0 when ``K_i = 1``).

    See :func:`probability_matrix` for the accepted inputs.

    >>> decision_entropy([[0.5, 0.5], [1.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]).tolist()
    [1.0, 0.0, 0.0, 1.0]
    >>> round(float(decision_entropy([[0.9, 0.1]])[0]), 4)  # (0.9 ln(1/0.9) + 0.1 ln(1/0.1)) / ln 2
    0.469
    """
    return _normalised_entropy(*probability_matrix(probabilities, n_actions))


def _normalised_entropy(matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    k = mask.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # ln 1 = 0 for single-action decisions
        normalised = entr(matrix).sum(axis=1) / np.log(k)
    return np.where(k > 1, np.clip(normalised, 0.0, 1.0), 0.0)


def prediction_entropy(predictions: object) -> np.ndarray:
    """Binary entropy in bits of each predicted success probability ``q`` (0 at ``q`` in {0, 1}, 1 at 1/2).

    >>> prediction_entropy([0.5, 1.0, 0.0, 0.9]).round(4).tolist()
    [1.0, 0.0, 0.0, 0.469]
    """
    q = _predictions(predictions, "predictions")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where((q > 0.0) & (q < 1.0), -(q * np.log2(q) + (1.0 - q) * np.log2(1.0 - q)), 0.0)
    return terms


def _predictions(values: object, name: str) -> np.ndarray:
    q = np.asarray(values, dtype=np.float64)
    if q.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array, got shape {q.shape}")
    if not np.all((q >= 0.0) & (q <= 1.0)):  # NaN fails too
        raise ValueError(f"{name} must be probabilities in [0, 1]")
    return q


def uncertainty_proxies(
    reference_probs: object,
    current_probs: object,
    reference_pred: object | None,
    current_pred: object | None,
    *,
    reference_n_actions: object = None,
    current_n_actions: object = None,
    min_rows: int = MIN_ROWS,
) -> list[ProxyReading]:
    """``decision_entropy_shift``, ``prediction_entropy_shift`` and ``confidence_drift``, current vs reference.

    Coverage: all three cover reliability (a model whose certainty moved is no longer the model whose quality
    was measured); ``confidence_drift`` also covers representativeness, being the representativeness
    statistic (KS between reference and current model outputs) applied to the decision's confidence.

    Parameters
    ----------
    reference_probs, current_probs
        The decisions' probability vectors (see :func:`probability_matrix`).
    reference_pred, current_pred
        The oracle's predicted success probability of each chosen action, or None when the oracle does not
        predict probabilities (then ``prediction_entropy_shift`` is unavailable).
    reference_n_actions, current_n_actions
        Action counts for padded 2-d ``*_probs``.
    min_rows
        Decisions (predictions) needed on each side, else the reading is unavailable.

    Examples
    --------
    Half the decisions become uniform: mean entropy (0.469 + 1) / 2 -> 1, confidence half 0.9 -> all 0.5.

    >>> ref, cur = [[0.9, 0.1]] * 1000 + [[0.5, 0.5]] * 1000, [[0.5, 0.5]] * 2000
    >>> readings = uncertainty_proxies(ref, cur, [0.9] * 2000, [0.9] * 2000)
    >>> [(r.name, r.status, round(r.statistic, 4)) for r in readings]  # doctest: +NORMALIZE_WHITESPACE
    [('decision_entropy_shift', 'alert', 0.2655), ('prediction_entropy_shift', 'ok', 0.0),
     ('confidence_drift', 'alert', 0.5)]
    """
    ref_matrix, ref_mask = probability_matrix(reference_probs, reference_n_actions)
    cur_matrix, cur_mask = probability_matrix(current_probs, current_n_actions)
    entropy_spec = {"cap": ENTROPY_SHIFT_CAP, "trigger": ENTROPY_SHIFT_TRIGGER, "covers": ("reliability",)}
    confidence_spec = {
        "cap": CONFIDENCE_KS_CAP,
        "trigger": CONFIDENCE_KS_TRIGGER,
        "covers": ("reliability", "representativeness"),
    }
    short = _too_few(ref_matrix.shape[0], cur_matrix.shape[0], min_rows, "decisions")
    if short:
        decision_readings = [
            unavailable("decision_entropy_shift", CATEGORY, short, **entropy_spec),
            unavailable("confidence_drift", CATEGORY, short, **confidence_spec),
        ]
    else:
        ref_h, cur_h = _normalised_entropy(ref_matrix, ref_mask), _normalised_entropy(cur_matrix, cur_mask)
        ref_c, cur_c = ref_matrix.max(axis=1), cur_matrix.max(axis=1)
        decision_readings = [
            _shift_reading("decision_entropy_shift", ref_h, cur_h, entropy_spec),
            reading(
                "confidence_drift",
                CATEGORY,
                ks_statistic(ref_c, cur_c),
                **confidence_spec,
                detail=_means(ref_c, cur_c),
            ),
        ]

    if reference_pred is None or current_pred is None:
        prediction = unavailable(
            "prediction_entropy_shift", CATEGORY, "the oracle gives no predicted probabilities", **entropy_spec
        )
    else:
        ref_q = _predictions(reference_pred, "reference_pred")
        cur_q = _predictions(current_pred, "current_pred")
        short = _too_few(ref_q.size, cur_q.size, min_rows, "predictions")
        if short:
            prediction = unavailable("prediction_entropy_shift", CATEGORY, short, **entropy_spec)
        else:
            prediction = _shift_reading(
                "prediction_entropy_shift", prediction_entropy(ref_q), prediction_entropy(cur_q), entropy_spec
            )
    return [decision_readings[0], prediction, decision_readings[1]]


def _too_few(n_reference: int, n_current: int, min_rows: int, what: str) -> str | None:
    if isinstance(min_rows, bool) or not isinstance(min_rows, int | np.integer) or min_rows < 1:
        raise ValueError(f"min_rows must be a positive integer, got {min_rows!r}")
    for side, n in (("reference", n_reference), ("current", n_current)):
        if n < min_rows:
            return f"{side} window has {n} {what}, fewer than the {min_rows} needed"
    return None


def _means(reference: np.ndarray, current: np.ndarray) -> dict[str, float | int]:
    return {
        "reference_mean": float(reference.mean()),
        "current_mean": float(current.mean()),
        "n_reference": int(reference.size),
        "n_current": int(current.size),
    }


def _shift_reading(name: str, reference: np.ndarray, current: np.ndarray, spec: dict) -> ProxyReading:
    detail = _means(reference, current)
    return reading(name, CATEGORY, abs(detail["current_mean"] - detail["reference_mean"]), **spec, detail=detail)
