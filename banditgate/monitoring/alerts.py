"""Alerting with hysteresis, only on a downward move: a proxy or score series, and the gate's level series.

A value that hovers around its threshold (a daily S of 0.79, 0.81, 0.79...) must not raise an alert every
other day. Both functions use a Schmitt trigger: the condition that raises an alert is stricter than its
reverse, so noise smaller than the gap between the two cannot toggle it.

- :func:`evaluate_alerts`, for a series on the normalised 0..1 scale (a proxy's ``P_j``, a dimension, S):
  an alert is raised once the value has been below ``enter`` for ``min_consecutive`` evaluations in a row,
  and cleared only when the value rises above ``exit > enter``. Values in between keep whatever state there
  is. The series starts without an alert: a proxy compares with its reference window, which reads 1 by
  construction, so a first value below ``enter`` is already a fall.
- :func:`level_alerts`, for the gate's SUFFICIENT / DEGRADED / INSUFFICIENT sequence: an alert is raised when
  the level falls below the *baseline*, the level last confirmed; the baseline drops with the level at once,
  but rises only to a level whose threshold the score clears by ``margin`` (without scores, to the level
  observed). A level that recovers never alerts, and the first evaluation sets the baseline to its level
  without an alert, as :func:`banditgate.monitoring.sufficiency.level_change` has it.

``None`` in a series is an evaluation that could not be made (proxy unavailable, gate not run): it leaves
the state as it was, neither raising, clearing nor breaking a run of consecutive values.

Examples
--------
>>> states = evaluate_alerts([0.9, 0.45, 0.55, 0.45, 0.7, 0.4], AlertPolicy(enter=0.5, exit=0.6))
>>> [("raised" if s.raised_now else "cleared" if s.cleared_now else "") for s in states]
['', 'raised', '', '', 'cleared', 'raised']
>>> scores = [0.85, 0.79, 0.81, 0.79, 0.81, 0.9, 0.79]
>>> levels = ["SUFFICIENT", "DEGRADED", "SUFFICIENT", "DEGRADED", "SUFFICIENT", "SUFFICIENT", "DEGRADED"]
>>> [step.raised_now for step in level_alerts(levels, scores, margin=0.05)]
[False, True, False, False, False, False, True]

References
----------
Schmitt, "A thermionic trigger", Journal of Scientific Instruments 15(1), 1938 (hysteresis); "Evidence
sufficiency under delayed ground truth", arXiv 2604.15740 (alert on a downward move of the level).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from banditgate.monitoring.sufficiency import Level, level_between


@dataclass(frozen=True)
class AlertPolicy:
    """When a 0..1 series raises and clears an alert: ``0 < enter < exit < 1``, ``min_consecutive >= 1``.

    >>> AlertPolicy(enter=0.6, exit=0.5)
    Traceback (most recent call last):
    ...
    ValueError: an alert policy needs 0 < enter < exit < 1, got enter=0.6, exit=0.5
    """

    enter: float
    exit: float
    min_consecutive: int = 1

    def __post_init__(self) -> None:
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (self.enter, self.exit))
        if not (numbers and 0 < self.enter < self.exit < 1):
            raise ValueError(f"an alert policy needs 0 < enter < exit < 1, got enter={self.enter}, exit={self.exit}")
        count = self.min_consecutive
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"min_consecutive must be a positive integer, got {count!r}")


@dataclass(frozen=True)
class AlertState:
    """The alert after one evaluation: whether it is on, and whether this evaluation raised or cleared it."""

    active: bool
    raised_now: bool
    cleared_now: bool


def evaluate_alerts(history: Sequence[float | None], policy: AlertPolicy) -> list[AlertState]:
    """The alert state after each value of ``history`` (oldest first), under ``policy``.

    >>> policy = AlertPolicy(enter=0.5, exit=0.6, min_consecutive=2)
    >>> [s.active for s in evaluate_alerts([0.4, None, 0.45, 0.58, 0.65], policy)]
    [False, False, True, True, False]
    """
    states: list[AlertState] = []
    active, run = False, 0
    for step, value in enumerate(history):
        if value is None:
            states.append(AlertState(active, False, False))
            continue
        _unit_value("history", step, value)
        raised = cleared = False
        if active:
            cleared = value > policy.exit
            active = not cleared
        else:
            # Only an unbroken run below ``enter`` counts; a value in the band or above starts it again.
            run = run + 1 if value < policy.enter else 0
            raised = active = run >= policy.min_consecutive
            if raised:
                run = 0
        states.append(AlertState(active, raised, cleared))
    return states


@dataclass(frozen=True)
class LevelAlert:
    """One evaluation of the level series.

    Parameters
    ----------
    level
        The level evaluated at this step (None when the gate was not evaluated).
    baseline
        The level a fall is measured from after this step (None before the first evaluation).
    raised_now
        Whether this step fell below the previous baseline.
    fell_from
        That previous baseline, when ``raised_now``.
    """

    level: Level | None
    baseline: Level | None
    raised_now: bool
    fell_from: Level | None = None

    @property
    def message(self) -> str:
        """What to tell the risk reviewer when ``raised_now``, else the empty string."""
        if self.raised_now and self.fell_from is not None and self.level is not None:
            return f"evidence sufficiency fell from {self.fell_from.value} to {self.level.value}"
        return ""


def level_alerts(
    levels: Sequence[Level | str | None],
    scores: Sequence[float | None] | None = None,
    *,
    sufficient: float = 0.8,
    degraded: float = 0.5,
    margin: float = 0.05,
) -> list[LevelAlert]:
    """Downgrade alerts over the gate's level series (oldest first), with the recovery margin on the scores.

    With ``scores`` (S at each step, None where the level is None), each level must be the one the thresholds
    ``degraded < sufficient`` give its score (a threshold belongs to the better level), and the baseline rises
    only to the best level whose threshold the score clears by ``margin``. A level whose score is None (one
    not read from S, e.g. too little evidence to judge) counts by itself, as without ``scores``.

    >>> [a.raised_now for a in level_alerts(["DEGRADED", "SUFFICIENT", None, "INSUFFICIENT", "DEGRADED"])]
    [False, False, False, True, False]
    """
    if not (0 < degraded < sufficient <= 1):
        raise ValueError(f"level thresholds need 0 < degraded < sufficient <= 1, got {degraded}, {sufficient}")
    if isinstance(margin, bool) or not (isinstance(margin, int | float) and 0 <= margin < 1):
        raise ValueError(f"margin must be a number in [0, 1), got {margin!r}")
    observed = [None if value is None else _level(step, value) for step, value in enumerate(levels)]
    if scores is not None and len(scores) != len(observed):
        raise ValueError(f"scores has {len(scores)} values for {len(observed)} levels; expected one per level")

    alerts: list[LevelAlert] = []
    baseline: Level | None = None
    for step, level in enumerate(observed):
        score = None if scores is None else scores[step]
        if level is None and score is not None:
            raise ValueError(f"step {step}: a missing level needs a missing score")
        if score is not None:
            _unit_value("scores", step, score)
            if level_between(score, sufficient, degraded) != level:
                raise ValueError(
                    f"step {step}: level {level} does not match score {score} under the thresholds "
                    f"degraded={degraded}, sufficient={sufficient}"
                )
        if level is None:
            alerts.append(LevelAlert(None, baseline, False))
            continue
        if baseline is not None and _rank(level) < _rank(baseline):
            alerts.append(LevelAlert(level, level, True, baseline))
            baseline = level
            continue
        if baseline is None or score is None:
            baseline = level  # not below the baseline, so at or above it
        else:
            confirmed = level_between(score - margin, sufficient, degraded)
            baseline = max(baseline, min(level, confirmed, key=_rank), key=_rank)
        alerts.append(LevelAlert(level, baseline, False))
    return alerts


def _rank(level: Level) -> int:
    """Larger is better (the gate's exit code is larger for worse)."""
    return -level.exit_code


def _level(step: int, value: Level | str) -> Level:
    try:
        return Level(value)
    except ValueError:
        raise ValueError(f"step {step}: unknown level {value!r}; expected one of {', '.join(Level)}") from None


def _unit_value(name: str, step: int, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0.0 <= value <= 1.0):
        nan = isinstance(value, float) and math.isnan(value)
        hint = " (None marks an evaluation that could not be made)" if nan else ""
        raise ValueError(f"{name}[{step}] must be a number in [0, 1], got {value!r}{hint}")
