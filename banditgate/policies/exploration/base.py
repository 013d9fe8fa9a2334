"""The contract every exploration rule follows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np


class ExplorationRule(ABC):
    """Turns oracle scores of the eligible actions into a probability vector.

    Subclasses implement :meth:`_raw_probabilities`; the base class validates the scores, splits ties
    evenly (so an untrained oracle, whose scores are all equal, yields the uniform distribution under every
    rule) and mixes in the probability floor.

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

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Probability of each action, in the order of ``scores`` (higher score = better action)."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1 or scores.size == 0:
            raise ValueError("scores must be a non-empty 1-d array")
        if not np.all(np.isfinite(scores)):
            raise ValueError("scores must be finite")
        p = self._raw_probabilities(scores)
        k = scores.size
        floor = min(self.floor, 1.0 / k)
        if floor > 0.0:
            p = floor + (1.0 - k * floor) * p
        # Renormalise to absorb floating-point drift so the vector sums to 1 within 1e-12.
        return p / p.sum()

    @abstractmethod
    def _raw_probabilities(self, scores: np.ndarray) -> np.ndarray:
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


def best_actions_mask(scores: np.ndarray) -> np.ndarray:
    """Boolean mask of the actions tied for the highest score."""
    return scores >= scores.max()


def greedy_distribution(scores: np.ndarray) -> np.ndarray:
    """All mass on the best action, split evenly among ties."""
    best = best_actions_mask(scores)
    return best / best.sum()
