"""Blind-period projection: how evidence sufficiency decays while no new labels arrive, with or without drift.

From a starting point ``(C0, F0, R0, P0)``, day ``t`` of a blind period has

    ``F(t) = F0 exp(-lambda t)``,  ``C(t) = C0 max(0, 1 - 0.005 t)``,  ``R(t) = R0``,  ``P(t) = P0``

and each drift then multiplies the dimensions it affects by ``1 - impact * magnitude * min(1, max(0, t -
onset) / 90)``: its effect ramps up linearly over 90 days from its onset. Impacts (:data:`IMPACTS`):
covariate drift (P(X) changes) R 0.2, P 0.9; concept drift (P(Y|X) changes) R 0.9; prior drift (P(Y)
changes) C 0.6, R 0.5, P 0.5. ``S`` and ``A`` follow from :func:`~banditgate.monitoring.sufficiency.score_arrays`.

Scenarios (:data:`SCENARIOS`) are the paper's: covariate 0.6 from day 15, concept 0.8 from day 10, mixed =
covariate 0.4 from day 15 plus concept 0.5 from day 20. The paper gives no magnitude for prior drift alone;
``prior`` is 0.5 from day 10, a shift of the fraud rate as large as the mixed scenario's concept part, starting
with the concept scenario so the two compare day by day.

Reference: "Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (blind-period simulation).

Examples
--------
The paper's fraud configuration: S at day 60 is 0.418 without drift and 0.242 under concept drift.

>>> from banditgate.monitoring.sufficiency import Dimensions, preset
>>> params, start = preset("fraud", tau_r=0.15), Dimensions(1.0, 1.0, 0.1333, 1.0)
>>> round(project(start, params, scenario("none"), days=60)[60].score, 3)
0.418
>>> concept = project(start, params, scenario("concept"), days=60)
>>> round(concept[60].score, 3), first_day_at(concept, Level.INSUFFICIENT)
(0.242, 21)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from banditgate.monitoring.sufficiency import (
    DIMENSIONS,
    PRESETS,
    Dimensions,
    Level,
    SufficiencyParameters,
    level_of,
    score_arrays,
)
from banditgate.policies.exploration.base import number_parameter

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Multiplier of a drift's magnitude on each dimension it erodes.
IMPACTS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "covariate": MappingProxyType({"reliability": 0.2, "representativeness": 0.9}),
        "concept": MappingProxyType({"reliability": 0.9}),
        "prior": MappingProxyType({"completeness": 0.6, "reliability": 0.5, "representativeness": 0.5}),
    }
)
#: Share of completeness lost per day without new labels (the window keeps filling with unlabelled decisions).
COMPLETENESS_DECAY_PER_DAY = 0.005
#: Days over which a drift's effect grows from nothing to its full size.
RAMP_DAYS = 90.0


@dataclass(frozen=True)
class Drift:
    """A drift of ``kind`` (a key of :data:`IMPACTS`), ``magnitude`` in [0, 1], starting on ``onset_day``.

    >>> Drift("concept", 0.8, 10).multipliers(np.array([0, 10, 55, 100, 200]))["reliability"].round(2).tolist()
    [1.0, 1.0, 0.64, 0.28, 0.28]
    """

    kind: str
    magnitude: float
    onset_day: float

    def __post_init__(self) -> None:
        if self.kind not in IMPACTS:
            raise ValueError(f"unknown drift kind {self.kind!r}; expected one of {', '.join(IMPACTS)}")
        object.__setattr__(self, "magnitude", number_parameter("drift magnitude", self.magnitude, 0.0, 1.0))
        object.__setattr__(self, "onset_day", number_parameter("drift onset day", self.onset_day, low=0.0))

    def multipliers(self, days: np.ndarray) -> dict[str, np.ndarray]:
        """The factor this drift applies on each day to each dimension it affects."""
        ramp = np.minimum(1.0, np.maximum(0.0, days - self.onset_day) / RAMP_DAYS)
        return {name: 1.0 - impact * self.magnitude * ramp for name, impact in IMPACTS[self.kind].items()}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "magnitude": self.magnitude, "onset_day": self.onset_day}


#: The paper's blind-period scenarios (and ``prior``, see the module docstring).
SCENARIOS: Mapping[str, tuple[Drift, ...]] = MappingProxyType(
    {
        "none": (),
        "covariate": (Drift("covariate", 0.6, 15),),
        "concept": (Drift("concept", 0.8, 10),),
        "prior": (Drift("prior", 0.5, 10),),
        "mixed": (Drift("covariate", 0.4, 15), Drift("concept", 0.5, 20)),
    }
)


def scenario(name: str, magnitude: float | None = None, onset: float | None = None) -> tuple[Drift, ...]:
    """The drifts of a named scenario; ``magnitude`` and ``onset`` replace those of every drift in it.

    >>> scenario("mixed", magnitude=0.3)
    (Drift(kind='covariate', magnitude=0.3, onset_day=15.0), Drift(kind='concept', magnitude=0.3, onset_day=20.0))
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}")
    drifts = SCENARIOS[name]
    if not drifts and (magnitude is not None or onset is not None):
        raise ValueError(f"scenario {name!r} has no drift whose magnitude or onset could be set")
    return tuple(
        Drift(
            drift.kind,
            drift.magnitude if magnitude is None else magnitude,
            drift.onset_day if onset is None else onset,
        )
        for drift in drifts
    )


