"""The composite evidence-sufficiency score, its parameters and presets, its levels, and what would make it sufficient.

Four dimensions in [0, 1] describe the evidence behind a policy generation: completeness C (labelled share of
the window's decisions), freshness F (decay since the recent confirmed labels), reliability R (quality of the
model on retroactively labelled decisions) and representativeness P (agreement of production and reference
score distributions). They combine as

    ``S = A * (w_c C + w_f F + w_r R + w_p P)``,  ``A = min(1, C / tau_c) * min(1, R / tau_r)``

with weights summing to one. The gate factor ``A`` stops a high F or P from masking missing labels or poor
reliability: below its threshold, C or R scales the whole score down, not just its own term. Levels:
``S >= 0.8`` SUFFICIENT, ``0.5 <= S < 0.8`` DEGRADED, below INSUFFICIENT; only a downward move alerts.

Reference: "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (the composite, the gate
factor, the thresholds and the fraud / credit presets).

Examples
--------
The paper's fraud configuration with a reliability threshold of 0.15 and an F1 of 0.1333:

>>> params = preset("fraud", tau_r=0.15, reliability_metric="f1")
>>> result = composite(Dimensions(completeness=1.0, freshness=1.0, reliability=0.1333, representativeness=1.0), params)
>>> round(result.gate_factor, 4), round(result.weighted_sum, 4), round(result.score, 3), result.level.value
(0.8887, 0.74, 0.658, 'DEGRADED')
>>> [item.message for item in requirements(result.dimensions, params)][2]
'raise reliability from 0.133 to 0.333 (others unchanged) to reach S = 0.80'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

ReliabilityMetric = Literal["f1", "brier_skill", "calibration"]
RELIABILITY_METRICS: tuple[str, ...] = ("f1", "brier_skill", "calibration")

#: How far the weights may sum from one.
WEIGHT_TOLERANCE = 1e-9
#: How far below a threshold a score may fall by floating-point rounding and still reach it: the weighted sum
#: of decimal dimensions is not exact in binary (0.25 * (0.6 + 1.0 + 0.7 + 0.9) evaluates to
#: 0.7999999999999999), and a threshold belongs to the better level. Far above the rounding error of four
#: products and a sum (~1e-16), far below any difference the dimensions' intervals could resolve.
SCORE_TOLERANCE = 1e-9


def _number(name: str, value: object, low: float, high: float, *, open_low: bool = False) -> float:
    """``value`` as a finite float in [low, high] (or (low, high] with ``open_low``), or a ValueError naming it."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    below = number <= low if open_low else number < low
    if not math.isfinite(number) or below or number > high:
        bounds = f"{'(' if open_low else '['}{low}, {high}]"
        raise ValueError(f"{name} must be a finite number in {bounds}, got {value!r}")
    return number


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _reject_unknown(kind: str, keys: Iterable[Any], known: tuple[str, ...]) -> None:
    unknown = sorted(str(key) for key in keys if key not in known)
    if unknown:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; expected some of {', '.join(known)}")


@dataclass(frozen=True)
class Dimensions:
    """The four sufficiency dimensions of one window, each in [0, 1].

    >>> Dimensions(0.9, 0.8, 0.7, 1.0).to_dict()
    {'completeness': 0.9, 'freshness': 0.8, 'reliability': 0.7, 'representativeness': 1.0}
    """

    completeness: float
    freshness: float
    reliability: float
    representativeness: float

    def __post_init__(self) -> None:
        for name in DIMENSIONS:
            object.__setattr__(self, name, _number(name, getattr(self, name), 0.0, 1.0))

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in DIMENSIONS}

    def replace(self, **values: float) -> Dimensions:
        """A copy with some dimensions changed."""
        _reject_unknown("dimension", values, DIMENSIONS)
        return dataclasses.replace(self, **values)


#: The dimension names, in the order of the formula.
DIMENSIONS: tuple[str, ...] = tuple(f.name for f in fields(Dimensions))


@dataclass(frozen=True)
class Weights:
    """Non-negative weights of the four dimensions in the weighted sum; they sum to one (within 1e-9).

    >>> Weights(0.2, 0.3, 0.3, 0.2).to_dict()["freshness"]
    0.3
    """

    completeness: float = 0.25
    freshness: float = 0.25
    reliability: float = 0.25
    representativeness: float = 0.25

    def __post_init__(self) -> None:
        for name in DIMENSIONS:
            object.__setattr__(self, name, _number(f"weight of {name}", getattr(self, name), 0.0, 1.0))
        total = sum(self.to_dict().values())
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            raise ValueError(f"the weights must sum to 1, they sum to {total!r}: {self.to_dict()}")

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in DIMENSIONS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Weights:
        """From a mapping with all four dimension names."""
        if not isinstance(data, Mapping):
            raise ValueError(f"weights must be a mapping of the four dimensions, got {data!r}")
        _reject_unknown("weight", data, DIMENSIONS)
        missing = [name for name in DIMENSIONS if name not in data]
        if missing:
            raise ValueError(f"weights lack {', '.join(missing)}: give all four dimensions")
        return cls(**data)


