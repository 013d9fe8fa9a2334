"""The contract every exploration rule follows."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np


class ExplorationRule(ABC):
    """Turns oracle scores of the eligible actions into a probability vector.

    Subclasses implement :meth:`_raw_probabilities`; the base class validates the scores, splits ties
    evenly (so an untrained oracle, whose scores are all equal, yields the uniform distribution under every
    rule) and mixes in the probability floor.

    The arithmetic is on Python floats: a decision has a handful of actions, for which numpy's per-call
    overhead costs more than the arithmetic (this is on the request path). There is one implementation, so
    a replay from the log reproduces the logged probabilities to the bit.

    Parameters
    ----------
    floor
        Minimum probability every eligible action receives. Applied as a mixture
        ``p = K * f * uniform + (1 - K * f) * p_raw``, so the result still sums to one. When ``K * floor``
        exceeds one the floor is capped at ``1 / K`` (the uniform distribution).
    """

    name: ClassVar[str]
    #: Whether the rule may give zero probability to an action (only ``greedy``, for evaluation).
    greedy: ClassVar[bool] = False

    def __init__(self, floor: float = 0.0) -> None:
        self.floor = number_parameter("floor", floor, low=0.0, high=1.0)

    def probabilities(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Probability of each action, in the order of ``scores`` (higher score = better action)."""
        return np.array(self.probability_list(scores))

    def probability_list(self, scores: Sequence[float] | np.ndarray) -> list[float]:
        """:meth:`probabilities` as a list of floats (what a decision logs)."""
        values = _finite_scores(scores)
        p = self._raw_probabilities(values)
        k = len(values)
        floor = min(self.floor, 1.0 / k)
        if floor > 0.0:
            rest = 1.0 - k * floor
            p = [floor + rest * x for x in p]
        # Renormalise to absorb floating-point drift so the vector sums to 1 within 1e-12.
        total = sum(p)
        return [x / total for x in p]

    def probability_matrix(self, scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """:meth:`probabilities` of many decisions at once: one row per decision, zero off its eligible slots.

        ``scores`` and ``eligible`` have shape ``(n, K)``: decisions with fewer candidates are padded, and
        ``eligible`` marks the real slots (every row needs at least one). Offline work (off-policy evaluation,
        choosing a generation's exploration) scores tens of thousands of decisions; rules with a closed form
        override :meth:`_raw_probability_matrix` to do it in numpy. The result agrees with
        :meth:`probability_list` row by row to floating-point rounding.
        """
        scores = np.asarray(scores, dtype=np.float64)
        eligible = np.asarray(eligible, dtype=bool)
        if scores.ndim != 2 or scores.shape != eligible.shape:
            raise ValueError(f"scores and eligible must be (n, K) arrays of one shape: {scores.shape} {eligible.shape}")
        if not eligible.any(axis=1).all():
            raise ValueError("every decision needs at least one eligible action")
        if not np.isfinite(scores[eligible]).all():
            raise ValueError("scores must be finite")
        p = np.where(eligible, self._raw_probability_matrix(np.where(eligible, scores, -np.inf), eligible), 0.0)
        k = eligible.sum(axis=1, keepdims=True)
        floor = np.minimum(self.floor, 1.0 / k)
        p = np.where(eligible, floor + (1.0 - k * floor) * p, 0.0)
        return p / p.sum(axis=1, keepdims=True)

    def _raw_probability_matrix(self, scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """Raw probabilities of many decisions (``-inf`` off the eligible slots); a loop unless overridden."""
        out = np.zeros(scores.shape)
        for i, row in enumerate(eligible):
            out[i, row] = self._raw_probabilities(scores[i, row].tolist())
        return out

    @abstractmethod
    def _raw_probabilities(self, scores: list[float]) -> list[float]:
        """Probabilities before the floor is applied; must sum to one."""

    def params(self) -> dict[str, Any]:
        """Parameters, as logged with each decision; ``type(self)(**rule.params())`` rebuilds the rule."""
        return {"floor": self.floor}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def number_parameter(name: str, value: object, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float within [low, high], or a ValueError that names the parameter."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a number, got {_short(value)}") from None
    if not np.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{name} must be a finite number in {bounds}, got {_short(value)}")
    return number


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _finite_scores(scores: Sequence[float] | np.ndarray) -> list[float]:
    if isinstance(scores, np.ndarray):
        if scores.ndim != 1:
            raise ValueError("scores must be a non-empty 1-d array")
        values = scores.astype(np.float64, copy=False).tolist()
    else:
        try:
            values = [float(x) for x in scores]
        except (TypeError, ValueError):
            raise ValueError("scores must be a non-empty 1-d sequence of numbers") from None
    if not values:
        raise ValueError("scores must be a non-empty 1-d array")
    if not all(map(math.isfinite, values)):
        raise ValueError("scores must be finite")
    return values


def greedy_distribution(scores: list[float]) -> list[float]:
    """All mass on the best action, split evenly among ties."""
    top = max(scores)
    share = 1.0 / sum(1 for x in scores if x >= top)
    return [share if x >= top else 0.0 for x in scores]
