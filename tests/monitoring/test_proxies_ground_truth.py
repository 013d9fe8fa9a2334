"""Proxy-ground-truth readings: hand-computed windows, what early labels can and cannot see, edge cases."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditgate.monitoring.proxies.ground_truth import EarlySignals, GroundTruthLimits, ground_truth_proxies


def window(authorised: int, declined: int, predicted: float | None = 0.9, retries=None) -> EarlySignals:
    n = authorised + declined
    return EarlySignals(
        labels=[1] * authorised + [0] * declined,
        predicted=None if predicted is None else [predicted] * n,
        retries=retries,
    )


def by_name(reference: EarlySignals, current: EarlySignals, **limits: float) -> dict:
    return {r.name: r for r in ground_truth_proxies(reference, current, GroundTruthLimits(**limits))}


def test_identical_windows_read_no_trouble() -> None:
    retries = [0] * 900 + [1] * 80 + [4] * 20
    readings = ground_truth_proxies(window(900, 100, retries=retries), window(900, 100, retries=retries))
    assert [r.name for r in readings] == ["early_label_calibration", "early_label_rate_shift", "retry_velocity_shift"]
    assert all(r.category == "proxy_ground_truth" for r in readings)
    assert all(r.status == "ok" and r.statistic == 0.0 for r in readings)


def test_an_unexpected_fall_in_authorisation_is_a_reliability_alert() -> None:
    readings = by_name(window(900, 100), window(800, 200))
    calibration = readings["early_label_calibration"]
    # Residuals y - p: reference 0.1 x 900, -0.9 x 100 (mean 0, variance 0.09 * 1000/999); current mean -0.1,
    # variance 0.16 * 1000/999.
    se = math.sqrt((0.09 + 0.16) * 1000 / 999 / 1000)
    assert calibration.statistic == pytest.approx(0.1 - 4 * se)
    assert calibration.statistic == pytest.approx(0.0367228, abs=1e-6)
    assert calibration.status == "alert"
    assert calibration.covers == ("reliability",)
    assert calibration.detail["reference_gap"] == pytest.approx(0.0, abs=1e-12)
    assert calibration.detail["current_gap"] == pytest.approx(-0.1)
    assert calibration.detail["standard_error"] == pytest.approx(se)
    # Brier: reference 0.9 * 0.01 + 0.1 * 0.81 = 0.09, skill 1 - 0.09 / 0.09 = 0.
    assert calibration.detail["reference"]["brier"] == pytest.approx(0.09)
    assert calibration.detail["reference"]["brier_skill"] == pytest.approx(0.0, abs=1e-12)
    assert calibration.detail["current"]["brier"] == pytest.approx(0.8 * 0.01 + 0.2 * 0.81)
    rate = readings["early_label_rate_shift"]
    assert rate.statistic == pytest.approx(0.1 - 4 * math.sqrt(0.85 * 0.15 * 0.002))
    assert rate.status == "alert"
    assert rate.covers == ("representativeness",)
    assert (rate.detail["reference_rate"], rate.detail["current_rate"]) == (0.9, 0.8)


def test_a_fall_the_oracle_predicted_is_not_a_reliability_alert() -> None:
    readings = by_name(window(900, 100, predicted=0.9), window(800, 200, predicted=0.8))
    assert readings["early_label_calibration"].statistic == 0.0
    assert readings["early_label_calibration"].status == "ok"
    assert readings["early_label_rate_shift"].status == "alert"  # the population still moved


def test_a_late_label_shift_with_unchanged_authorisation_is_invisible() -> None:
    """A chargeback concept shift that leaves authorisation alone gives the same early signals: nothing to see.

    That is the documented limit of the category, not a bug; the gate must report it as undetectable."""
    before = window(900, 100, retries=[0] * 1000)
    after = window(900, 100, retries=[0] * 1000)  # whatever happens to chargebacks, these are the inputs
    assert all(r.statistic == 0.0 for r in ground_truth_proxies(before, after))


def test_miscalibration_the_generation_already_had_is_not_news() -> None:
    # The oracle predicts 0.85 where 90% authorise, in both windows: the gap is constant, nothing changed.
    readings = by_name(window(900, 100, predicted=0.85), window(9000, 1000, predicted=0.85))
    assert readings["early_label_calibration"].statistic == 0.0
    assert readings["early_label_calibration"].detail["current_gap"] == pytest.approx(0.05)


def test_retry_velocity_shift_by_hand() -> None:
    reference = window(900, 100, retries=[0] * 1000)
    current = window(900, 100, retries=[0] * 900 + [3] * 50 + [7] * 50)  # 3 and 7 share the "3+" bucket
    reading = by_name(reference, current)["retry_velocity_shift"]
    assert reading.detail["reference_counts"] == {"0": 1000, "1": 0, "2": 0, "3+": 0}
    assert reading.detail["current_counts"] == {"0": 900, "1": 0, "2": 0, "3+": 100}
    assert reading.detail["current_mean"] == pytest.approx(0.5)
    # Two buckets move by 0.1, each with pooled share 0.95 / 0.05: SE0 = sqrt(0.0475 * 0.002).
    assert reading.statistic == pytest.approx(0.1 - 4 * math.sqrt(0.0475 * 0.002))
    assert reading.status == "alert"
    assert reading.covers == ("reliability", "representativeness")
    fewer = by_name(reference, current, retry_buckets=1)["retry_velocity_shift"]
    assert set(fewer.detail["current_counts"]) == {"0", "1+"}


def test_retry_counts_may_cover_more_decisions_than_the_labels() -> None:
    reading = by_name(window(900, 100, retries=[0] * 5000), window(900, 100, retries=[0] * 3000))
    assert reading["retry_velocity_shift"].status == "ok"


def test_missing_inputs_make_readings_unavailable() -> None:
    readings = by_name(window(900, 100, predicted=None), window(900, 100))
    assert readings["early_label_calibration"].status == "unavailable"
    assert readings["early_label_calibration"].detail["reason"] == "no oracle predictions in the reference window"
    assert readings["early_label_rate_shift"].status == "ok"
    assert readings["retry_velocity_shift"].detail["reason"] == "no retry counts in the reference window"
    current_only = by_name(window(900, 100, retries=[0] * 1000), window(900, 100))
    assert current_only["retry_velocity_shift"].detail["reason"] == "no retry counts in the current window"


def test_windows_below_the_minimum_are_unavailable() -> None:
    readings = by_name(window(900, 100, retries=[0] * 1000), window(50, 9, retries=[0] * 59))
    assert all(r.status == "unavailable" for r in readings.values())
    assert readings["early_label_rate_shift"].detail["reason"] == (
        "current window: 59 early labels, below the minimum of 100"
    )
    empty = by_name(window(900, 100), EarlySignals(labels=[], predicted=[]))
    assert all(r.status == "unavailable" for r in empty.values())
    assert by_name(window(90, 10), window(80, 20), min_labels=10)["early_label_rate_shift"].status == "ok"


def test_brier_skill_is_none_when_every_label_is_equal() -> None:
    readings = by_name(window(1000, 0, predicted=0.95), window(1000, 0, predicted=0.95))
    detail = readings["early_label_calibration"].detail
    assert detail["reference"] == {"brier": pytest.approx(0.0025), "brier_skill": None}
    assert readings["early_label_calibration"].statistic == 0.0  # zero variance, zero change


def test_detail_is_json() -> None:
    readings = ground_truth_proxies(window(900, 100, retries=[1] * 1000), window(800, 200, predicted=None))
    text = json.dumps([r.to_dict() for r in readings], allow_nan=False)
    assert [item["status"] for item in json.loads(text)] == ["unavailable", "alert", "unavailable"]
    json.dumps([r.to_dict() for r in ground_truth_proxies(window(1000, 0), window(1000, 0))], allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": [0, 2]}, "labels must be 0 or 1"),
        ({"labels": [0, 1], "predicted": [0.5]}, "predicted has 1 values for 2 labels"),
        ({"labels": [0, 1], "predicted": [0.5, 1.2]}, r"predicted probabilities must lie in \[0, 1\]"),
        ({"labels": [0, np.nan]}, "labels must be finite"),
        ({"labels": [[0, 1]]}, "labels must be one-dimensional"),
        ({"labels": ["yes"]}, "labels must be numeric"),
        ({"labels": [1], "retries": [-1]}, "retries must be non-negative whole counts"),
        ({"labels": [1], "retries": [0.5]}, "retries must be non-negative whole counts"),
    ],
)
def test_signals_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EarlySignals(**kwargs)


@pytest.mark.parametrize(
    ("limits", "message"),
    [({"z": -1.0}, "z must be"), ({"rate_cap": 0.0}, "rate_cap"), ({"retry_buckets": 0}, "retry_buckets")],
)
def test_limits_are_validated(limits: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GroundTruthLimits(**limits)


def calibrated(rng: np.random.Generator, n: int) -> EarlySignals:
    p = rng.beta(9, 1, size=n)
    return EarlySignals(labels=(rng.uniform(size=n) < p).astype(int), predicted=p, retries=rng.poisson(0.2, size=n))


def test_sampling_noise_does_not_alarm() -> None:
    """A calibrated oracle on two windows of the same process, 200 times over: not one alert."""
    rng = np.random.default_rng(11)
    alerts = 0
    for n in rng.integers(500, 50_000, size=200):
        alerts += sum(r.status == "alert" for r in ground_truth_proxies(calibrated(rng, n), calibrated(rng, n)))
    assert alerts == 0


def test_a_million_early_labels_are_fast() -> None:
    rng = np.random.default_rng(3)
    reference, current = calibrated(rng, 1_000_000), calibrated(rng, 1_000_000)
    start = time.perf_counter()
    readings = ground_truth_proxies(reference, current)
    assert time.perf_counter() - start < 1.0
    assert all(r.status == "ok" for r in readings)


@settings(max_examples=150, deadline=None)
@given(
    p_ref=st.floats(0.05, 0.95),
    p_cur=st.floats(0.05, 0.95),
    shift=st.floats(-0.3, 0.3),
    seed=st.integers(0, 2**32 - 1),
)
def test_calibration_reading_is_bounded_by_the_residual_change(
    p_ref: float, p_cur: float, shift: float, seed: int
) -> None:
    """Zero on identical windows; never more than the change in mean residual it discounts for noise."""
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=400) < p_ref).astype(float)
    predicted = np.full(400, p_cur)
    base = ground_truth_proxies(EarlySignals(labels, predicted), EarlySignals(labels, predicted))[0]
    assert base.statistic == 0.0
    moved_p = np.clip(predicted + shift, 0, 1)
    moved = ground_truth_proxies(EarlySignals(labels, predicted), EarlySignals(labels, moved_p))[0]
    assert 0.0 <= moved.statistic <= abs(moved_p.mean() - predicted.mean()) + 1e-12
