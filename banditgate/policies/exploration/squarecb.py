"""SquareCB: inverse-gap weighting."""

from __future__ import annotations

from typing import Any

import numpy as np

from banditgate.policies.exploration.base import ExplorationRule, number_parameter


class SquareCB(ExplorationRule):
    """Inverse-gap weighting of a regression oracle (SquareCB).

    For every action that is not the best, ``p(a) = 1 / (K + gamma * (f(x, best) - f(x, a)))``; the best
    action takes the remaining mass. Ties for the best are all treated as best and share the remainder
    evenly, so equal scores give the uniform distribution. ``gamma`` sets the exploration level: the
    larger, the greedier; retraining raises it per generation (e.g. ``gamma0 * sqrt(n)``).

    Parameters
    ----------
    gamma
        Non-negative learning-rate parameter; ``gamma = 0`` is uniform.
    floor
        See :class:`~banditgate.policies.exploration.base.ExplorationRule`.

    Examples
    --------
    >>> import numpy as np
    >>> SquareCB(gamma=10.0).probabilities(np.array([0.8, 0.5, 0.6])).round(4).tolist()
    [0.6333, 0.1667, 0.2]

    References
    ----------
    Foster & Rakhlin, "Beyond UCB: Optimal and Efficient Contextual Bandits with Regression Oracles",
    ICML 2020 (arXiv:2002.04926); Abe & Long, "Associative reinforcement learning using linear
    probabilistic concepts", ICML 1999.
    """

    name = "squarecb"

    def __init__(self, gamma: float = 100.0, floor: float = 0.0) -> None:
        super().__init__(floor=floor)
        self.gamma = number_parameter("gamma", gamma, low=0.0)

    def _raw_probabilities(self, scores: list[float]) -> list[float]:
        k = len(scores)
        top = max(scores)
        gamma = self.gamma
        p = [0.0 if x >= top else 1.0 / (k + gamma * (top - x)) for x in scores]
        share = (1.0 - sum(p)) / sum(1 for x in scores if x >= top)
        return [share if x >= top else q for x, q in zip(scores, p, strict=True)]

    def _raw_probability_matrix(self, scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        k = eligible.sum(axis=1, keepdims=True)
        top = scores.max(axis=1, keepdims=True)
        best = eligible & (scores >= top)
        with np.errstate(invalid="ignore"):  # -inf - -inf off the eligible slots, masked below
            p = np.where(eligible & ~best, 1.0 / (k + self.gamma * (top - scores)), 0.0)
        share = (1.0 - p.sum(axis=1, keepdims=True)) / best.sum(axis=1, keepdims=True)
        return np.where(best, share, p)

    def params(self) -> dict[str, Any]:
        return {"gamma": self.gamma, **super().params()}
