"""The value types a decision is made of: a flat context and a set of candidate actions."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

#: A context or action-feature value: flat scalars only.
Scalar = float | int | bool | str | None
Features = Mapping[str, Scalar]


class Action(NamedTuple):
    """One eligible intervention (or combination of interventions) with its own features.

    A named tuple rather than a dataclass: ten of these are built per decision on the request path.
    """

    id: str
    features: Features = MappingProxyType({})
