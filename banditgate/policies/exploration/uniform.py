"""Uniform random exploration."""

from __future__ import annotations

from banditgate.policies.exploration.base import ExplorationRule


class Uniform(ExplorationRule):
    """Every eligible action with probability ``1 / K``, whatever the scores.

    The cold-start rule (generation 0 of every policy) and the cleanest logging policy for off-policy
    learning, at the cost of reward.

    Examples
    --------
    >>> import numpy as np
    >>> Uniform().probabilities(np.array([0.9, 0.1, 0.5, 0.2])).tolist()
    [0.25, 0.25, 0.25, 0.25]
    """

    name = "uniform"

    def _raw_probabilities(self, scores: list[float]) -> list[float]:
        k = len(scores)
        return [1.0 / k] * k
