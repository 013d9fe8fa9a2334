"""The value types a decision is made of: a flat context and a set of candidate actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: A context or action-feature value: flat scalars only.
Scalar = float | int | bool | str | None
Features = Mapping[str, Scalar]


@dataclass(frozen=True, slots=True)
class Action:
    """One eligible intervention (or combination of interventions) with its own features."""

    id: str
    features: Features = field(default_factory=dict)