@dataclass(frozen=True)
class DayProjection:
    """The projected score, gate factor, dimensions and level on one day of the blind period."""

    day: int
    score: float
    gate_factor: float
    completeness: float
    freshness: float
    reliability: float
    representativeness: float
    level: Level

    @property
    def dimensions(self) -> Dimensions:
        return Dimensions(self.completeness, self.freshness, self.reliability, self.representativeness)

    def to_dict(self) -> dict[str, Any]:
        """``{"day", "S", "A", "completeness", "freshness", "reliability", "representativeness", "level"}``."""
        return {
            "day": self.day,
            "S": self.score,
            "A": self.gate_factor,
            **self.dimensions.to_dict(),
            "level": self.level.value,
        }


def project(
    start: Dimensions, params: SufficiencyParameters, drifts: Sequence[Drift] = (), days: int = 90
) -> list[DayProjection]:
    """The projection for days ``0 .. days`` (inclusive) of a blind period starting from ``start``."""
    if isinstance(days, bool) or not isinstance(days, int | np.integer) or days < 0:
        raise ValueError(f"days must be a non-negative integer, got {days!r}")
    t = np.arange(int(days) + 1, dtype=np.float64)
    values = {
        "completeness": start.completeness * np.maximum(0.0, 1.0 - COMPLETENESS_DECAY_PER_DAY * t),
        "freshness": start.freshness * np.exp(-params.freshness_lambda * t),
        "reliability": np.full_like(t, start.reliability),
        "representativeness": np.full_like(t, start.representativeness),
    }
    for drift in drifts:
        for name, factor in drift.multipliers(t).items():
            values[name] = values[name] * factor
    score, gate = score_arrays(*(values[name] for name in DIMENSIONS), params)
    columns = zip(score.tolist(), gate.tolist(), *(values[name].tolist() for name in DIMENSIONS), strict=True)
    return [DayProjection(day, s, a, c, f, r, p, level_of(s, params)) for day, (s, a, c, f, r, p) in enumerate(columns)]


def first_day_at(projection: Sequence[DayProjection], level: Level | str) -> int | None:
    """The first day whose level is ``level`` or worse (None if none is): when the evidence falls to it.

    Without new labels no dimension grows, so ``S`` never rises and the level, once reached, stays or worsens.

    >>> from banditgate.monitoring.sufficiency import Dimensions, preset
    >>> days = project(Dimensions(1.0, 1.0, 1.0, 1.0), preset("default"), days=120)
    >>> [first_day_at(days, level) for level in Level]
    [0, 44, 108]
    """
    worst = Level(level).exit_code
    return next((day.day for day in projection if day.level.exit_code >= worst), None)


#: Fill colours of the level bands.
#: The colour of each level, in every plot and report.
LEVEL_COLOURS = {Level.SUFFICIENT: "#2ca02c", Level.DEGRADED: "#ff9f1c", Level.INSUFFICIENT: "#d62728"}


def shade_levels(axis: Any, params: SufficiencyParameters) -> None:
    """Shade the SUFFICIENT, DEGRADED and INSUFFICIENT bands of a score axis (a matplotlib Axes)."""
    bands = {
        Level.SUFFICIENT: (params.sufficient, 1.0),
        Level.DEGRADED: (params.degraded, params.sufficient),
        Level.INSUFFICIENT: (0.0, params.degraded),
    }
    for level, (low, high) in bands.items():
        axis.axhspan(low, high, color=LEVEL_COLOURS[level], alpha=0.12, label=level.value)


def projection_figure(
    projections: Mapping[str, Sequence[DayProjection]], params: SufficiencyParameters | None = None
) -> Figure:
    """``S`` (with the level bands shaded) and the four dimensions against the day, one line per projection.

    ``params`` supplies the level thresholds and the gate thresholds drawn on C and R (default: the
    ``default`` preset's).

    >>> from banditgate.monitoring.sufficiency import Dimensions, preset
    >>> start = Dimensions(1.0, 1.0, 1.0, 1.0)
    >>> figure = projection_figure({name: project(start, preset("default"), scenario(name)) for name in SCENARIOS})
    >>> len(figure.axes)
    5
    """
    if not projections or any(len(days) == 0 for days in projections.values()):
        raise ValueError("projection_figure needs at least one non-empty projection")
    params = PRESETS["default"] if params is None else params
    # matplotlib is imported here, where a figure is drawn: the gate and the CLI import this module.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # Figure objects, not pyplot: no global state and no display backend, safe in a server or a job.
    figure = Figure(figsize=(11, 7.5), layout="constrained")
    grid = figure.add_gridspec(2, 4, height_ratios=(1.5, 1.0))
    score_axis = figure.add_subplot(grid[0, :])
    shade_levels(score_axis, params)
    dimension_axes = [figure.add_subplot(grid[1, i]) for i in range(4)]
    for name, days in projections.items():
        x = [day.day for day in days]
        (line,) = score_axis.plot(x, [day.score for day in days], label=name, linewidth=2)
        for axis, dimension in zip(dimension_axes, DIMENSIONS, strict=True):
            axis.plot(x, [getattr(day, dimension) for day in days], color=line.get_color(), linewidth=1.5)
    x_range = (0, max(1, max(days[-1].day for days in projections.values())))
    score_axis.set(xlim=x_range, ylim=(0.0, 1.0), ylabel="S", title="Evidence sufficiency during the blind period")
    score_axis.legend(loc="upper right", fontsize="small", ncols=2)
    thresholds = {"completeness": params.tau_c, "reliability": params.tau_r}
    for axis, dimension in zip(dimension_axes, DIMENSIONS, strict=True):
        axis.set(xlim=x_range, ylim=(0.0, 1.05), title=dimension, xlabel="days without new labels")
        # Four ticks at most: the small panels cannot fit the S panel's.
        axis.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        if dimension in thresholds:
            axis.axhline(thresholds[dimension], color="grey", linestyle="--", linewidth=1)
    return figure
