"""The four sufficiency dimensions on arrays: hand-computed values, edge cases (nothing to measure, one class,
empty samples), input validation, and properties (intervals contain the value, the counts bootstrap behaves
like a row bootstrap, the KS statistic matches scipy)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, ks_2samp
from sklearn.metrics import f1_score

from banditgate.monitoring.dimensions import (
    Measurement,
    brier_skill_reliability,
    calibration_reliability,
    completeness,
    f1_reliability,
    freshness,
    ks_statistic,
    reliability,
    representativeness,
)
from banditgate.monitoring.dimensions.base import bounded, instant_ns, times_ns, undefined
from banditgate.monitoring.dimensions.freshness import median_rank
from banditgate.monitoring.dimensions.representativeness import (
    ks_at_points,
    ks_statistic_sorted,
    representativeness_from_ks,
)

Z95 = 1.959963984540054


def days(*dates: str) -> np.ndarray:
    return np.array(dates, dtype="datetime64[ns]")


# --- Measurement -----------------------------------------------------------------------------------------------


def test_measurement_round_trips_to_json() -> None:
    m = Measurement("completeness", 0.4, 0.2, 0.6, 10, {"method": "wilson", "labelled": 4})
    assert json.loads(json.dumps(m.to_dict())) == {
        "name": "completeness",
        "value": 0.4,
        "interval": [0.2, 0.6],
        "n": 10,
        "detail": {"method": "wilson", "labelled": 4},
    }
    assert m.defined


@pytest.mark.parametrize(
    ("value", "low", "high", "n"),
    [(1.2, 0.0, 1.0, 1), (0.5, 0.6, 0.7, 1), (0.5, 0.1, 0.4, 1), (math.nan, 0.0, 1.0, 1), (0.5, 0.0, 1.0, -1)],
)
def test_measurement_refuses_inconsistent_values(value: float, low: float, high: float, n: int) -> None:
    with pytest.raises(ValueError):
        Measurement("x", value, low, high, n)


def test_bounded_clips_and_widens_to_contain_the_value() -> None:
    m = bounded("reliability", 0.5, 0.55, 1.0000001, 7, {})
    assert (m.low, m.value, m.high) == (0.5, 0.5, 1.0)


def test_undefined_reads_zero_with_the_whole_interval() -> None:
    m = undefined("freshness", "no confirmed labels by as_of", n=0, lambda_per_day=0.02)
    assert (m.value, m.low, m.high, m.n) == (0.0, 0.0, 1.0, 0)
    assert m.detail == {"reason": "no confirmed labels by as_of", "lambda_per_day": 0.02}
    assert not m.defined


def test_times_are_read_as_utc_nanoseconds() -> None:
    amsterdam = pd.Series(pd.to_datetime(["2026-01-01T01:00:00+01:00", None], utc=True)).dt.tz_convert(
        "Europe/Amsterdam"
    )
    expected = days("2026-01-01T00:00", "NaT").view(np.int64)
    assert times_ns(amsterdam, "t").tolist() == expected.tolist()
    assert times_ns(days("2026-01-01", "NaT").astype("datetime64[s]"), "t").tolist() == expected.tolist()
    assert instant_ns("2026-01-01T01:00:00+01:00") == instant_ns(pd.Timestamp("2026-01-01")) == expected[0]


@pytest.mark.parametrize("values", [np.array([1.7e18, 1.8e18]), ["2026-01-01"], np.array([], dtype=float)])
def test_times_refuse_anything_but_datetimes(values: object) -> None:
    with pytest.raises(ValueError, match="must hold datetimes"):
        times_ns(values, "label_times")


@pytest.mark.parametrize("value", ["not a date", None, pd.NaT])
def test_as_of_must_be_a_point_in_time(value: object) -> None:
    with pytest.raises(ValueError, match="as_of"):
        instant_ns(value)  # type: ignore[arg-type]


# --- completeness ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labelled", "total", "low", "high"),
    # Wilson 95% intervals, as tabulated e.g. by Newcombe, Statistics in Medicine 17, 1998 (method 3).
    [(30, 100, 0.2189, 0.3958), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662)],
)
def test_completeness_is_the_share_with_the_wilson_interval(labelled: int, total: int, low: float, high: float) -> None:
    m = completeness(labelled, total)
    assert m.value == labelled / total
    assert (round(m.low, 4), round(m.high, 4)) == (low, high)
    assert m.n == total
    assert m.detail == {"method": "wilson", "labelled": labelled, "total": total, "confidence": 0.95}


def test_completeness_of_an_empty_window_is_zero_not_unknown() -> None:
    m = completeness(0, 0)
    assert (m.value, m.low, m.high, m.n) == (0.0, 0.0, 1.0, 0)
    assert m.detail["reason"] == "no decisions in the window"


def test_a_higher_confidence_widens_the_interval() -> None:
    narrow, wide = completeness(30, 100, 0.8), completeness(30, 100, 0.99)
    assert wide.low < narrow.low < 0.3 < narrow.high < wide.high


@pytest.mark.parametrize(
    ("labelled", "total", "message"),
    [(5, 4, "cannot exceed"), (-1, 4, "at least 0"), (1.5, 4, "integer"), (1, True, "integer")],
)
def test_completeness_refuses_bad_counts(labelled: object, total: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        completeness(labelled, total)  # type: ignore[arg-type]


def test_completeness_refuses_a_bad_confidence() -> None:
    with pytest.raises(ValueError, match="confidence"):
        completeness(1, 2, confidence=1.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_wilson_contains_the_share_and_stays_in_the_unit_interval(a: int, b: int) -> None:
    labelled, total = min(a, b), max(a, b)
    m = completeness(labelled, total)
    assert 0.0 <= m.low <= m.value <= m.high <= 1.0
    if total:
        assert m.high - m.low <= 2 * Z95 * math.sqrt(0.25 / total) + 1e-12


# --- freshness -------------------------------------------------------------------------------------------------


def test_freshness_decays_from_the_median_of_the_recent_labels() -> None:
    m = freshness(days("2026-01-01", "2026-01-09", "2026-01-11"), "2026-01-21", lambda_per_day=0.02)
    # Median Jan 9 (12 days), quartiles (linear) Jan 5 (16 days) and Jan 10 (11 days).
    assert m.value == pytest.approx(math.exp(-0.02 * 12))
    assert (m.low, m.high) == (0.0, 1.0)  # three labels cannot bound their median at 95%
    assert m.detail["median_interval"] is None
    assert m.n == 3
    assert m.detail["age_days"] == 12.0
    assert m.detail["median_label_at"] == "2026-01-09T00:00:00+00:00"
    assert (m.detail["q25_label_at"], m.detail["q75_label_at"]) == (
        "2026-01-05T00:00:00+00:00",
        "2026-01-10T00:00:00+00:00",
    )


def test_freshness_interval_is_the_quartile_spread_on_many_labels() -> None:
    # One label a day for 101 days: the quartiles (day 25, day 75) lie outside the median's interval.
    times = np.datetime64("2026-01-01", "ns") + np.arange(101) * np.timedelta64(1, "D")
    m = freshness(times, times[-1], lambda_per_day=0.02)
    assert m.value == pytest.approx(math.exp(-0.02 * 50))
    assert (m.low, m.high) == pytest.approx((math.exp(-0.02 * 75), math.exp(-0.02 * 25)))


def test_few_labels_widen_freshness_to_the_interval_of_their_median() -> None:
    # Ten labels on days 0..9: the quartiles are days 2.25 and 6.75, the median's 95% interval days 1 to 8
    # (order statistics 2 and 9 of Bin(10, 1/2)).
    times = np.datetime64("2026-01-01", "ns") + np.arange(10) * np.timedelta64(1, "D")
    m = freshness(times, times[-1], lambda_per_day=0.02)
    assert (m.low, m.high) == pytest.approx((math.exp(-0.02 * 8), math.exp(-0.02 * 1)))
    assert m.detail["median_interval"] == ["2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00"]


def test_one_label_does_not_make_freshness_exact() -> None:
    m = freshness(days("2026-01-20"), "2026-01-21", lambda_per_day=0.02)
    assert m.value == pytest.approx(math.exp(-0.02)) and (m.low, m.high) == (0.0, 1.0)
    # Without decay F is 1 whatever the labels' times: exact, however few they are.
    still = freshness(days("2026-01-20"), "2026-01-21", lambda_per_day=0.0)
    assert (still.value, still.low, still.high) == (1.0, 1.0, 1.0)


def test_median_ranks_cover_the_median() -> None:
    assert [median_rank(0.95, n) for n in (1, 5)] == [None, None]
    for n in (6, 7, 10, 20, 50, 100, 500, 1000, 1001, 5000):
        rank = median_rank(0.95, n)
        assert rank is not None and 1 - 2 * binom.cdf(rank - 1, n, 0.5) >= 0.95
        if n <= 1000:  # exact: one rank further in no longer covers
            assert 1 - 2 * binom.cdf(rank, n, 0.5) < 0.95


def test_freshness_uses_only_the_most_recent_labels() -> None:
    times = days("2025-06-01", "2025-07-01", "2026-01-10", "2026-01-12")
    m = freshness(times, "2026-01-21", lambda_per_day=0.005, recent=2)
    assert m.detail["age_days"] == 10.0  # median of Jan 10 and Jan 12
    assert m.value == pytest.approx(math.exp(-0.05))
    assert (m.n, m.detail["labels_available"], m.detail["labels_used"]) == (2, 4, 2)


def test_freshness_ignores_missing_and_future_labels() -> None:
    times = days("2026-01-11", "NaT", "2026-02-01", "2026-01-11")
    m = freshness(times, "2026-01-21", lambda_per_day=0.02)
    assert m.detail["age_days"] == 10.0
    assert m.n == 2


@pytest.mark.parametrize(
    "times", [days(), days("NaT", "NaT"), days("2026-02-01")], ids=["empty", "all missing", "all after as_of"]
)
def test_freshness_without_labels_is_zero(times: np.ndarray) -> None:
    m = freshness(times, "2026-01-21", lambda_per_day=0.02)
    assert (m.value, m.low, m.high) == (0.0, 0.0, 1.0)
    assert m.detail["reason"] == "no confirmed labels by as_of"


def test_freshness_does_not_decay_at_rate_zero_and_reads_pandas_series() -> None:
    series = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-05"], utc=True))
    assert freshness(series, "2026-06-01", lambda_per_day=0.0).value == 1.0
    assert freshness(series, pd.Timestamp("2026-01-13", tz="UTC"), 0.02).detail["age_days"] == 10.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"lambda_per_day": -0.1}, "lambda_per_day"), ({"lambda_per_day": 0.02, "recent": 0}, "recent")],
)
def test_freshness_refuses_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        freshness(days("2026-01-01"), "2026-01-02", **kwargs)  # type: ignore[arg-type]


# --- reliability -----------------------------------------------------------------------------------------------


def imbalanced(n: int, seed: int, prevalence_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores around a 3% prevalence and labels drawn from them (so the scores are calibrated)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1.0, 32.0, n)
    y = (rng.random(n) < np.clip(p * prevalence_scale, 0, 1)).astype(float)
    return y, p


def test_f1_matches_the_confusion_matrix_and_sklearn() -> None:
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4, 0.55]
    m = f1_reliability(y, p)
    assert (m.detail["tp"], m.detail["fp"], m.detail["fn"], m.detail["tn"]) == (3, 1, 1, 3)
    assert m.value == pytest.approx(6 / 8) == pytest.approx(f1_score(y, np.asarray(p) >= 0.5))
    assert (m.detail["precision"], m.detail["recall"], m.detail["prevalence"]) == (0.75, 0.75, 0.5)
    assert m.low <= m.value <= m.high
    assert f1_reliability(y, p, threshold=0.15).value == pytest.approx(f1_score(y, np.asarray(p) >= 0.15))


def test_f1_without_rows_or_without_positives_is_zero_with_a_reason() -> None:
    assert f1_reliability([], []).detail["reason"] == "no labelled decisions"
    m = f1_reliability([0, 0, 0], [0.9, 0.1, 0.2])
    assert (m.value, m.low, m.high, m.n) == (0.0, 0.0, 1.0, 3)
    assert m.detail["reason"].startswith("no positive labels")
    assert m.detail["fp"] == 1


def test_f1_is_defined_when_every_label_is_positive() -> None:
    m = f1_reliability([1, 1, 1], [0.9, 0.8, 0.2])  # TP 2, FN 1: 4 / 5
    assert m.value == pytest.approx(0.8)
    perfect = f1_reliability([1, 1], [0.9, 0.8])
    # Every replicate of two true positives is 1 too; two rows do not make F1 known exactly (Wilson of 2/2).
    assert (perfect.value, perfect.high) == (1.0, 1.0) and perfect.low == pytest.approx(0.3424, abs=1e-4)


@pytest.mark.parametrize(
    ("metric", "y", "p"),
    [
        ("calibration", [1], [0.977]),  # one label: 1 - ECE = 0.977 in every bootstrap replicate
        ("f1", [1], [0.9]),
        ("brier_skill", [1, 0], [0.9, 0.1]),
        ("calibration", [1] * 50, [0.99] * 50),  # 50 rows in one cell: no replicate differs either
    ],
)
def test_a_tiny_or_uniform_sample_never_gives_a_zero_width_reliability_interval(
    metric: str, y: list[int], p: list[float]
) -> None:
    m = reliability(y, p, metric)
    assert m.defined and m.low <= m.value <= m.high
    trials = len(y)
    # At least as wide as the Wilson interval of the value on its trials.
    z = 1.959963984540054
    assert (
        m.high - m.low
        >= z * math.sqrt(m.value * (1 - m.value) / trials + z * z / (4 * trials**2)) / (1 + z * z / trials) - 1e-9
    )
    if trials == 1:
        assert m.low < 0.25


def test_the_counts_bootstrap_matches_a_row_bootstrap() -> None:
    y, p = imbalanced(3000, seed=4, prevalence_scale=1.2)
    rng = np.random.default_rng(99)
    rows = rng.integers(0, y.size, size=(1000, y.size))
    by_rows: dict[str, list[float]] = {"f1": [], "calibration": [], "brier_skill": []}
    for r in rows:
        yr, pr = y[r], p[r]
        tp, predicted = np.sum((yr == 1) & (pr >= 0.08)), np.sum(pr >= 0.08)
        by_rows["f1"].append(2 * tp / (predicted + yr.sum()))
        which = np.minimum((pr * 10).astype(int), 9)
        by_rows["calibration"].append(
            1 - np.abs(np.bincount(which, yr, 10) - np.bincount(which, pr, 10)).sum() / y.size
        )
        by_rows["brier_skill"].append(max(0.0, 1 - np.mean((pr - yr) ** 2) / (yr.mean() * (1 - yr.mean()))))
    measured = {
        "f1": f1_reliability(y, p, threshold=0.08),
        "calibration": calibration_reliability(y, p),
        "brier_skill": brier_skill_reliability(y, p),
    }
    for name, m in measured.items():
        low, high = np.quantile(by_rows[name], [0.025, 0.975])
        width = high - low
        assert m.low == pytest.approx(low, abs=0.1 * width), name
        assert m.high == pytest.approx(high, abs=0.1 * width), name


def test_brier_skill_against_the_prevalence() -> None:
    m = brier_skill_reliability([1, 0, 0, 0], [0.8, 0.2, 0.1, 0.1])
    # Brier (0.04 + 0.04 + 0.01 + 0.01) / 4 = 0.025, q (1 - q) = 0.1875.
    assert m.value == pytest.approx(1 - 0.025 / 0.1875)
    assert m.detail["brier"] == pytest.approx(0.025)
    assert m.detail["reference_brier"] == pytest.approx(0.1875)
    assert brier_skill_reliability([1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0]).value == 1.0


def test_brier_skill_is_zero_for_the_prevalence_and_floored_below_it() -> None:
    assert brier_skill_reliability([1, 0, 0, 0], [0.25] * 4).value == pytest.approx(0.0, abs=1e-12)
    worse = brier_skill_reliability([1, 0, 0, 0], [0.1, 0.9, 0.1, 0.1])
    assert worse.value == 0.0
    assert worse.detail["skill"] < 0


def test_brier_skill_of_one_class_is_undefined() -> None:
    m = brier_skill_reliability([0, 0, 0], [0.1, 0.0, 0.2])
    assert (m.value, m.low, m.high) == (0.0, 0.0, 1.0)
    assert m.detail["reason"].startswith("all labels are one class")
    assert brier_skill_reliability([], []).detail["reason"] == "no labelled decisions"


def test_calibration_is_one_minus_the_expected_calibration_error() -> None:
    m = calibration_reliability([1, 0, 0, 0], [0.8, 0.2, 0.1, 0.1], bins=2)
    # Bin [0, 0.5): 3 rows, labels 0, scores 0.1333; bin [0.5, 1]: 1 row, label 1, score 0.8.
    assert m.detail["ece"] == pytest.approx(3 / 4 * 0.4 / 3 + 1 / 4 * 0.2)
    assert m.value == pytest.approx(0.85)
    assert m.detail["bins"] == [
        {"low": 0.0, "high": 0.5, "count": 3, "mean_score": pytest.approx(0.4 / 3), "mean_label": 0.0},
        {"low": 0.5, "high": 1.0, "count": 1, "mean_score": 0.8, "mean_label": 1.0},
    ]


def test_calibration_is_defined_for_one_class_and_blind_to_discrimination() -> None:
    assert calibration_reliability([0, 0], [0.1, 0.3]).value == pytest.approx(0.8)
    y, _ = imbalanced(4000, seed=2)
    constant = np.full(y.size, y.mean())
    assert calibration_reliability(y, constant).value == pytest.approx(1.0)
    assert brier_skill_reliability(y, constant).value == pytest.approx(0.0, abs=1e-9)


def test_scores_outside_the_unit_interval_are_clipped_and_counted() -> None:
    m = calibration_reliability([1, 0], [1.2, -0.1])
    assert m.value == 1.0
    assert m.detail["scores_clipped"] == 2


def test_reliability_dispatches_by_name_with_parameters() -> None:
    y, p = [1, 0, 1, 0], [0.9, 0.2, 0.3, 0.4]
    assert reliability(y, p, "f1", threshold=0.3).value == f1_reliability(y, p, threshold=0.3).value
    assert reliability(y, p, "brier_skill").value == brier_skill_reliability(y, p).value
    assert reliability(y, p, "calibration", bins=5).value == calibration_reliability(y, p, bins=5).value
    with pytest.raises(ValueError, match="unknown reliability metric 'auc'"):
        reliability(y, p, "auc")
    with pytest.raises(ValueError, match="bad parameters for reliability metric 'f1'"):
        reliability(y, p, "f1", bins=5)


def test_the_bootstrap_is_seeded() -> None:
    y, p = imbalanced(2000, seed=1, prevalence_scale=1.5)
    same = [f1_reliability(y, p, threshold=0.1, seed=3) for _ in range(2)]
    assert same[0].to_dict() == same[1].to_dict()
    other = f1_reliability(y, p, threshold=0.1, seed=4)
    assert other.value == same[0].value
    assert (other.low, other.high) != (same[0].low, same[0].high)


@pytest.mark.parametrize(
    ("y", "p", "kwargs", "message"),
    [
        ([1, 0], [0.5], {}, "same length"),
        ([1, 2], [0.5, 0.5], {}, "only 0 and 1"),
        ([1, 0], [0.5, math.nan], {}, "finite"),
        ([1, 0], [0.5, 0.5], {"n_boot": 1}, "n_boot"),
        ([1, 0], [0.5, 0.5], {"confidence": 0.0}, "confidence"),
        ([1, 0], [0.5, 0.5], {"threshold": 1.5}, "threshold"),
    ],
)
def test_reliability_refuses_bad_input(y: list[float], p: list[float], kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        f1_reliability(y, p, **kwargs)  # type: ignore[arg-type]


def test_calibration_refuses_zero_bins() -> None:
    with pytest.raises(ValueError, match="bins"):
        calibration_reliability([1], [0.5], bins=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.floats(0.0, 1.0)), min_size=0, max_size=60),
    st.sampled_from(["f1", "brier_skill", "calibration"]),
)
def test_every_metric_stays_in_the_unit_interval(rows: list[tuple[int, float]], metric: str) -> None:
    y = [r[0] for r in rows]
    p = [r[1] for r in rows]
    m = reliability(y, p, metric, n_boot=50)
    assert 0.0 <= m.low <= m.value <= m.high <= 1.0
    assert m.n == len(rows) or not m.defined
    json.dumps(m.to_dict())


def test_a_million_rows_cost_one_pass_plus_the_bootstrap() -> None:
    y, p = imbalanced(1_000_000, seed=5)
    for metric in ("f1", "brier_skill", "calibration"):
        m = reliability(y, p, metric)
        assert m.n == 1_000_000
        assert m.high - m.low < 0.05


# --- representativeness ----------------------------------------------------------------------------------------


def test_representativeness_from_the_ks_distance_with_the_dkw_interval() -> None:
    rng = np.random.default_rng(0)
    reference, production = rng.normal(0.0, 1.0, 4000), rng.normal(0.1, 1.0, 1000)
    m = representativeness(reference, production)
    distance = ks_2samp(reference, production).statistic
    eps = math.sqrt(math.log(40.0) / 2.0 * (1 / 4000 + 1 / 1000))
    assert m.detail["ks"] == pytest.approx(distance)
    assert m.detail["dkw_eps"] == pytest.approx(eps)
    assert m.value == pytest.approx(1 - distance / 0.3)
    assert m.low == pytest.approx(1 - (distance + eps) / 0.3)
    assert m.high == pytest.approx(min(1.0, 1 - max(0.0, distance - eps) / 0.3))
    assert (m.n, m.detail["n_reference"], m.detail["n_production"]) == (1000, 4000, 1000)


def test_representativeness_hand_values() -> None:
    m = representativeness([0.1, 0.2, 0.3, 0.4], [0.3, 0.4, 0.5, 0.6], ks_cap=0.6)
    assert m.detail["ks"] == 0.5
    assert m.value == pytest.approx(1 - 0.5 / 0.6)
    same = representativeness([0.2, 0.1, 0.3], [0.3, 0.1, 0.2])
    assert (same.detail["ks"], same.value) == (0.0, 1.0)
    apart = representativeness([0.1, 0.2], [0.8, 0.9])
    assert (apart.detail["ks"], apart.value, apart.low) == (1.0, 0.0, 0.0)


def test_representativeness_from_a_given_distance() -> None:
    m = representativeness_from_ks(0.06, 10_000, 5_000)
    eps = math.sqrt(math.log(40.0) / 2.0 * (1 / 10_000 + 1 / 5_000))
    assert (m.value, m.low, m.high) == pytest.approx((0.8, 1 - (0.06 + eps) / 0.3, 1 - (0.06 - eps) / 0.3))


@pytest.mark.parametrize(
    ("reference", "production", "reason"),
    [([], [0.5], "no reference scores"), ([0.5], [], "no production scores"), ([0.5], [math.nan], "no production")],
)
def test_representativeness_of_an_empty_sample_is_zero(
    reference: list[float], production: list[float], reason: str
) -> None:
    m = representativeness(reference, production)
    assert (m.value, m.low, m.high) == (0.0, 0.0, 1.0)
    assert m.detail["reason"].startswith(reason)


def test_representativeness_drops_missing_scores_and_refuses_bad_input() -> None:
    m = representativeness([0.1, math.nan, 0.2], [0.1, 0.2, math.nan])
    assert (m.detail["n_reference"], m.detail["n_production"], m.value) == (2, 2, 1.0)
    with pytest.raises(ValueError, match="infinities"):
        representativeness([0.1, math.inf], [0.2])
    with pytest.raises(ValueError, match="ks_cap"):
        representativeness([0.1], [0.2], ks_cap=0.0)
    with pytest.raises(ValueError, match="1-d"):
        representativeness([[0.1]], [0.2])
    with pytest.raises(ValueError, match="non-empty"):
        ks_statistic([], [0.2])


samples = st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.5, 0.9]) | st.floats(-5, 5), min_size=1, max_size=40)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value of one-element samples; the statistic is fine
@settings(max_examples=200, deadline=None)
@given(samples, samples)
def test_ks_matches_scipy_with_and_without_ties(a: list[float], b: list[float]) -> None:
    expected = ks_2samp(a, b, method="asymp").statistic
    assert ks_statistic(a, b) == pytest.approx(expected, abs=1e-12)
    sa, sb = np.sort(a), np.sort(b)
    other_at = np.searchsorted(sb, sa, side="right") / sb.size
    other_before = np.searchsorted(sb, sa, side="left") / sb.size
    assert ks_at_points(sa, other_at, other_before) == pytest.approx(expected, abs=1e-12)
    assert ks_statistic_sorted(sb, sa) == pytest.approx(expected, abs=1e-12)


def test_ks_scales_to_a_million_scores() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.beta(1, 20, 1_000_000), rng.beta(1, 19, 1_000_000)
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b, method="asymp").statistic, abs=1e-12)
