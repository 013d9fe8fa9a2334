"""Greedy action selection (evaluation only)."""

from __future__ import annotations

from banditgate.policies.exploration.base import ExplorationRule, greedy_distribution


class Greedy(ExplorationRule):
    """All probability on the action with the highest score; ties share it evenly.

    Explicitly greedy: with the default ``floor=0`` non-best actions get probability zero, which makes the
    logs useless for off-policy learning. Use it to evaluate a policy's greedy value, not to serve traffic.

    Examples
    --------
    >>> import numpy as np
    >>> Greedy().probabilities(np.array([0.2, 0.9, 0.9])).tolist()
    [0.0, 0.5, 0.5]
    """

    name = "greedy"
    greedy = True

    def _raw_probabilities(self, scores: list[float]) -> list[float]:
        return greedy_distribution(scores)
