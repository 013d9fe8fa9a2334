"""Score-distribution proxies: PSI and KS against hand-computed values, scipy, and their no-drift behaviour."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from banditgate.monitoring.proxies.score_distribution import (
    KS_CAP,
    KS_TRIGGER,
    PSI_CAP,
    PSI_EPSILON,
    PSI_TRIGGER,
    ks_statistic,
    psi,
    score_distribution_proxies,
)

# -- psi ---------------------------------------------------------------------------------------------------


def test_psi_of_a_hand_computed_two_bin_split() -> None:
    # Median edge 1.5: reference shares (1/2, 1/2), current (3/4, 1/4).
    expected = 0.25 * math.log(1.5) + (-0.25) * math.log(0.5)
    assert psi([0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 3.0], bins=2) == pytest.approx(expected, abs=1e-12)


def test_psi_raises_an_empty_bin_to_epsilon() -> None:
    # Current entirely below the median: shares (1, 0) -> (1, 1e-4).
    expected = (1.0 - 0.5) * math.log(1.0 / 0.5) + (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5)
    assert psi([0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0], bins=2) == pytest.approx(expected, abs=1e-12)


def test_psi_matches_a_direct_histogram_on_ten_quantile_bins() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.beta(2.0, 5.0, 4000), rng.beta(2.5, 5.0, 3000)
    edges = np.quantile(ref, np.arange(1, 10) / 10)
    r = np.histogram(ref, np.concatenate([[-np.inf], edges, [np.inf]]))[0] / ref.size
    c = np.histogram(cur, np.concatenate([[-np.inf], edges, [np.inf]]))[0] / cur.size
    assert psi(ref, cur) == pytest.approx(float(np.sum((c - r) * np.log(c / r))), rel=1e-12)


def test_psi_is_zero_on_identical_samples_and_on_an_all_equal_reference() -> None:
    values = np.random.default_rng(0).random(500)
    assert psi(values, values) == 0.0
    # Ties merge the quantile edges: one edge at 0.7, the reference all in the upper bin, as is the current.
    assert psi(np.full(100, 0.7), np.full(50, 0.7)) == 0.0
    assert psi(np.full(100, 0.7), np.full(50, 0.1)) > PSI_CAP


def test_psi_and_ks_ignore_strictly_increasing_transforms() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0.0, 1.0, 2000), rng.normal(0.3, 1.2, 1500)
    assert psi(np.exp(ref), np.exp(cur)) == pytest.approx(psi(ref, cur), abs=1e-12)
    assert ks_statistic(np.exp(ref), np.exp(cur)) == pytest.approx(ks_statistic(ref, cur), abs=1e-12)


@pytest.mark.parametrize(
    ("reference", "current", "bins", "message"),
    [
        ([], [1.0], 10, "reference is empty"),
        ([1.0], [], 10, "current is empty"),
        ([1.0, np.nan], [1.0], 10, "must be finite"),
        ([[1.0, 2.0]], [1.0], 10, "1-d"),
        ([1.0, 2.0], [1.0], 1, "bins must be an integer >= 2"),
        ([1.0, 2.0], [1.0], True, "bins must be an integer >= 2"),
    ],
)
def test_psi_rejects_bad_input(reference: list, current: list, bins: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        psi(reference, current, bins=bins)


# -- ks ----------------------------------------------------------------------------------------------------


def test_ks_of_hand_computed_samples() -> None:
    assert ks_statistic([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]) == 0.5
    assert ks_statistic([1.0, 2.0], [3.0, 4.0]) == 1.0
    assert ks_statistic([5.0] * 10, [5.0] * 3) == 0.0


@pytest.mark.parametrize("discrete", [False, True])
def test_ks_matches_scipy_including_ties(discrete: bool) -> None:
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(0.0, 1.0, 3000), rng.normal(0.1, 1.0, 2000)
    if discrete:
        ref, cur = np.round(ref, 1), np.round(cur, 1)
    expected = stats.ks_2samp(ref, cur).statistic
    assert ks_statistic(ref, cur) == pytest.approx(expected, abs=1e-12)
    assert ks_statistic(cur, ref) == pytest.approx(expected, abs=1e-12)


def test_ks_rejects_empty_and_non_finite_input() -> None:
    with pytest.raises(ValueError, match="reference is empty"):
        ks_statistic([], [1.0])
    with pytest.raises(ValueError, match="must be finite"):
        ks_statistic([1.0], [np.inf])


# -- proxies -----------------------------------------------------------------------------------------------


def test_proxies_report_psi_and_ks_with_their_caps_triggers_and_coverage() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0.0, 1.0, 5000), rng.normal(0.5, 1.0, 4000)
    psi_reading, ks_reading = score_distribution_proxies(ref, cur)

    assert psi_reading.name == "score_psi" and psi_reading.category == "score_distribution"
    assert psi_reading.statistic == pytest.approx(psi(ref, cur), abs=1e-12)
    assert (psi_reading.cap, psi_reading.trigger) == (PSI_CAP, PSI_TRIGGER) == (0.5, 0.25)
    assert psi_reading.covers == ("representativeness", "reliability")
    assert psi_reading.status == ("alert" if psi_reading.statistic >= 0.25 else "ok")
    assert psi_reading.detail["n_reference"] == 5000 and psi_reading.detail["n_current"] == 4000
    assert sum(psi_reading.detail["reference_shares"]) == pytest.approx(1.0, abs=1e-9)
    assert len(psi_reading.detail["edges"]) == 9

    assert ks_reading.name == "score_ks"
    assert ks_reading.statistic == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert (ks_reading.cap, ks_reading.trigger) == (KS_CAP, KS_TRIGGER) == (0.30, 0.10)
    assert ks_reading.covers == ("representativeness",)
    assert ks_reading.status == "alert"
    assert ks_reading.normalised == pytest.approx(max(0.0, 1.0 - ks_reading.statistic / 0.30))
    assert ks_reading.detail["p_value"] < 1e-6
    json.dumps([psi_reading.to_dict(), ks_reading.to_dict()])


def test_identical_windows_read_one_and_stay_ok() -> None:
    values = np.random.default_rng(0).random(2000)
    readings = score_distribution_proxies(values, values)
    assert [(r.status, r.statistic, r.normalised) for r in readings] == [("ok", 0.0, 1.0), ("ok", 0.0, 1.0)]
    assert readings[1].detail["p_value"] == 1.0


@pytest.mark.parametrize(
    ("n_reference", "n_current", "reason"),
    [
        (0, 5000, "reference window has 0 scores, fewer than the 1000 needed"),
        (5000, 999, "current window has 999 scores, fewer than the 1000 needed"),
        (5000, 0, "current window has 0 scores, fewer than the 1000 needed"),
    ],
)
def test_too_few_scores_make_both_proxies_unavailable(n_reference: int, n_current: int, reason: str) -> None:
    rng = np.random.default_rng(0)
    readings = score_distribution_proxies(rng.random(n_reference), rng.random(n_current))
    assert [r.name for r in readings] == ["score_psi", "score_ks"]
    for r in readings:
        assert r.status == "unavailable" and r.normalised is None and math.isnan(r.statistic)
        assert r.detail == {"reason": reason}
        assert r.to_dict()["statistic"] is None


def test_min_rows_is_configurable_and_validated() -> None:
    readings = score_distribution_proxies([0.1, 0.2, 0.3], [0.1, 0.2, 0.9], min_rows=3, bins=2)
    assert readings[1].statistic == pytest.approx(1.0 / 3.0)  # at 0.3: F_ref = 1, F_cur = 2/3
    assert [r.status for r in readings] == ["ok", "alert"]
    with pytest.raises(ValueError, match="min_rows"):
        score_distribution_proxies([0.1], [0.1], min_rows=0)


def test_no_drift_false_alarm_rate_over_thirty_daily_checks_is_below_five_percent() -> None:
    alarms = {"score_psi": 0, "score_ks": 0}
    reference = np.random.default_rng(100).beta(2.0, 8.0, 20_000)
    for day in range(30):
        current = np.random.default_rng(day).beta(2.0, 8.0, 1000)  # the smallest window allowed
        for r in score_distribution_proxies(reference, current):
            alarms[r.name] += r.status == "alert"
    assert all(count / 30 < 0.05 for count in alarms.values()), alarms


def test_a_shifted_score_distribution_alerts_on_both() -> None:
    rng = np.random.default_rng(5)
    readings = score_distribution_proxies(rng.beta(2.0, 8.0, 20_000), rng.beta(4.0, 8.0, 5000))
    assert [r.status for r in readings] == ["alert", "alert"]
