"""The blind-period projection: the paper's trajectories, the decay and drift model, and the figure."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from banditgate.monitoring.blind_period import (
    IMPACTS,
    SCENARIOS,
    DayProjection,
    Drift,
    first_day_at,
    project,
    projection_figure,
    scenario,
)
from banditgate.monitoring.sufficiency import PRESETS, Dimensions, Level, composite, preset

PAPER = preset("fraud", tau_r=0.15)
PAPER_START = Dimensions(completeness=1.0, freshness=1.0, reliability=0.1333, representativeness=1.0)
ALL_ONE = Dimensions(1.0, 1.0, 1.0, 1.0)

#: S at day 0 / 30 / 60 / 90 / 180 as the paper reports it (arXiv 2604.15740; docs/methods.md).
PAPER_TRAJECTORIES = {
    "none": (0.658, 0.511, 0.418, 0.326, 0.040),
    "covariate": (0.658, 0.484, 0.346, 0.224, 0.020),
    "concept": (0.658, 0.424, 0.242, 0.110, 0.010),
    "mixed": (0.658, 0.467, 0.290, 0.160, 0.013),
}
PAPER_DAYS = (0, 30, 60, 90, 180)


@pytest.mark.parametrize("name", list(PAPER_TRAJECTORIES))
def test_the_papers_trajectories_to_three_decimals(name: str) -> None:
    projection = project(PAPER_START, PAPER, scenario(name), days=180)
    assert [round(projection[day].score, 3) for day in PAPER_DAYS] == list(PAPER_TRAJECTORIES[name])


def test_a_day_by_hand() -> None:
    day = project(PAPER_START, PAPER, scenario("concept"), days=60)[60]
    # C = 1 - 0.3 = 0.7 (A's completeness factor is 1), F = exp(-1.2), R = 0.1333 (1 - 0.9 * 0.8 * 50 / 90).
    reliability = 0.1333 * (1 - 0.9 * 0.8 * 50 / 90)
    assert (day.completeness, day.representativeness) == (pytest.approx(0.7), 1.0)
    assert day.freshness == pytest.approx(math.exp(-1.2))
    assert day.reliability == pytest.approx(reliability)
    assert day.gate_factor == pytest.approx(reliability / 0.15)
    assert day.score == pytest.approx(reliability / 0.15 * (0.2 * 0.7 + 0.3 * math.exp(-1.2) + 0.3 * reliability + 0.2))
    assert day.level is Level.INSUFFICIENT


def test_without_drift_only_completeness_and_freshness_decay() -> None:
    projection = project(ALL_ONE, PRESETS["credit"], days=300)
    for day in (0, 10, 100, 250):
        assert projection[day].completeness == pytest.approx(max(0.0, 1 - 0.005 * day))
        assert projection[day].freshness == pytest.approx(math.exp(-0.005 * day))  # credit's lambda
        assert (projection[day].reliability, projection[day].representativeness) == (1.0, 1.0)
    # Completeness runs out on day 200, and with it the gate factor and S.
    assert projection[200].completeness == 0.0 and projection[300].completeness == 0.0
    assert (projection[250].score, projection[250].gate_factor) == (0.0, 0.0)
    assert projection[250].level is Level.INSUFFICIENT


def test_every_day_agrees_with_the_composite_of_its_dimensions() -> None:
    for name in SCENARIOS:
        for day in project(Dimensions(0.9, 0.7, 0.6, 0.8), PRESETS["default"], scenario(name), days=200):
            expected = composite(day.dimensions, PRESETS["default"])
            assert day.score == pytest.approx(expected.score, abs=1e-15)
            assert day.gate_factor == pytest.approx(expected.gate_factor, abs=1e-15)
            assert day.level is expected.level


def test_scores_never_rise_and_drift_only_lowers_them() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        start, params = Dimensions(*rng.uniform(size=4)), PRESETS[rng.choice(list(PRESETS))]
        baseline = np.array([day.score for day in project(start, params, days=365)])
        assert np.all(np.diff(baseline) <= 1e-15)
        for name in ("covariate", "concept", "prior", "mixed"):
            drifted = np.array([day.score for day in project(start, params, scenario(name), days=365)])
            assert np.all(np.diff(drifted) <= 1e-15) and np.all(drifted <= baseline + 1e-15)


def test_drift_ramps_in_over_90_days_from_its_onset() -> None:
    days = np.array([0.0, 10.0, 20.0, 55.0, 100.0, 400.0])
    factors = Drift("prior", 0.5, 10).multipliers(days)
    assert set(factors) == {"completeness", "reliability", "representativeness"}
    ramp = np.array([0.0, 0.0, 10 / 90, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(factors["completeness"], 1 - 0.6 * 0.5 * ramp)
    np.testing.assert_allclose(factors["reliability"], 1 - 0.5 * 0.5 * ramp)
    assert dict(IMPACTS["covariate"]) == {"reliability": 0.2, "representativeness": 0.9}
    assert dict(IMPACTS["concept"]) == {"reliability": 0.9}


def test_the_prior_scenario_erodes_completeness_too() -> None:
    day = project(ALL_ONE, PRESETS["default"], scenario("prior"), days=100)[100]
    assert day.completeness == pytest.approx(0.5 * (1 - 0.6 * 0.5))
    assert day.reliability == pytest.approx(1 - 0.5 * 0.5) and day.representativeness == pytest.approx(0.75)


def test_a_drift_of_magnitude_zero_changes_nothing() -> None:
    assert project(PAPER_START, PAPER, scenario("mixed", magnitude=0.0), days=120) == project(
        PAPER_START, PAPER, days=120
    )


def test_scenarios_and_their_overrides() -> None:
    assert scenario("none") == ()
    assert scenario("covariate") == (Drift("covariate", 0.6, 15),)
    assert scenario("concept") == (Drift("concept", 0.8, 10),)
    assert scenario("prior") == (Drift("prior", 0.5, 10),)
    assert scenario("mixed") == (Drift("covariate", 0.4, 15), Drift("concept", 0.5, 20))
    assert scenario("mixed", onset=3) == (Drift("covariate", 0.4, 3), Drift("concept", 0.5, 3))
    assert scenario("concept", magnitude=0.2, onset=0) == (Drift("concept", 0.2, 0),)
    with pytest.raises(ValueError, match="unknown scenario 'seasonal'; valid scenarios: none, covariate, concept"):
        scenario("seasonal")
    with pytest.raises(ValueError, match="scenario 'none' has no drift"):
        scenario("none", magnitude=0.5)


@pytest.mark.parametrize(
    ("kind", "magnitude", "onset", "message"),
    [
        ("label", 0.5, 0, "unknown drift kind 'label'; expected one of covariate, concept, prior"),
        ("concept", 1.5, 0, r"drift magnitude must be a finite number in \[0.0, 1.0\], got 1.5"),
        ("concept", math.nan, 0, "drift magnitude must be a finite number in"),
        ("concept", 0.5, -1, "drift onset day must be a finite number in"),
        ("concept", 0.5, "soon", "drift onset day must be a number, got 'soon'"),
    ],
)
def test_drifts_are_validated(kind: str, magnitude: float, onset: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Drift(kind, magnitude, onset)  # type: ignore[arg-type]


def test_project_validates_days_and_covers_day_zero_to_days() -> None:
    only_today = project(PAPER_START, PAPER, days=0)
    assert len(only_today) == 1 and only_today[0].score == composite(PAPER_START, PAPER).score
    assert [day.day for day in project(PAPER_START, PAPER, days=5)] == [0, 1, 2, 3, 4, 5]
    for bad in (-1, 2.5, True, "30"):
        with pytest.raises(ValueError, match="days must be a non-negative integer"):
            project(PAPER_START, PAPER, days=bad)  # type: ignore[arg-type]


def test_day_projection_as_json() -> None:
    document = project(PAPER_START, PAPER, scenario("concept"), days=60)[60].to_dict()
    assert list(document) == [
        "day",
        "S",
        "A",
        "completeness",
        "freshness",
        "reliability",
        "representativeness",
        "level",
    ]
    assert document["day"] == 60 and round(document["S"], 3) == 0.242 and document["level"] == "INSUFFICIENT"


def test_first_day_at_a_level_or_worse() -> None:
    projection = project(PAPER_START, PAPER, scenario("concept"), days=180)
    assert first_day_at(projection, Level.SUFFICIENT) == 0
    assert first_day_at(projection, "DEGRADED") == 0  # it starts there
    day = first_day_at(projection, Level.INSUFFICIENT)
    assert day == 21 and projection[day].score < 0.5 <= projection[day - 1].score
    assert first_day_at(project(ALL_ONE, PAPER, days=10), Level.DEGRADED) is None
    assert first_day_at([], Level.DEGRADED) is None


def test_projection_figure() -> None:
    projections = {name: project(PAPER_START, PAPER, scenario(name), days=90) for name in ("none", "concept")}
    figure = projection_figure(projections, PAPER)
    assert isinstance(figure, Figure) and len(figure.axes) == 5
    score_axis = figure.axes[0]
    lines = {line.get_label(): line for line in score_axis.get_lines()}
    assert set(lines) == {"none", "concept"}
    np.testing.assert_allclose(lines["concept"].get_ydata(), [day.score for day in projections["concept"]])
    assert [axis.get_title() for axis in figure.axes[1:]] == [
        "completeness",
        "freshness",
        "reliability",
        "representativeness",
    ]
    # The three level bands, at the parameters' thresholds.
    bands = sorted(patch.get_label() for patch in score_axis.patches)
    assert bands == ["DEGRADED", "INSUFFICIENT", "SUFFICIENT"]
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_projection_figure_needs_a_projection() -> None:
    with pytest.raises(ValueError, match="at least one non-empty projection"):
        projection_figure({})
    with pytest.raises(ValueError, match="at least one non-empty projection"):
        projection_figure({"none": []})


def test_day_projection_is_frozen() -> None:
    day = project(ALL_ONE, PAPER, days=0)[0]
    assert isinstance(day, DayProjection) and day.dimensions == ALL_ONE
    with pytest.raises(AttributeError):
        day.score = 0.0  # type: ignore[misc]
