"""Label-arrival survival curves: Kaplan-Meier and Greenwood by hand on textbook-sized examples, censoring at
as_of, curves that level off (labels that never come), expected completeness, the time until a window is
expected to be complete enough, and input validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditgate.monitoring.label_latency import (
    SurvivalCurve,
    arrival_curve,
    days_until_completeness,
    kaplan_meier,
)

Z95 = 1.959963984540054
NOW = pd.Timestamp("2026-03-01", tz="UTC")


def window(ages: list[float], arrived_after: list[float | None]) -> pd.DataFrame:
    """Decisions ``ages`` days old at NOW; label ``arrived_after`` days after the decision (None: no label)."""
    decided = [NOW - pd.Timedelta(days=a) for a in ages]
    observed = [
        d + pd.Timedelta(days=x) if x is not None else pd.NaT for d, x in zip(decided, arrived_after, strict=True)
    ]
    return pd.DataFrame(
        {
            "decided_at": pd.Series(decided, dtype="datetime64[ns, UTC]"),
            "label_observed_at": pd.Series(observed, dtype="datetime64[ns, UTC]"),
        }
    )


def loglog_bounds(survival: float, greenwood_sum: float) -> tuple[float, float]:
    spread = math.exp(Z95 * math.sqrt(greenwood_sum) / abs(math.log(survival)))
    return survival**spread, survival ** (1 / spread)


def test_kaplan_meier_on_the_six_subject_example() -> None:
    # Durations 6, 7+, 10, 15, 19+, 25 (+ = censored).
    curve = kaplan_meier([6, 7, 10, 15, 19, 25], [1, 0, 1, 1, 0, 1])
    assert curve.times.tolist() == [6, 10, 15, 25]
    assert curve.n_at_risk.tolist() == [6, 4, 3, 1]
    assert curve.events.tolist() == [1, 1, 1, 1]
    assert curve.survival.tolist() == pytest.approx([5 / 6, 5 / 6 * 3 / 4, 5 / 6 * 3 / 4 * 2 / 3, 0.0])
    # Greenwood sums 1/(6*5), + 1/(4*3), + 1/(3*2); at 25 every decision at risk arrived: S = 0, bounds 0.
    for i, total in enumerate([1 / 30, 1 / 30 + 1 / 12, 1 / 30 + 1 / 12 + 1 / 6]):
        assert (curve.lower[i], curve.upper[i]) == pytest.approx(loglog_bounds(curve.survival[i], total))
    assert (curve.lower[3], curve.upper[3]) == (0.0, 0.0)
    assert (curve.n, curve.censored, curve.follow_up_days) == (6, 2, 25.0)
    assert (round(curve.lower[1], 4), round(curve.upper[1], 4)) == (0.1419, 0.8931)


def test_kaplan_meier_with_tied_arrivals_and_censoring() -> None:
    curve = kaplan_meier([1.0, 2.0, 2.0, 3.0, 4.0, 5.0], [True, True, True, False, True, False])
    assert curve.times.tolist() == [1.0, 2.0, 4.0]
    assert curve.n_at_risk.tolist() == [6, 5, 2]
    assert curve.events.tolist() == [1, 2, 1]
    assert curve.survival.tolist() == pytest.approx([5 / 6, 1 / 2, 1 / 4])
    # Greenwood variance at day 2: S^2 (1/30 + 2/15) = 1/4 * 1/6.
    assert (curve.lower[1], curve.upper[1]) == pytest.approx(loglog_bounds(0.5, 1 / 6))
    # A decision censored at the same age as an arrival is still at risk at that age.
    tied = kaplan_meier([2.0, 2.0], [True, False])
    assert (tied.n_at_risk.tolist(), tied.survival.tolist()) == ([2], [0.5])


def test_without_censoring_the_curve_is_one_minus_the_empirical_cdf() -> None:
    durations = np.random.default_rng(0).exponential(5.0, 500).round(1)
    curve = kaplan_meier(durations, np.ones(500, dtype=bool))
    expected = 1 - np.searchsorted(np.sort(durations), curve.times, side="right") / 500
    assert curve.survival == pytest.approx(expected)


def test_without_arrivals_the_curve_stays_at_one() -> None:
    curve = kaplan_meier([1.0, 2.0], [False, False])
    assert curve.times.size == 0
    assert curve.expected_completeness([0.0, 100.0]).tolist() == [0.0, 0.0]
    summary = curve.to_dict()
    assert (summary["final_completeness"], summary["points"]["times"], summary["censored"]) == (0.0, [], 2)
    empty = kaplan_meier([], [])
    assert (empty.n, empty.follow_up_days, empty.expected_window_completeness([1.0])) == (0, 0.0, 0.0)


def test_expected_completeness_is_a_flat_extrapolated_step_function() -> None:
    curve = kaplan_meier([1.0, 2.0, 2.0, 3.0, 4.0, 5.0], [True, True, True, False, True, False])
    ages = [0.0, 0.999, 1.0, 1.5, 2.0, 3.9, 4.0, 5.0, 400.0]
    assert curve.expected_completeness(ages).tolist() == pytest.approx(
        [0, 0, 1 / 6, 1 / 6, 1 / 2, 1 / 2, 3 / 4, 3 / 4, 3 / 4]
    )
    assert float(curve.expected_completeness(2.5)) == pytest.approx(0.5)
    assert curve.expected_window_completeness([0.5, 1.0, 2.0, 10.0]) == pytest.approx((0 + 1 / 6 + 1 / 2 + 3 / 4) / 4)
    assert curve.expected_window_completeness([]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        curve.expected_completeness([-1.0])
    with pytest.raises(ValueError, match="finite"):
        curve.survival_at([math.nan])


def test_the_curve_levels_off_where_labels_never_come() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    ever = rng.random(n) < 0.7  # 30% never get a label (e.g. declined payments and chargebacks)
    arrival = rng.exponential(10.0, n)
    ages = rng.uniform(0.0, 200.0, n)
    arrived = ever & (arrival <= ages)
    curve = kaplan_meier(np.where(arrived, arrival, ages), arrived)
    assert curve.expected_completeness(150.0) == pytest.approx(0.7, abs=0.02)
    assert curve.survival[-1] == pytest.approx(0.3, abs=0.02)
    assert np.all(np.diff(curve.survival) <= 0)
    assert np.all((curve.lower <= curve.survival) & (curve.survival <= curve.upper))
    summary = curve.to_dict()
    points = summary["points"]
    assert len(points["times"]) == 200
    assert (points["times"][0], points["times"][-1]) == (curve.times[0], curve.times[-1])
    assert points["survival"][-1] == curve.survival[-1]
    assert summary["final_completeness"] == pytest.approx(1 - curve.survival[-1])
    json.dumps(summary)
    assert len(curve.to_dict(max_points=10)["points"]["survival"]) == 10


def test_the_arrays_are_read_only() -> None:
    curve = kaplan_meier([1.0, 2.0], [True, True])
    with pytest.raises(ValueError):
        curve.survival[0] = 1.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.booleans()), min_size=1, max_size=50))
def test_curves_are_monotone_with_bounds_around_them(rows: list[tuple[int, bool]]) -> None:
    curve = kaplan_meier([float(d) for d, _ in rows], [e for _, e in rows])
    assert np.all(np.diff(curve.survival) <= 0)
    assert np.all((curve.lower >= 0) & (curve.lower <= curve.survival + 1e-12))
    assert np.all((curve.survival <= curve.upper + 1e-12) & (curve.upper <= 1))
    assert int(curve.events.sum()) + curve.censored == curve.n == len(rows)
    # With every label arrived, the last factor is 1 - d / d: the curve ends at 0.
    if all(e for _, e in rows):
        assert curve.survival[-1] == 0.0


def test_arrival_curve_censors_at_as_of() -> None:
    frame = window([2.0, 9.0, 5.0, 2.0, 1.0], [None, 2.0, 1.0, None, 3.0])
    curve = arrival_curve(frame["decided_at"], frame["label_observed_at"], NOW)
    # Arrivals at ages 2 and 1; censored at 2, 2 (never labelled) and 1 (label due two days after NOW).
    assert curve.times.tolist() == [1.0, 2.0]
    assert curve.n_at_risk.tolist() == [5, 3]
    assert curve.survival.tolist() == pytest.approx([4 / 5, 4 / 5 * 2 / 3])
    assert curve.censored == 3


def test_arrival_curve_leaves_out_later_decisions_and_clips_clock_skew() -> None:
    frame = window([3.0, 1.0, -1.0], [-0.5, 0.5, 0.1])
    curve = arrival_curve(frame["decided_at"], frame["label_observed_at"], NOW)
    assert curve.n == 2
    assert curve.times.tolist() == [0.0, 0.5]
    assert curve.arrived_before_decision == 1
    assert curve.to_dict()["arrived_before_decision"] == 1
    with pytest.raises(ValueError, match="needs its decided_at"):
        arrival_curve(pd.Series([pd.NaT], dtype="datetime64[ns, UTC]"), frame["label_observed_at"][:1], NOW)
    with pytest.raises(ValueError, match="differ in length"):
        arrival_curve(frame["decided_at"], frame["label_observed_at"][:2], NOW)


def test_kaplan_meier_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        kaplan_meier([1.0, 2.0], [True])
    with pytest.raises(ValueError, match="non-negative"):
        kaplan_meier([-1.0], [True])
    with pytest.raises(ValueError, match="booleans"):
        kaplan_meier([1.0], [2])
    with pytest.raises(ValueError, match="confidence"):
        kaplan_meier([1.0], [True], confidence=0.0)


# --- days until completeness -----------------------------------------------------------------------------------

#: S = 0.75, 0.5, 0.25, 0 at days 1, 2, 3, 4.
STEPS = kaplan_meier([1.0, 2.0, 3.0, 4.0], [True] * 4)


def test_days_until_completeness_by_hand() -> None:
    frame = window([0.0, 0.0, 1.5, 2.5], [None] * 4)
    # At t: ages 0 -> 1 - S(t); age 1.5 -> 1 - S(1.5 + t) / 0.75; age 2.5 -> 1 - S(2.5 + t) / 0.5.
    # t = 1: (0.25 + 0.25 + 1/3 + 1/2) / 4 = 0.333; t = 1.5: (0.25 + 0.25 + 2/3 + 1) / 4 = 0.542.
    assert days_until_completeness(frame, NOW, 0.5, curve=STEPS) == pytest.approx(1.5)
    assert days_until_completeness(frame, NOW, 0.3, curve=STEPS) == pytest.approx(1.0)
    # Jump at t = 0.5 (age 2.5 reaches day 3): (1/3 + 1/2) / 4 = 0.208; off the grid of 1/24 days it rounds up.
    assert days_until_completeness(frame, NOW, 0.2, curve=STEPS, resolution_days=0.2) == pytest.approx(0.6)
    assert days_until_completeness(frame, NOW, 1.0, curve=STEPS) == pytest.approx(4.0)


def test_days_until_completeness_counts_what_has_arrived() -> None:
    frame = window([5.0, 5.0, 0.0, 0.0], [1.0, 2.0, None, None])
    assert days_until_completeness(frame, NOW, 0.5, curve=STEPS) == 0.0
    assert days_until_completeness(frame, NOW, 0.75, curve=STEPS) == pytest.approx(2.0)


def test_days_until_completeness_never() -> None:
    plateau = kaplan_meier([1.0, 2.0, 50.0, 60.0], [True, True, False, False])  # S levels off at 0.5
    frame = window([0.0, 10.0], [None, None])
    # The 10-day-old decision is past the last arrival: nothing more is expected for it. (1 - S(t)) / 2 <= 0.25.
    assert days_until_completeness(frame, NOW, 0.2, curve=plateau) == pytest.approx(2.0)
    assert days_until_completeness(frame, NOW, 0.3, curve=plateau) is None
    assert days_until_completeness(window([], []), NOW, 0.5, curve=plateau) is None
    no_arrivals = kaplan_meier([5.0], [False])
    assert days_until_completeness(frame, NOW, 0.1, curve=no_arrivals) is None


def test_a_decision_past_the_curve_end_without_a_label_counts_as_never_arriving() -> None:
    frame = window([10.0, 0.0], [None, None])  # S(10) = 0 on STEPS, yet no label
    assert days_until_completeness(frame, NOW, 0.5, curve=STEPS) == pytest.approx(4.0)
    assert days_until_completeness(frame, NOW, 0.6, curve=STEPS) is None


def test_days_until_completeness_estimates_the_curve_from_the_window_by_default() -> None:
    frame = window([10.0, 10.0, 10.0, 10.0, 1.0, 1.0], [1.0, 2.0, 3.0, None, None, None])
    curve = arrival_curve(frame["decided_at"], frame["label_observed_at"], NOW)
    assert days_until_completeness(frame, NOW, 0.6) == days_until_completeness(frame, NOW, 0.6, curve=curve)
    assert days_until_completeness(frame, NOW, 0.6) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_days_until_completeness_matches_a_brute_force_search(seed: int) -> None:
    rng = np.random.default_rng(seed)
    history = kaplan_meier(rng.exponential(6.0, 300).round(2), rng.random(300) < 0.8)
    ages = rng.uniform(0.0, 15.0, 200)
    frame = window(ages.tolist(), [None] * 200)
    resolution = 0.25
    start = history.survival_at(ages)

    def expected(t: float) -> float:
        return sum(1 - history.survival_at(a + t) / s for a, s in zip(ages, start, strict=True) if s > 0) / ages.size

    for target in (0.1, 0.3, 0.5):
        k = next((k for k in range(400) if expected(k * resolution) >= target), None)
        got = days_until_completeness(frame, NOW, target, curve=history, resolution_days=resolution)
        assert got == (None if k is None else pytest.approx(k * resolution))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"target": 0.0}, "target"), ({"target": 1.5}, "target"), ({"resolution_days": 0.0}, "resolution_days")],
)
def test_days_until_completeness_refuses_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        days_until_completeness(window([1.0], [None]), NOW, **{"target": 0.5, "curve": STEPS, **kwargs})
    with pytest.raises(ValueError, match="lacks the columns"):
        days_until_completeness(pd.DataFrame({"decided_at": []}), NOW, 0.5)


def test_a_curve_is_a_frozen_value() -> None:
    assert SurvivalCurve.__dataclass_params__.frozen  # type: ignore[attr-defined]
