"""Softmax (Boltzmann) exploration."""

from __future__ import annotations

from typing import Any

import numpy as np

from banditgate.policies.exploration.base import ExplorationRule


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
        if not temperature > 0.0 or not np.isfinite(temperature):
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
        self.temperature = float(temperature)

    def _raw_probabilities(self, scores: np.ndarray) -> np.ndarray:
        # Subtracting the max keeps exp() from overflowing; it does not change the distribution.
        z = np.exp((scores - scores.max()) / self.temperature)
        return z / z.sum()

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, **super().params()}
