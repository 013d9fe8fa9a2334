"""The models a policy may configure, and the hyper-parameters it may set on them, declared.

A policy's oracle configuration comes from an API request or a settings file, so it is untrusted: it names a
model by a short name from an allow-list (``"ridge"``, ``"hist_gradient_boosting"``), never by module path, and
sets only the parameters declared for that model, each checked for type and range. The model classes are
imported from the fixed paths written here, never from a name a configuration supplies.

Examples
--------
>>> spec = ModelSpec("ridge", "sklearn.linear_model.Ridge", {"alpha": Param(float, low=0.0)})
>>> spec.validate({"alpha": 2})
{'alpha': 2.0}
>>> spec.validate({"solver": "svd"})
Traceback (most recent call last):
...
ValueError: ridge: unknown parameter 'solver'; allowed: alpha
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    """One hyper-parameter a configuration may set.

    Parameters
    ----------
    kind
        ``int``, ``float``, ``bool`` or ``str``. An integer is accepted for a float (and converted); a boolean
        is never accepted as a number.
    low, high
        Inclusive numeric bounds (None: unbounded).
    open_low
        Exclude ``low`` itself (e.g. a learning rate must be strictly positive).
    choices
        Values allowed besides the numeric range; for ``str`` the only values allowed. May include None.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[Any, ...] = ()

    def check(self, name: str, value: Any) -> Any:
        """``value`` converted to the declared type, or a ValueError naming the parameter and what it accepts."""
        if any(value is c or (type(value) is type(c) and value == c) for c in self.choices):
            return value
        if self.kind is bool:
            if isinstance(value, bool):
                return value
        elif self.kind in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
            if self.kind is int and isinstance(value, float):
                raise ValueError(f"{name} must be {self.describe()}, got {value!r}")
            number = self.kind(value)
            if math.isfinite(number) and self._in_range(number):
                return number
        raise ValueError(f"{name} must be {self.describe()}, got {_short(value)}")

    def _in_range(self, number: float) -> bool:
        if self.low is not None and (number < self.low or (self.open_low and number == self.low)):
            return False
        return self.high is None or number <= self.high

    def describe(self) -> str:
        """What the parameter accepts, in words (for error messages)."""
        options = [repr(c) if c is not None else "null" for c in self.choices]
        if self.kind is bool:
            options.insert(0, "true or false")
        elif self.kind in (int, float):
            low = "-inf" if self.low is None else self.low
            high = "inf" if self.high is None else self.high
            bracket = "(" if self.open_low else "["
            noun = "an integer" if self.kind is int else "a number"
            options.insert(0, f"{noun} in {bracket}{low}, {high}]")
        return " or ".join(options) if len(options) < 3 else "one of " + ", ".join(options)


@dataclass(frozen=True)
class ModelSpec:
    """A model a configuration may name: its short name, the class it builds and its settable parameters.

    Parameters
    ----------
    name
        The name configurations use.
    path
        The class, ``module.Class``: a constant of this package, imported only when a model is built.
    params
        The parameters a configuration may set.
    defaults
        Values used where the configuration sets none (differing from the class's own defaults).
    classifier
        Whether the model is a binary classifier (its score is the probability of reward 1).
    """

    name: str
    path: str
    params: Mapping[str, Param]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    classifier: bool = False

    def validate(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The defaults updated with ``given``, every value checked; unknown names are refused."""
        if given is None:
            given = {}
        if not isinstance(given, Mapping):
            raise ValueError(f"{self.name}: parameters must be an object, got {_short(given)}")
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            allowed = ", ".join(sorted(self.params)) or "none"
            raise ValueError(f"{self.name}: unknown parameter {unknown[0]!r}; allowed: {allowed}")
        values = {**self.defaults, **given}
        return {key: self.params[key].check(f"{self.name}.{key}", value) for key, value in values.items()}

    def model_class(self) -> type:
        """The class itself (imports its library)."""
        module, _, name = self.path.rpartition(".")
        return getattr(importlib.import_module(module), name)


def lookup(models: Mapping[str, ModelSpec], name: Any, what: str) -> ModelSpec:
    """The allow-listed model ``name`` refers to: its short name, or the dotted path of an allow-listed class
    (configurations written before short names existed). Anything else is refused with the allowed names."""
    allowed = ", ".join(sorted(models))
    if not isinstance(name, str):
        raise ValueError(f"{what} must be the name of an allowed model ({allowed}), got {_short(name)}")
    if name in models:
        return models[name]
    for spec in models.values():
        if name == spec.path:
            return spec
    if "." in name:
        raise ValueError(f"{what} {_short(name)} is a module path; name one of the allowed models: {allowed}")
    raise ValueError(f"unknown {what} {_short(name)}; allowed: {allowed}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
