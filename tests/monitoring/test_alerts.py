"""Alerts with hysteresis: no flapping around a threshold, never on an upward move, unavailable keeps state."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditgate.monitoring.alerts import AlertPolicy, AlertState, LevelAlert, evaluate_alerts, level_alerts
from banditgate.monitoring.sufficiency import Level

POLICY = AlertPolicy(enter=0.5, exit=0.6)


def events(states: list[AlertState]) -> list[str]:
    return ["raised" if s.raised_now else "cleared" if s.cleared_now else "" for s in states]


def test_oscillating_around_the_threshold_raises_one_alert() -> None:
    history = [0.9, 0.49, 0.51, 0.48, 0.52, 0.49, 0.55, 0.47, 0.51]
    states = evaluate_alerts(history, POLICY)
    assert sum(s.raised_now for s in states) == 1
    assert states[1] == AlertState(active=True, raised_now=True, cleared_now=False)
    assert all(s.active for s in states[1:])
    assert not any(s.cleared_now for s in states)


def test_clears_only_above_exit_and_can_be_raised_again() -> None:
    history = [0.4, 0.6, 0.61, 0.55, 0.45, 0.7]
    assert events(evaluate_alerts(history, POLICY)) == ["raised", "", "cleared", "", "raised", "cleared"]
    assert [s.active for s in evaluate_alerts(history, POLICY)] == [True, True, False, False, True, False]


def test_boundaries_are_strict() -> None:
    # Exactly enter does not raise; exactly exit does not clear.
    assert events(evaluate_alerts([0.5, 0.49, 0.6, 0.6000001], POLICY)) == ["", "raised", "", "cleared"]


def test_upward_moves_never_alert() -> None:
    rising = [0.1, 0.2, 0.3, 0.45, 0.55, 0.7, 0.9]
    states = evaluate_alerts(rising, POLICY)
    # The first value is a fall from the reference (which reads 1); everything after it rises.
    assert events(states) == ["raised", "", "", "", "", "cleared", ""]
    assert not any(s.raised_now for s in evaluate_alerts([0.55, 0.6, 0.8, 1.0], POLICY))


def test_none_keeps_the_state_and_the_run() -> None:
    assert [s.active for s in evaluate_alerts([0.4, None, None, 0.7, None], POLICY)] == [True, True, True, False, False]
    assert events(evaluate_alerts([None, None], POLICY)) == ["", ""]
    assert evaluate_alerts([], POLICY) == []
    two = AlertPolicy(enter=0.5, exit=0.6, min_consecutive=2)
    # An unavailable evaluation between two low values neither counts nor breaks the run.
    assert events(evaluate_alerts([0.4, None, 0.45], two)) == ["", "", "raised"]


def test_min_consecutive_needs_an_unbroken_run() -> None:
    three = AlertPolicy(enter=0.5, exit=0.6, min_consecutive=3)
    assert events(evaluate_alerts([0.4, 0.4, 0.55, 0.4, 0.4, 0.4, 0.3], three)) == ["", "", "", "", "", "raised", ""]
    # After clearing, a fresh run is needed.
    assert events(evaluate_alerts([0.4, 0.4, 0.4, 0.7, 0.4, 0.4, 0.4], three)) == [
        "",
        "",
        "raised",
        "cleared",
        "",
        "",
        "raised",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"enter": 0.6, "exit": 0.5}, "0 < enter < exit < 1"),
        ({"enter": 0.5, "exit": 0.5}, "0 < enter < exit < 1"),
        ({"enter": 0.0, "exit": 0.5}, "0 < enter < exit < 1"),
        ({"enter": 0.5, "exit": 1.0}, "0 < enter < exit < 1"),
        ({"enter": True, "exit": 0.5}, "0 < enter < exit < 1"),
        ({"enter": 0.5, "exit": 0.6, "min_consecutive": 0}, "min_consecutive"),
        ({"enter": 0.5, "exit": 0.6, "min_consecutive": 1.5}, "min_consecutive"),
    ],
)
def test_policy_is_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlertPolicy(**kwargs)


@pytest.mark.parametrize("bad", [math.nan, 1.5, -0.1, "0.5", True])
def test_history_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match=r"history\[1\] must be a number in \[0, 1\]"):
        evaluate_alerts([0.9, bad], POLICY)  # type: ignore[list-item]


def test_nan_hints_at_none() -> None:
    with pytest.raises(ValueError, match="None marks an evaluation that could not be made"):
        evaluate_alerts([math.nan], POLICY)


values = st.one_of(st.none(), st.floats(0.0, 1.0))


@settings(max_examples=300, deadline=None)
@given(history=st.lists(values, max_size=40), enter=st.floats(0.05, 0.85), gap=st.floats(0.01, 0.1))
def test_alert_properties(history: list[float | None], enter: float, gap: float) -> None:
    policy = AlertPolicy(enter=enter, exit=enter + gap)
    states = evaluate_alerts(history, policy)
    assert len(states) == len(history)
    previous_value, previous_active = None, False
    for value, state in zip(history, states, strict=True):
        assert not (state.raised_now and state.cleared_now)
        if value is None:
            assert state == AlertState(previous_active, False, False)
            continue
        if state.raised_now:
            assert value < policy.enter
            assert previous_value is None or value < previous_value  # a raise is always a fall
        if state.cleared_now:
            assert value > policy.exit
        assert state.active == ((previous_active and not state.cleared_now) or state.raised_now)
        assert not state.raised_now or not previous_active  # raised only when it was off, cleared only when on
        assert not state.cleared_now or previous_active
        previous_value, previous_active = value, state.active
    # Between two raises the value must have gone above exit: flapping within the band is impossible.
    raises = [i for i, s in enumerate(states) if s.raised_now]
    for first, second in pairwise(raises):
        assert any(v is not None and v > policy.exit for v in history[first + 1 : second])


SUF, DEG, INS = "SUFFICIENT", "DEGRADED", "INSUFFICIENT"


def test_level_oscillation_with_scores_raises_one_alert() -> None:
    scores = [0.85, 0.79, 0.81, 0.79, 0.82, 0.78, 0.84, 0.79]
    levels = [SUF if s >= 0.8 else DEG for s in scores]
    alerts = level_alerts(levels, scores, margin=0.05)
    assert [a.raised_now for a in alerts] == [False, True, False, False, False, False, False, False]
    assert alerts[1] == LevelAlert(Level.DEGRADED, Level.DEGRADED, True, Level.SUFFICIENT)
    assert alerts[1].message == "evidence sufficiency fell from SUFFICIENT to DEGRADED"
    assert all(a.baseline == Level.DEGRADED for a in alerts[1:])
    # Without the margin every fall from SUFFICIENT alerts again: that is what the scores are for.
    assert sum(a.raised_now for a in level_alerts(levels, scores, margin=0.0)) == 4
    assert sum(a.raised_now for a in level_alerts(levels)) == 4


def test_a_clear_recovery_rearms_the_alert() -> None:
    scores = [0.85, 0.79, 0.86, 0.79]
    alerts = level_alerts([SUF, DEG, SUF, DEG], scores, margin=0.05)
    assert [a.raised_now for a in alerts] == [False, True, False, True]
    assert [a.baseline for a in alerts] == [Level.SUFFICIENT, Level.DEGRADED, Level.SUFFICIENT, Level.DEGRADED]


def test_partial_recovery_confirms_only_the_level_the_margin_allows() -> None:
    # From INSUFFICIENT to 0.82: DEGRADED is cleared by the margin (0.55), SUFFICIENT (0.85) is not.
    alerts = level_alerts([SUF, INS, SUF, DEG], [0.9, 0.3, 0.82, 0.6], margin=0.05)
    assert [a.baseline for a in alerts] == [Level.SUFFICIENT, Level.INSUFFICIENT, Level.DEGRADED, Level.DEGRADED]
    assert [a.raised_now for a in alerts] == [False, True, False, False]
    assert alerts[1].fell_from == Level.SUFFICIENT  # one alert for a two-level fall


def test_upward_moves_and_the_first_evaluation_never_alert() -> None:
    assert not any(a.raised_now for a in level_alerts([INS, DEG, SUF, SUF]))
    assert not any(a.raised_now for a in level_alerts([INS, DEG, SUF], [0.1, 0.6, 0.95]))
    assert level_alerts([DEG])[0] == LevelAlert(Level.DEGRADED, Level.DEGRADED, False)
    assert level_alerts([DEG])[0].message == ""


def test_a_first_score_just_above_a_threshold_still_sets_the_baseline() -> None:
    # 0.81 is SUFFICIENT; a fall from it to 0.6 is a fall, margin or not.
    assert [a.raised_now for a in level_alerts([SUF, DEG], [0.81, 0.6])] == [False, True]


def test_unevaluated_steps_keep_the_baseline() -> None:
    alerts = level_alerts([None, SUF, None, DEG, None], [None, 0.9, None, 0.7, None])
    assert [a.raised_now for a in alerts] == [False, False, False, True, False]
    assert [a.baseline for a in alerts] == [None, Level.SUFFICIENT, Level.SUFFICIENT, Level.DEGRADED, Level.DEGRADED]
    assert level_alerts([]) == []


def test_levels_accept_the_enum_and_custom_thresholds() -> None:
    alerts = level_alerts([Level.SUFFICIENT, Level.DEGRADED], [0.95, 0.85], sufficient=0.9, degraded=0.6)
    assert [a.raised_now for a in alerts] == [False, True]


@pytest.mark.parametrize(
    ("levels", "scores", "kwargs", "message"),
    [
        ([SUF, "GOOD"], None, {}, r"step 1: unknown level 'GOOD'"),
        ([SUF, DEG], [0.9], {}, "scores has 1 values for 2 levels"),
        ([SUF, DEG], [0.9, 0.85], {}, r"step 1: level DEGRADED does not match score 0.85"),
        ([SUF, None], [0.9, 0.7], {}, "step 1: a missing level needs a missing score"),
        ([SUF, DEG], [0.9, math.nan], {}, r"scores\[1\] must be a number"),
        ([SUF], None, {"sufficient": 0.4, "degraded": 0.5}, "0 < degraded < sufficient <= 1"),
        ([SUF], None, {"margin": -0.1}, "margin must be"),
    ],
)
def test_level_inputs_are_validated(levels: list, scores: list | None, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        level_alerts(levels, scores, **kwargs)


RANK = {Level.INSUFFICIENT: 0, Level.DEGRADED: 1, Level.SUFFICIENT: 2}


@settings(max_examples=300, deadline=None)
@given(
    scores=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), max_size=40),
    margin=st.floats(0.0, 0.2),
)
def test_level_alert_properties(scores: list[float | None], margin: float) -> None:
    levels = [None if s is None else SUF if s >= 0.8 else DEG if s >= 0.5 else INS for s in scores]
    alerts = level_alerts(levels, scores, margin=margin)
    previous = None
    for alert in alerts:
        if alert.raised_now:
            # Only a fall from the previous evaluated level alerts, never the first one, never a rise.
            assert previous is not None and RANK[alert.level] < RANK[previous]
            assert RANK[alert.fell_from] > RANK[alert.level]
        if alert.level is not None:
            assert alert.baseline is not None and RANK[alert.baseline] <= RANK[alert.level]
            previous = alert.level
    # A larger margin never raises more alerts.
    wider = level_alerts(levels, scores, margin=margin + 0.1)
    assert sum(a.raised_now for a in wider) <= sum(a.raised_now for a in alerts)
