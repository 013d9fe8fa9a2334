"""Exploration rules: from oracle scores of the eligible actions to a probability vector."""

from __future__ import annotations

from typing import Any

from banditgate.policies.exploration.base import ExplorationRule
from banditgate.policies.exploration.epsilon_greedy import EpsilonGreedy
from banditgate.policies.exploration.greedy import Greedy
from banditgate.policies.exploration.softmax import Softmax
from banditgate.policies.exploration.squarecb import SquareCB
from banditgate.policies.exploration.uniform import Uniform

RULES: dict[str, type[ExplorationRule]] = {
    rule.name: rule for rule in (Uniform, EpsilonGreedy, Softmax, SquareCB, Greedy)
}


def make_rule(name: str, params: dict[str, Any] | None = None) -> ExplorationRule:
    """Build a rule from its name and parameters, with a clear error for either being wrong."""
    try:
        rule = RULES[name]
    except KeyError:
        raise ValueError(f"unknown exploration rule {name!r}; known: {', '.join(sorted(RULES))}") from None
    try:
        return rule(**(params or {}))
    except TypeError as exc:
        raise ValueError(f"bad parameters for exploration rule {name!r}: {exc}") from None


__all__ = [
    "RULES",
    "EpsilonGreedy",
    "ExplorationRule",
    "Greedy",
    "Softmax",
    "SquareCB",
    "Uniform",
    "make_rule",
]
