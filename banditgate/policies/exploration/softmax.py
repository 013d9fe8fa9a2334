"""Softmax (Boltzmann) exploration."""

from __future__ import annotations

import math
from typing import Any

from banditgate.policies.exploration.base import ExplorationRule, number_parameter


class Softmax(ExplorationRule):
    """Probabilities proportional to ``exp(f(x, a) / temperature)``.

    Low temperatures approach greedy, high ones approach uniform. Oracle scores here are authorisation
    probabilities in [0, 1], so useful temperatures are of the order of 0.01 to 0.1. Without a floor, an
    action far below the best can underflow to probability zero: serve softmax with a floor.

    Parameters
    ----------
    temperature
        Strictly positive temperature.
    floor
        See :class:`~banditgate.policies.exploration.base.ExplorationRule`.

    Examples
    --------
    >>> import numpy as np
    >>> Softmax(temperature=0.1).probabilities(np.array([0.5, 0.6])).round(4).tolist()
    [0.2689, 0.7311]

    References
    ----------
    Sutton & Barto, *Reinforcement Learning: An Introduction*, 2nd ed., section 2.8 (2018).
    """

    name = "softmax"

    def __init__(self, temperature: float = 0.05, floor: float = 0.0) -> None:
        super().__init__(floor=floor)
        self.temperature = number_parameter("temperature", temperature, low=0.0)
        if self.temperature == 0.0:
            raise ValueError("temperature must be strictly positive, got 0")

    def _raw_probabilities(self, scores: list[float]) -> list[float]:
        # Subtracting the max keeps exp() from overflowing; it does not change the distribution.
        top = max(scores)
        z = [math.exp((x - top) / self.temperature) for x in scores]
        total = sum(z)
        return [x / total for x in z]

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, **super().params()}
