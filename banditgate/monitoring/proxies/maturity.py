"""Outcome maturity: are the labels of recent cohorts arriving as the label-arrival curve expects?

Decisions are grouped in daily cohorts; for each, ``decisions`` ``d_i``, ``labelled`` ``l_i`` (rewards of the
kind under study received so far) and ``expected_completeness`` ``e_i``: the share of a cohort that the
label-arrival survival curve expects to be labelled at the cohort's age (``age_days``). Without any label's
value, the arrival pattern itself says whether the evidence will fill in on time.

- ``label_arrival_lag`` (covers completeness and freshness): the share of the labels expected by now that have
  not arrived, ``sum_i max(0, d_i e_i - l_i) / sum_i d_i e_i``. A cohort's surplus is not allowed to offset
  another's shortfall, so a stalled feed for the newest cohorts shows even when older cohorts ran ahead of
  the curve. Weighting by expected labels ``d_i e_i`` rather than by decisions keeps young cohorts (few
  labels expected, noisy ratios) from dominating.
- ``projected_final_completeness`` (covers completeness): the shortfall ``max(0, target - F)`` of the
  extrapolated final completeness ``F`` (:func:`extrapolate_final_completeness`) from a target (default 1).

Extrapolation. A cohort that has received ``o_i = l_i / d_i`` of its labels at an age where the curve
expects ``e_i`` is assumed to keep the curve's shape, scaled: it ends at ``r_i = o_i / e_i`` of the curve's
final level ("multiplicative catch-up"). ``F`` is therefore relative to that final level, ``1 - S(inf)`` of
:mod:`banditgate.monitoring.label_latency`, which stays below 1 when some decisions never get a label (no
chargeback for a declined payment): ``F = 1`` means the cohorts will end where the curve says they should,
and the projected labelled share of the decisions is ``F * (1 - S(inf))``. ``r_i`` is capped at 1 (a cohort
cannot end more than complete; an early surplus usually means faster arrival, not more labels), and
``F = sum_i d_i min(1, r_i) / sum_i d_i`` weights every decision equally.

Limits. The ratio is unstable where the curve is near 0 (a handful of early labels, and the curve itself
estimated from few early arrivals), so cohorts with ``e_i`` below ``min_expected`` are ignored (an absolute
share: lower it for a reward kind whose curve levels off low). The assumption fails when the arrival *shape*
changes (a label feed that slows down but will catch up reads as a shortfall until it does) and when the
curve is stale. The per-cohort clipping (at 0 for the lag, at 1 for ``F``) leans pessimistic by about
``0.4 sd(r_i)`` on cohorts with few expected labels (about 0.01 with 1,000 decisions at ``e = 0.5``), well
below the triggers.

Examples
--------
>>> import pandas as pd
>>> cohorts = pd.DataFrame({"age_days": [1, 30, 90], "decisions": [1000, 1000, 1000],
...                         "labelled": [10, 300, 800], "expected_completeness": [0.02, 0.5, 1.0]})
>>> round(extrapolate_final_completeness(cohorts), 4)  # day 1 ignored; (0.6 + 0.8) / 2
0.7
>>> for r in maturity_proxies(cohorts):
...     print(r.name, r.status, round(r.statistic, 4))  # lag: (200 + 200) / (500 + 1000)
label_arrival_lag alert 0.2667
projected_final_completeness alert 0.3

References
----------
"Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (outcome maturity as a proxy indicator);
the chain-ladder method of actuarial reserving (development factors: claims to date / expected share
developed by that age), e.g. Mack, "Distribution-free calculation of the standard error of chain ladder
reserve estimates", ASTIN Bulletin 23(2), 1993.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from banditgate.monitoring.proxies.base import ProxyReading, reading, unavailable

CATEGORY = "outcome_maturity"
COLUMNS = ("age_days", "decisions", "labelled", "expected_completeness")
LAG, LAG_COVERS = "label_arrival_lag", ("completeness", "freshness")
FINAL, FINAL_COVERS = "projected_final_completeness", ("completeness",)


@dataclass(frozen=True)
class MaturityLimits:
    """Cohort filter, target, triggers and caps of the outcome-maturity proxies.

    Defaults: cohorts younger than 5% of the expected arrival are ignored; a fifth of the expected labels
    missing is an alert (arrival that late delays the gate's SUFFICIENT by weeks) and half missing reads 0;
    a projected final completeness 10 points short of the target is an alert, 40 points short reads 0.
    """

    min_expected: float = 0.05
    target: float = 1.0
    lag_trigger: float = 0.20
    lag_cap: float = 0.50
    final_trigger: float = 0.10
    final_cap: float = 0.40

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if item.name in ("min_expected", "target"):
                if not (number and 0 < value <= 1):
                    raise ValueError(f"{item.name} must be a number in (0, 1], got {value!r}")
            elif not (number and 0 < value < math.inf):
                raise ValueError(f"{item.name} must be a positive finite number, got {value!r}")


def extrapolate_final_completeness(cohorts: pd.DataFrame, min_expected: float = 0.05) -> float | None:
    """``sum_i d_i min(1, o_i / e_i) / sum_i d_i`` over cohorts with decisions and ``e_i >= min_expected``.

    None when no cohort qualifies (all too young, or empty). See the module docstring for the reasoning.

    >>> import pandas as pd
    >>> extrapolate_final_completeness(pd.DataFrame({"age_days": [60], "decisions": [200], "labelled": [50],
    ...                                              "expected_completeness": [0.5]}))
    0.5
    """
    used = _qualifying(_validated(cohorts), min_expected)
    return None if used.empty else _final_completeness(used)


def maturity_proxies(cohorts: pd.DataFrame, limits: MaturityLimits | None = None) -> list[ProxyReading]:
    """``label_arrival_lag`` and ``projected_final_completeness`` of the cohorts (see the module docstring).

    ``cohorts`` has one row per cohort with the columns of :data:`COLUMNS` (others are ignored).
    """
    limits = limits or MaturityLimits()
    frame = _validated(cohorts)
    used = _qualifying(frame, limits.min_expected)
    if used.empty:
        reason = (
            f"none of the {len(frame)} cohorts has decisions and expected completeness >= {limits.min_expected}"
            if len(frame)
            else "no cohorts"
        )
        return [
            unavailable(LAG, CATEGORY, reason, cap=limits.lag_cap, trigger=limits.lag_trigger, covers=LAG_COVERS),
            unavailable(
                FINAL, CATEGORY, reason, cap=limits.final_cap, trigger=limits.final_trigger, covers=FINAL_COVERS
            ),
        ]
    expected = used["decisions"] * used["expected_completeness"]
    summary = {
        "cohorts_used": len(used),
        "cohorts_ignored": len(frame) - len(used),
        "decisions_used": int(used["decisions"].sum()),
        "min_expected": limits.min_expected,
        "age_days": used["age_days"].tolist(),
        "completeness_ratio": (used["labelled"] / expected).tolist(),
    }
    lag = float(np.maximum(0.0, expected - used["labelled"]).sum() / expected.sum())
    lag_detail = {**summary, "labelled": int(used["labelled"].sum()), "expected_labelled": float(expected.sum())}
    final = _final_completeness(used)
    final_detail = {**summary, "projected_final_completeness": final, "target": limits.target}
    shortfall = max(0.0, limits.target - final)
    return [
        reading(
            LAG, CATEGORY, lag, cap=limits.lag_cap, trigger=limits.lag_trigger, covers=LAG_COVERS, detail=lag_detail
        ),
        reading(
            FINAL,
            CATEGORY,
            shortfall,
            cap=limits.final_cap,
            trigger=limits.final_trigger,
            covers=FINAL_COVERS,
            detail=final_detail,
        ),
    ]


def _validated(cohorts: pd.DataFrame) -> pd.DataFrame:
    """The four columns as a float frame, or a ValueError that says which value is wrong."""
    if not isinstance(cohorts, pd.DataFrame):
        raise ValueError(f"cohorts must be a pandas DataFrame, got {type(cohorts).__name__}")
    missing = [c for c in COLUMNS if c not in cohorts.columns]
    if missing:
        raise ValueError(f"cohorts lack the columns {missing}; expected {list(COLUMNS)}")
    try:
        frame = cohorts.loc[:, list(COLUMNS)].astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cohort columns {list(COLUMNS)} must be numeric: {exc}") from None
    if not np.isfinite(frame.to_numpy()).all():
        raise ValueError("cohort values must be finite (no NaN or infinity)")
    for column in ("age_days", "decisions", "labelled"):
        if (frame[column] < 0).any():
            raise ValueError(f"{column} must be non-negative")
    for column in ("decisions", "labelled"):
        if (frame[column] != np.round(frame[column])).any():
            raise ValueError(f"{column} must be whole counts")
    if (frame["labelled"] > frame["decisions"]).any():
        raise ValueError("labelled cannot exceed decisions in a cohort")
    if ((frame["expected_completeness"] < 0) | (frame["expected_completeness"] > 1)).any():
        raise ValueError("expected_completeness must lie in [0, 1]")
    return frame


def _final_completeness(used: pd.DataFrame) -> float:
    ratio = np.minimum(1.0, used["labelled"] / (used["decisions"] * used["expected_completeness"]))
    return float((used["decisions"] * ratio).sum() / used["decisions"].sum())


def _qualifying(frame: pd.DataFrame, min_expected: float) -> pd.DataFrame:
    """Cohorts old enough for the ratio observed / expected to mean something."""
    return frame[(frame["decisions"] > 0) & (frame["expected_completeness"] >= min_expected)]