#: (name, low, high, whether low itself is excluded) of the numeric parameters.
_PARAMETER_BOUNDS: tuple[tuple[str, float, float, bool], ...] = (
    ("freshness_lambda", 0.0, math.inf, False),
    ("tau_c", 0.0, 1.0, True),
    ("tau_r", 0.0, 1.0, True),
    ("ks_cap", 0.0, 1.0, True),
    ("sufficient", 0.0, 1.0, True),
    ("degraded", 0.0, 1.0, True),
)


@dataclass(frozen=True)
class SufficiencyParameters:
    """Everything the sufficiency score of a policy depends on; configurable per policy.

    Parameters
    ----------
    weights
        :class:`Weights` (or a mapping of the four dimension names) of ``S``'s weighted sum.
    freshness_lambda
        Decay rate of freshness per day: ``F = exp(-lambda * dt)``.
    tau_c, tau_r
        Completeness and reliability below which the gate factor scales ``S`` down, in (0, 1].
    ks_cap
        KS statistic at which representativeness reaches 0: ``P = max(0, 1 - KS / ks_cap)``, in (0, 1].
    sufficient, degraded
        Level thresholds on ``S``: ``0 < degraded < sufficient <= 1``.
    reliability_metric
        What R measures on retroactively labelled decisions: ``"f1"`` (the paper's binary F1),
        ``"brier_skill"`` (``max(0, 1 - Brier / Brier of the base rate)``) or ``"calibration"`` (``1 - ECE``).
        The default is Brier skill: at a 3% fraud prevalence a window holds a few dozen positives, so F1 moves
        by several points when a handful of them flip and depends on an arbitrary decision threshold, while a
        proper scoring rule uses every labelled row and the full probability. F1 stays available to compare
        with the paper. ``tau_r`` must suit the metric: a good fraud model's Brier skill is often well below
        the default 0.7 (the paper pairs its F1 of 0.13 with ``tau_r = 0.15``), so set it per policy.
    min_segment_size
        Decisions a segment (e.g. issuer country x action) needs before its dimensions count.
    recent_labels
        How many of the most recent confirmed labels the freshness median is taken over.
    min_decisions, min_labelled
        The least evidence the gate judges at all: decisions in the current window, and labelled decisions
        of it that reliability is measured on (labelled by ``as_of``, made after the generation's training
        window, in the gate's sample). Below either, the level is INSUFFICIENT whatever S reads and the
        report says why: two decisions with one label can read S = 0.9, but one label is not evidence of
        reliability. The defaults, 200 (like ``min_segment_size``) and 100, are where the dimensions'
        intervals become narrow enough to tell the levels apart (a proportion measured on 100 labels has a
        95% interval about 0.19 wide at 0.5, 0.12 wide at 0.9).

    Examples
    --------
    >>> params = SufficiencyParameters().replace(tau_r=0.5)
    >>> SufficiencyParameters.from_dict(params.to_dict()) == params
    True
    >>> SufficiencyParameters.from_dict({"tau_x": 1})
    Traceback (most recent call last):
    ...
    ValueError: unknown parameter 'tau_x'; expected some of weights, freshness_lambda, ...
    """

    weights: Weights = Weights()
    freshness_lambda: float = 0.02
    tau_c: float = 0.6
    tau_r: float = 0.7
    ks_cap: float = 0.30
    sufficient: float = 0.8
    degraded: float = 0.5
    reliability_metric: ReliabilityMetric = "brier_skill"
    min_segment_size: int = 200
    recent_labels: int = 500
    min_decisions: int = 200
    min_labelled: int = 100

    def __post_init__(self) -> None:
        weights = self.weights
        if not isinstance(weights, Weights):
            object.__setattr__(self, "weights", Weights.from_dict(weights))
        for name, low, high, open_low in _PARAMETER_BOUNDS:
            object.__setattr__(self, name, _number(name, getattr(self, name), low, high, open_low=open_low))
        if not self.degraded < self.sufficient:
            raise ValueError(
                f"the degraded threshold ({self.degraded}) must be below the sufficient one ({self.sufficient})"
            )
        if self.reliability_metric not in RELIABILITY_METRICS:
            raise ValueError(
                f"reliability_metric must be one of {', '.join(RELIABILITY_METRICS)}, got {self.reliability_metric!r}"
            )
        object.__setattr__(self, "min_segment_size", _count("min_segment_size", self.min_segment_size))
        for name in ("recent_labels", "min_decisions", "min_labelled"):
            object.__setattr__(self, name, _count(name, getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable; :meth:`from_dict` rebuilds an equal object."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["weights"] = self.weights.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SufficiencyParameters:
        """From :meth:`to_dict`'s output; missing keys take their defaults, unknown keys are refused."""
        if not isinstance(data, Mapping):
            raise ValueError(f"sufficiency parameters must be a mapping, got {data!r}")
        _reject_unknown("parameter", data, _PARAMETER_NAMES)
        return cls(**data)

    def replace(self, **overrides: Any) -> SufficiencyParameters:
        """A copy with some parameters changed (validated like the constructor)."""
        _reject_unknown("parameter", overrides, _PARAMETER_NAMES)
        return dataclasses.replace(self, **overrides)


_PARAMETER_NAMES: tuple[str, ...] = tuple(f.name for f in fields(SufficiencyParameters))

#: Named starting points. ``default`` weighs the dimensions equally with the fraud decay of 0.02/day, because
#: the late labels of payments data (fraud reports, chargebacks) age like the paper's fraud labels, and judges
#: reliability by calibration (``1 - ECE``): a routing oracle's scores drive the exploration rule through
#: their gaps, so what must hold is that they are right as probabilities, and a calibrated authorisation
#: model reads close to 1 where its Brier skill (discrimination at ~85% authorisation) would read 0.1-0.3
#: against ``tau_r = 0.7``. ``fraud`` and ``credit`` are the paper's weights (credit labels, defaults,
#: mature over months: lambda 0.005/day).
PRESETS: Mapping[str, SufficiencyParameters] = MappingProxyType(
    {
        "default": SufficiencyParameters(reliability_metric="calibration"),
        "fraud": SufficiencyParameters(weights=Weights(0.20, 0.30, 0.30, 0.20), freshness_lambda=0.02),
        "credit": SufficiencyParameters(weights=Weights(0.25, 0.20, 0.25, 0.30), freshness_lambda=0.005),
    }
)


def preset(name: str, **overrides: Any) -> SufficiencyParameters:
    """The named preset with some parameters changed.

    >>> preset("credit", tau_r=0.5).freshness_lambda
    0.005
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)


class Level(StrEnum):
    """Sufficiency level; :attr:`exit_code` is the gate command's exit status (larger is worse)."""

    SUFFICIENT = "SUFFICIENT"
    DEGRADED = "DEGRADED"
    INSUFFICIENT = "INSUFFICIENT"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


_EXIT_CODES = {Level.SUFFICIENT: 0, Level.DEGRADED: 1, Level.INSUFFICIENT: 2}


def reaches(score: float, threshold: float) -> bool:
    """Whether ``score`` is at or above ``threshold``, up to :data:`SCORE_TOLERANCE` of rounding.

    >>> 0.25 * (0.6 + 1.0 + 0.7 + 0.9) >= 0.8, reaches(0.25 * (0.6 + 1.0 + 0.7 + 0.9), 0.8)
    (False, True)
    """
    return score >= threshold - SCORE_TOLERANCE


def level_of(score: float, params: SufficiencyParameters) -> Level:
    """The level of a score under the parameters' thresholds (a threshold itself belongs to the better level,
    also when rounding leaves a score that is exactly on it a hair below: see :func:`reaches`).

    >>> level_of(0.8, SufficiencyParameters()).value, level_of(0.4999, SufficiencyParameters()).value
    ('SUFFICIENT', 'INSUFFICIENT')
    """
    value = float(score)
    if not math.isfinite(value):
        raise ValueError(f"a sufficiency score must be a finite number, got {score!r}")
    return level_between(value, params.sufficient, params.degraded)


def level_between(score: float, sufficient: float, degraded: float) -> Level:
    """The level of ``score`` under the thresholds ``sufficient`` and ``degraded`` (no validation)."""
    if reaches(score, sufficient):
        return Level.SUFFICIENT
    if reaches(score, degraded):
        return Level.DEGRADED
    return Level.INSUFFICIENT


def _gate(completeness: ArrayLike, reliability: ArrayLike, params: SufficiencyParameters) -> np.ndarray:
    by_completeness = np.minimum(1.0, np.divide(completeness, params.tau_c))
    return by_completeness * np.minimum(1.0, np.divide(reliability, params.tau_r))


def gate_factor(completeness: float, reliability: float, params: SufficiencyParameters) -> float:
    """``A = min(1, C / tau_c) * min(1, R / tau_r)``.

    >>> gate_factor(0.3, 0.7, SufficiencyParameters())
    0.5
    """
    return float(_gate(completeness, reliability, params))


def score_arrays(
    completeness: ArrayLike,
    freshness: ArrayLike,
    reliability: ArrayLike,
    representativeness: ArrayLike,
    params: SufficiencyParameters,
) -> tuple[np.ndarray, np.ndarray]:
    """``(S, A)`` element-wise over broadcastable arrays of the dimensions (no validation: the caller's arrays
    are already in [0, 1]); what :func:`composite` computes for one window, for many at once.

    >>> s, a = score_arrays([1.0, 0.3], 1.0, 1.0, 1.0, SufficiencyParameters())
    >>> s.round(4).tolist(), a.tolist()
    ([1.0, 0.4125], [1.0, 0.5])
    """
    w = params.weights
    c, f, r, p = (np.asarray(x, dtype=np.float64) for x in (completeness, freshness, reliability, representativeness))
    gate = _gate(c, r, params)
    weighted = w.completeness * c + w.freshness * f + w.reliability * r + w.representativeness * p
    return gate * weighted, gate


@dataclass(frozen=True)
class Composite:
    """The composite score of one window.

    ``contributions`` splits ``score`` by dimension (``A * w_i * x_i``; they sum to ``score``), so a reader
    sees which dimension carries the score and, with ``gate_factor``, how much the gate takes off.
    """

    score: float
    gate_factor: float
    weighted_sum: float
    level: Level
    contributions: Mapping[str, float]
    dimensions: Dimensions

    def to_dict(self) -> dict[str, Any]:
        return {
            "S": self.score,
            "A": self.gate_factor,
            "weighted_sum": self.weighted_sum,
            "level": self.level.value,
            "contributions": dict(self.contributions),
            "dimensions": self.dimensions.to_dict(),
        }


def composite(dimensions: Dimensions, params: SufficiencyParameters) -> Composite:
    """``S = A * sum_i w_i x_i`` with its level and per-dimension contributions.

    >>> composite(Dimensions(0.3, 1.0, 1.0, 1.0), SufficiencyParameters()).contributions["completeness"]
    0.0375
    """
    values = dimensions.to_dict()
    score, gate = (float(x) for x in score_arrays(*values.values(), params))
    weights = params.weights.to_dict()
    return Composite(
        score=score,
        gate_factor=gate,
        weighted_sum=sum(weights[name] * values[name] for name in DIMENSIONS),
        level=level_of(score, params),
        contributions=MappingProxyType({name: gate * weights[name] * values[name] for name in DIMENSIONS}),
        dimensions=dimensions,
    )


@dataclass(frozen=True)
class Requirement:
    """What one dimension, moved alone, would need for ``S`` to reach ``target``.

    ``needed`` is the smallest value in [0, 1] that reaches it with the other three held fixed (so below
    ``current`` when the target is already met: the headroom), or None when even 1 does not.
    """

    dimension: str
    current: float
    needed: float | None
    target: float
    message: str

    @property
    def achievable(self) -> bool:
        return self.needed is not None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def requirements(
    dimensions: Dimensions, params: SufficiencyParameters, target: float | None = None
) -> list[Requirement]:
    """For each dimension alone, the value that would bring ``S`` to ``target`` (default: the SUFFICIENT
    threshold), or that it cannot by itself.

    Solved exactly: as a function of one dimension ``x`` with the others fixed, ``S(x) = a * g(x) * (k + w x)``
    where ``k`` is the others' weighted sum, ``a`` the gate factor of the other gated dimension (the whole
    ``A`` for F and P) and ``g(x) = min(1, x / tau)`` for C and R (1 for F and P). ``S`` is non-decreasing
    in ``x``; below ``tau`` it is the quadratic ``(a w / tau) x^2 + (a k / tau) x``, above it linear. The
    root of the piece where ``S`` crosses the target is the answer, moved up by a few ulps when rounding
    leaves ``S`` short of the target by more than :data:`SCORE_TOLERANCE`, so that plugging it back in does
    reach the target (as :func:`reaches` and the levels read it).

    >>> params = SufficiencyParameters()
    >>> needed = requirements(Dimensions(0.3, 1.0, 1.0, 1.0), params)[0].needed
    >>> round(needed, 6), composite(Dimensions(needed, 1.0, 1.0, 1.0), params).level.value
    (0.542058, 'SUFFICIENT')
    """
    goal = params.sufficient if target is None else _number("target", target, 0.0, 1.0, open_low=True)
    now = composite(dimensions, params).score
    return [_requirement(name, dimensions, params, goal, now) for name in DIMENSIONS]


def _requirement(
    name: str, dimensions: Dimensions, params: SufficiencyParameters, target: float, now: float
) -> Requirement:
    def score_at(x: float) -> float:
        return composite(dimensions.replace(**{name: x}), params).score

    current = getattr(dimensions, name)
    needed = _smallest_reaching(name, dimensions, params, target, score_at)
    goal = f"S = {target:.2f}"
    if needed is None:
        message = f"{name} cannot reach {goal} by itself: even at 1.000, S = {score_at(1.0):.3f}"
        cap, short = _fixed_gate(name, dimensions, params)
        if cap < target:
            message += f" (the gate caps S at {cap:.3f}: {' and '.join(short)})"
    elif reaches(now, target):
        message = f"{name} {current:.3f} is enough: S stays at or above {target:.2f} down to {name} {needed:.3f}"
    else:
        message = f"raise {name} from {current:.3f} to {needed:.3f} (others unchanged) to reach {goal}"
    return Requirement(dimension=name, current=current, needed=needed, target=target, message=message)


def _fixed_gate(name: str, dimensions: Dimensions, params: SufficiencyParameters) -> tuple[float, list[str]]:
    """The part of ``A`` that does not depend on ``name``, and the other gated dimensions below threshold."""
    factor, short = 1.0, []
    for gated, tau, symbol in (("completeness", params.tau_c, "tau_c"), ("reliability", params.tau_r, "tau_r")):
        value = getattr(dimensions, gated)
        if gated != name:
            factor *= min(1.0, value / tau)
            if value < tau:
                short.append(f"{gated} {value:.3f} is below {symbol} {tau:.2f}")
    return factor, short


def _smallest_reaching(
    name: str, dimensions: Dimensions, params: SufficiencyParameters, target: float, score_at: Callable[[float], float]
) -> float | None:
    if not reaches(score_at(1.0), target):
        return None
    if reaches(score_at(0.0), target):
        return 0.0
    weights, values = params.weights.to_dict(), dimensions.to_dict()
    w = weights[name]
    k = sum(weights[other] * values[other] for other in DIMENSIONS if other != name)
    tau = {"completeness": params.tau_c, "reliability": params.tau_r}.get(name)
    # score_at(1) >= target > 0, so the factor that does not depend on x is positive.
    t = target / _fixed_gate(name, dimensions, params)[0]
    if tau is not None and (tau >= 1.0 or score_at(tau) >= target):
        # w x^2 + k x - t tau = 0, in the form that stays exact when w is 0.
        x = 2.0 * t * tau / (k + math.sqrt(k * k + 4.0 * w * t * tau))
    else:
        # Linear piece; w > 0 here, else S would be constant on it and one of the two checks above returned.
        x = (t - k) / w
    x = min(1.0, max(0.0, x))
    while not reaches(score_at(x), target):
        x = min(1.0, float(np.nextafter(x, 2.0)))
    return x


@dataclass(frozen=True)
class LevelChange:
    """A move between two consecutive evaluations; ``downgrade`` is True only for a move to a worse level,
    which is the only kind that alerts (recoveries and the first evaluation do not)."""

    previous: Level | None
    current: Level
    downgrade: bool
    message: str


def level_change(previous: Level | str | None, current: Level | str) -> LevelChange:
    """Compare the previous evaluation's level (None for the first) with the current one.

    >>> level_change("SUFFICIENT", "DEGRADED").downgrade, level_change("INSUFFICIENT", "DEGRADED").downgrade
    (True, False)
    """
    before = None if previous is None else _level(previous)
    after = _level(current)
    if before is None:
        return LevelChange(None, after, False, f"first evaluation: {after.value}")
    if after.exit_code > before.exit_code:
        return LevelChange(before, after, True, f"evidence sufficiency fell from {before.value} to {after.value}")
    if after.exit_code < before.exit_code:
        return LevelChange(before, after, False, f"evidence sufficiency recovered from {before.value} to {after.value}")
    return LevelChange(before, after, False, f"unchanged: {after.value}")


def _level(value: Level | str) -> Level:
    try:
        return Level(value)
    except ValueError:
        raise ValueError(f"unknown level {value!r}; expected one of {', '.join(Level)}") from None
