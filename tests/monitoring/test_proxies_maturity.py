"""Outcome-maturity proxies: hand-computed cohorts, young and empty cohorts, validation and properties."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditgate.monitoring.proxies.maturity import MaturityLimits, extrapolate_final_completeness, maturity_proxies


def cohorts(decisions: list[int], labelled: list[int], expected: list[float], ages: list[float] | None = None):
    return pd.DataFrame(
        {
            "age_days": ages if ages is not None else [10.0 * (i + 1) for i in range(len(decisions))],
            "decisions": decisions,
            "labelled": labelled,
            "expected_completeness": expected,
        }
    )


def by_name(frame: pd.DataFrame, **limits: float) -> dict:
    return {r.name: r for r in maturity_proxies(frame, MaturityLimits(**limits))}


def test_cohorts_on_the_curve_read_no_trouble() -> None:
    frame = cohorts([1000, 2000, 500], [100, 1000, 450], [0.1, 0.5, 0.9])
    readings = by_name(frame)
    assert extrapolate_final_completeness(frame) == 1.0
    lag, final = readings["label_arrival_lag"], readings["projected_final_completeness"]
    assert (lag.statistic, lag.status, lag.normalised) == (0.0, "ok", 1.0)
    assert (final.statistic, final.status, final.normalised) == (0.0, "ok", 1.0)
    assert lag.covers == ("completeness", "freshness")
    assert final.covers == ("completeness",)
    assert lag.category == final.category == "outcome_maturity"
    assert lag.detail["completeness_ratio"] == [1.0, 1.0, 1.0]


def test_hand_computed_lag_and_projection() -> None:
    # Expected labels 500 and 1000; missing 200 and 200. Ratios 0.6 and 0.8; the day-1 cohort is too young.
    frame = cohorts([1000, 1000, 1000], [10, 300, 800], [0.02, 0.5, 1.0], ages=[1, 30, 90])
    readings = by_name(frame)
    lag, final = readings["label_arrival_lag"], readings["projected_final_completeness"]
    assert lag.statistic == pytest.approx(400 / 1500)
    assert lag.status == "alert"
    assert lag.normalised == pytest.approx(1 - (400 / 1500) / 0.5)
    assert lag.detail["labelled"] == 1100
    assert lag.detail["expected_labelled"] == pytest.approx(1500.0)
    assert lag.detail["cohorts_used"] == 2
    assert lag.detail["cohorts_ignored"] == 1
    assert lag.detail["age_days"] == [30.0, 90.0]
    assert extrapolate_final_completeness(frame) == pytest.approx(0.7)
    assert final.statistic == pytest.approx(0.3)
    assert final.detail["projected_final_completeness"] == pytest.approx(0.7)
    assert final.normalised == pytest.approx(1 - 0.3 / 0.4)


def test_a_surplus_does_not_hide_a_shortfall() -> None:
    # One cohort 200 labels ahead of the curve, one 200 behind: the lag counts the shortfall.
    frame = cohorts([1000, 1000], [700, 300], [0.5, 0.5])
    readings = by_name(frame)
    assert readings["label_arrival_lag"].statistic == pytest.approx(0.2)
    assert readings["label_arrival_lag"].status == "alert"
    # The ratio 1.4 counts as 1: (1 + 0.6) / 2.
    assert extrapolate_final_completeness(frame) == pytest.approx(0.8)
    assert readings["projected_final_completeness"].statistic == pytest.approx(0.2)


def test_projection_weights_decisions_and_lag_weights_expected_labels() -> None:
    frame = cohorts([3000, 1000], [300, 800], [0.2, 0.8])  # ratios 0.5 and 1.0
    assert extrapolate_final_completeness(frame) == pytest.approx((3000 * 0.5 + 1000 * 1.0) / 4000)
    assert by_name(frame)["label_arrival_lag"].statistic == pytest.approx(300 / (600 + 800))


def test_target_below_one() -> None:
    frame = cohorts([1000], [475], [0.5])  # projected 0.95
    assert by_name(frame, target=0.9)["projected_final_completeness"].statistic == 0.0
    assert by_name(frame)["projected_final_completeness"].statistic == pytest.approx(0.05)


def test_young_empty_and_missing_cohorts() -> None:
    young = by_name(cohorts([1000, 1000], [0, 5], [0.0, 0.01]))
    assert all(r.status == "unavailable" for r in young.values())
    assert young["label_arrival_lag"].detail["reason"] == (
        "none of the 2 cohorts has decisions and expected completeness >= 0.05"
    )
    assert extrapolate_final_completeness(cohorts([1000], [5], [0.01])) is None
    empty = by_name(cohorts([], [], []))
    assert empty["projected_final_completeness"].detail["reason"] == "no cohorts"
    assert extrapolate_final_completeness(cohorts([], [], [])) is None
    # A cohort without decisions says nothing, whatever its age.
    assert extrapolate_final_completeness(cohorts([0, 100], [0, 40], [0.9, 0.5])) == pytest.approx(0.8)
    # The minimum is configurable.
    assert by_name(cohorts([1000], [5], [0.01]), min_expected=0.01)["label_arrival_lag"].statistic == 0.5


def test_extra_columns_are_ignored_and_detail_is_json() -> None:
    frame = cohorts([1000, 2000], [400, 900], [0.5, 0.5]).assign(cohort=pd.to_datetime(["2025-01-01", "2025-01-02"]))
    readings = maturity_proxies(frame)
    text = json.dumps([r.to_dict() for r in readings], allow_nan=False)
    assert json.loads(text)[0]["detail"]["decisions_used"] == 3000
    json.dumps([r.to_dict() for r in maturity_proxies(cohorts([], [], []))], allow_nan=False)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (cohorts([10], [11], [0.5]), "labelled cannot exceed decisions"),
        (cohorts([10], [5], [1.5]), r"expected_completeness must lie in \[0, 1\]"),
        (cohorts([10], [5], [np.nan]), "finite"),
        (cohorts([10.5], [5], [0.5]), "whole counts"),
        (cohorts([-10], [0], [0.5]), "decisions must be non-negative"),
        (cohorts([10], [5], [0.5]).drop(columns="labelled"), r"lack the columns \['labelled'\]"),
        (cohorts([10], [5], [0.5]).assign(decisions=["ten"]), "must be numeric"),
    ],
)
def test_cohorts_are_validated(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        maturity_proxies(frame)


def test_not_a_frame() -> None:
    with pytest.raises(ValueError, match="pandas DataFrame"):
        extrapolate_final_completeness({"decisions": [1]})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("limits", "message"),
    [({"min_expected": 0.0}, "min_expected"), ({"lag_cap": 0}, "lag_cap"), ({"target": 2}, "target")],
)
def test_limits_are_validated(limits: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MaturityLimits(**limits)


@st.composite
def cohort_frames(draw: st.DrawFn) -> pd.DataFrame:
    size = draw(st.integers(1, 30))
    decisions = draw(st.lists(st.integers(0, 10_000), min_size=size, max_size=size))
    shares = draw(st.lists(st.floats(0, 1), min_size=size, max_size=size))
    expected = draw(st.lists(st.floats(0, 1), min_size=size, max_size=size))
    return cohorts(decisions, [round(d * s) for d, s in zip(decisions, shares, strict=True)], expected)


@settings(max_examples=200, deadline=None)
@given(frame=cohort_frames(), factor=st.integers(2, 5))
def test_properties(frame: pd.DataFrame, factor: int) -> None:
    readings = maturity_proxies(frame)
    final = extrapolate_final_completeness(frame)
    if final is None:
        assert all(r.status == "unavailable" for r in readings)
        return
    assert 0.0 <= final <= 1.0
    assert 0.0 <= readings[0].statistic <= 1.0
    assert readings[1].statistic == pytest.approx(1.0 - final)
    # Only shares matter: scaling every count leaves both readings as they were.
    scaled = frame.assign(decisions=frame["decisions"] * factor, labelled=frame["labelled"] * factor)
    assert [r.statistic for r in maturity_proxies(scaled)] == pytest.approx([r.statistic for r in readings])
    # More labels never make maturity look worse.
    more = frame.assign(labelled=np.minimum(frame["decisions"], frame["labelled"] + 1))
    assert extrapolate_final_completeness(more) >= final - 1e-12
    assert maturity_proxies(more)[0].statistic <= readings[0].statistic + 1e-12
