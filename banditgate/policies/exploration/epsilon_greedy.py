"""Epsilon-greedy exploration."""

from __future__ import annotations

from typing import Any

from banditgate.policies.exploration.base import ExplorationRule, greedy_distribution, number_parameter


class EpsilonGreedy(ExplorationRule):
    """With probability ``epsilon`` a uniformly random action, otherwise the best one.

    ``p(a) = epsilon / K + (1 - epsilon) * [a is best]`` (ties among the best share the greedy mass).

    Parameters
    ----------
    epsilon
        Exploration probability in [0, 1].
    floor
        See :class:`~banditgate.policies.exploration.base.ExplorationRule`.

    Examples
    --------
    >>> import numpy as np
    >>> EpsilonGreedy(epsilon=0.2).probabilities(np.array([0.1, 0.7, 0.3, 0.2])).round(3).tolist()
    [0.05, 0.85, 0.05, 0.05]

    References
    ----------
    Sutton & Barto, *Reinforcement Learning: An Introduction*, 2nd ed., section 2.2 (2018).
    """

    name = "epsilon_greedy"

    def __init__(self, epsilon: float = 0.1, floor: float = 0.0) -> None:
        super().__init__(floor=floor)
        self.epsilon = number_parameter("epsilon", epsilon, low=0.0, high=1.0)

    def _raw_probabilities(self, scores: list[float]) -> list[float]:
        explore = self.epsilon / len(scores)
        exploit = 1.0 - self.epsilon
        return [explore + exploit * g for g in greedy_distribution(scores)]

    def params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, **super().params()}
