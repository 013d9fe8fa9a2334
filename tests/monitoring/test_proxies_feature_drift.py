"""Feature drift with evidently: false alarms without drift, detection of real shifts, and data-quality counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2, norm, wasserstein_distance

from banditgate.monitoring.proxies.feature_drift import (
    DRIFT_THRESHOLD,
    DRIFTED_SHARE_CAP,
    FALSE_ALARM_LEVEL,
    FeatureDrift,
    alarm_count,
    column_alarm_level,
    drift_threshold,
    feature_drift_proxies,
)
from tests.support.real_data import inject, rand_hie, shuttle, split, window_alarm

NAMES = ["drifted_columns_share", "missing_share", "out_of_range_share", "unseen_categories_share"]
COUNTRIES = np.array(["DE", "FR", "NL", "ES", "IT", "US"], dtype=object)
COUNTRY_P = np.array([0.35, 0.25, 0.15, 0.1, 0.1, 0.05])
MERCHANTS = np.array([f"m{i:03d}" for i in range(200)], dtype=object)


def contexts(n: int, seed: int, *, amount_shift: float = 0.0, country_p: np.ndarray = COUNTRY_P) -> pd.DataFrame:
    """Payment-like contexts: skewed and discrete numbers, low- and high-cardinality categories, a boolean."""
    rng = np.random.default_rng(seed)
    merchant_p = 1.0 / np.arange(1, MERCHANTS.size + 1)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.5 + amount_shift, 1.0, n),
            "risk": rng.beta(2.0, 9.0, n),
            "retries": rng.poisson(0.2, n),
            "country": rng.choice(COUNTRIES, n, p=country_p / country_p.sum()),
            "merchant": rng.choice(MERCHANTS, n, p=merchant_p / merchant_p.sum()),
            "wallet": rng.random(n) < 0.3,
        }
    )


def by_name(drift: FeatureDrift) -> dict:
    return {r.name: r for r in drift.readings}


# -- drift tests -------------------------------------------------------------------------------------------


def test_no_drift_false_alarm_rate_over_thirty_daily_checks_is_below_five_percent() -> None:
    # Without evidently's report: the same tests and readings (see the test of report=False), at a fraction of
    # the cost of thirty reports.
    reference = contexts(20_000, seed=1000)
    shares, alarms = [], 0
    for day in range(30):
        drift = feature_drift_proxies(reference, contexts(3000, seed=day), seed=day, report=False)
        reading = by_name(drift)["drifted_columns_share"]
        shares.append(reading.statistic)
        alarms += reading.status == "alert"
    assert alarms / 30 < 0.05
    assert np.mean(shares) < 0.02  # about no column flagged, including the 200-merchant one at 3,000 rows


def test_a_shifted_numerical_column_is_flagged_alone() -> None:
    drift = feature_drift_proxies(contexts(20_000, seed=1), contexts(5000, seed=2, amount_shift=0.3))
    reading = by_name(drift)["drifted_columns_share"]
    assert reading.detail["drifted"] == ["amount"]
    assert reading.statistic == pytest.approx(1 / 6)
    assert reading.status == "alert" and reading.covers == ("representativeness",)
    assert reading.normalised == pytest.approx(1.0 - (1 / 6) / DRIFTED_SHARE_CAP)
    amount = next(c for c in drift.columns if c.column == "amount")
    assert (amount.kind, amount.method, amount.drifted) == ("numerical", "wasserstein", True)


def test_a_shifted_categorical_mix_is_flagged_alone() -> None:
    shifted = np.array([0.1, 0.15, 0.15, 0.1, 0.1, 0.4])  # a market expansion: US from 5% to 40%
    drift = feature_drift_proxies(contexts(20_000, seed=1), contexts(5000, seed=2, country_p=shifted))
    reading = by_name(drift)["drifted_columns_share"]
    assert reading.detail["drifted"] == ["country"]
    assert reading.status == "alert"
    country = next(c for c in drift.columns if c.column == "country")
    assert (country.kind, country.method) == ("categorical", "jensenshannon")
    assert country.score > country.threshold


def test_evidently_count_agrees_with_the_per_column_tests() -> None:
    drift = feature_drift_proxies(contexts(20_000, seed=1), contexts(5000, seed=3, amount_shift=0.5))
    reading = by_name(drift)["drifted_columns_share"]
    assert reading.statistic == pytest.approx(np.mean([c.drifted for c in drift.columns]))
    assert reading.detail["n_tested"] == 6
    assert set(reading.detail["columns"]) == set(drift.scores) == {c.column for c in drift.columns}


def test_without_the_report_the_same_tests_give_the_same_readings_and_no_snapshot() -> None:
    reference = contexts(20_000, seed=1)
    current = contexts(5000, seed=3, amount_shift=0.5)
    current.loc[:9, "risk"] = np.inf  # evidently drops infinite values before testing; so must the direct path
    with_report = feature_drift_proxies(reference, current)
    without = feature_drift_proxies(reference, current, report=False)
    assert with_report.snapshot is not None and without.snapshot is None
    assert without.to_dict() == with_report.to_dict()  # every score, threshold, count and share, exactly
    assert by_name(without)["drifted_columns_share"].detail["drifted"] == ["amount"]
    with pytest.raises(ValueError, match="no drift report"):
        without.html()


def test_thresholds_add_sampling_noise_to_the_effect_size_floor() -> None:
    reference, current = contexts(10_000, seed=1), contexts(2000, seed=2)  # both below the sample: used whole
    columns = {c.column: c for c in feature_drift_proxies(reference, current).columns}
    scale = 1 / 10_000 + 1 / 2000
    level = FALSE_ALARM_LEVEL * 1 / 6  # six columns: any one alerts, Bonferroni
    assert column_alarm_level(6) == pytest.approx(level)

    # Jensen-Shannon: the floor and the chi-square noise bound in quadrature, K = categories seen on either side.
    merchant = columns["merchant"]
    assert (merchant.n_reference, merchant.n_current) == (10_000, 2000)
    k = len(set(reference["merchant"]) | set(current["merchant"]))
    expected = math.sqrt(DRIFT_THRESHOLD**2 + chi2.isf(level, k - 1) * scale / 8)
    assert merchant.threshold == pytest.approx(expected, rel=1e-9)
    assert merchant.threshold > 0.14  # a plain 0.1 would sit inside this column's sampling noise
    wallet = math.sqrt(DRIFT_THRESHOLD**2 + chi2.isf(level, 1) * scale / 8)
    assert columns["wallet"].threshold == pytest.approx(wallet, rel=1e-9)

    # Wasserstein: (sqrt(2/pi) J + z sd) sqrt(1/n + 1/m) + ln(1/a) / 3 * R / min(n, m) on the pooled values,
    # J = int sqrt(F (1 - F)) dx, R = max |x - median|; divided by the reference's sd (evidently's score).
    pooled = np.sort(np.r_[reference["risk"], current["risk"]])
    f = np.arange(1, pooled.size) / pooled.size
    j = np.sum(np.diff(pooled) * np.sqrt(f * (1 - f)))
    bound = (math.sqrt(2 / math.pi) * j + norm.isf(level) * np.std(pooled)) * math.sqrt(scale)
    bound += math.log(1 / level) / 3 * np.max(np.abs(pooled - np.median(pooled))) / 2000
    assert columns["risk"].threshold == pytest.approx(max(DRIFT_THRESHOLD, bound / np.std(reference["risk"])))
    assert bound / np.std(reference["risk"]) > DRIFT_THRESHOLD  # 2,000 current rows: the noise bound takes over

    large = feature_drift_proxies(contexts(20_000, seed=1), contexts(20_000, seed=2))
    assert next(c for c in large.columns if c.column == "risk").threshold == DRIFT_THRESHOLD


@pytest.mark.parametrize(
    ("n_columns", "count", "level"),
    [(1, 1, 0.01), (6, 1, 0.01 / 6), (9, 1, 0.01 / 9), (10, 1, 0.001), (11, 2, 0.02 / 11), (21, 3, 0.03 / 21)],
)
def test_the_alarm_count_and_column_level_hold_the_false_alarm_bound(n_columns: int, count: int, level: float) -> None:
    assert alarm_count(n_columns) == count
    assert column_alarm_level(n_columns) == pytest.approx(level)
    # Markov: P(count of drifted columns >= c) <= E[count] / c = k a / c, whatever their dependence.
    assert n_columns * column_alarm_level(n_columns) / alarm_count(n_columns) == pytest.approx(FALSE_ALARM_LEVEL)
    assert [alarm_count(k) for k in (30, 31, 70)] == [3, 4, 7]  # no rounding surprise at exact tenths


def test_the_share_trigger_is_the_alarm_count_of_the_tested_columns() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(2000, 12)), columns=[f"x{i}" for i in range(12)])
    current = pd.DataFrame(rng.normal(size=(2000, 12)), columns=reference.columns)
    current["x0"] += 1.0  # one of twelve columns: below the two that twelve columns need
    reading = by_name(feature_drift_proxies(reference, current))["drifted_columns_share"]
    assert reading.detail["drifted"] == ["x0"] and reading.detail["alarm_count"] == 2
    assert reading.trigger == 2 / 12 and reading.status == "ok"
    current["x1"] += 1.0
    reading = by_name(feature_drift_proxies(reference, current))["drifted_columns_share"]
    assert reading.detail["drifted"] == ["x0", "x1"] and reading.status == "alert"


@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("pareto 1.1", lambda rng, n: rng.pareto(1.1, n)),
        ("cauchy", lambda rng, n: rng.standard_cauchy(n)),
        ("rare binary", lambda rng, n: (rng.random(n) < 0.002).astype(float)),
    ],
)
def test_heavy_tailed_columns_hold_their_level_with_a_small_current_window(name: str, draw) -> None:
    """5,000 reference rows against 250: an extreme value falling into the small window is the range term's."""
    rng = np.random.default_rng(0)
    level, exceeded = 0.001, 0
    for _ in range(1000):
        reference, current = pd.Series(draw(rng, 5000)), pd.Series(draw(rng, 250))
        score = wasserstein_distance(reference, current) / max(float(np.std(reference)), 0.001)
        exceeded += score >= drift_threshold("numerical", reference, current, level)
    # Without the range term: 14 and 19 of 1,000 for the Pareto and Cauchy columns, 5 for the binary one.
    assert exceeded <= 2, name


# -- real data: tables the simulator did not make (bundled with river and statsmodels, no download) -----------


@pytest.mark.parametrize(
    ("dataset", "rows", "splits"), [("shuttle", 1000, 60), ("shuttle", 5000, 30), ("rand", 1000, 60)]
)
def test_real_tables_rarely_alarm_without_drift_and_catch_noise_on_three_features(
    dataset: str, rows: int, splits: int
) -> None:
    """Random splits are exchangeable, so every alarm is false; 0.6 sd of noise on 3 of 9 columns is drift.

    Under the earlier bound (``4 sqrt(2/pi) J(reference)``) the Shuttle splits alarmed in about half of the
    1,000-row and 13% of the 5,000-row pairs: ``f2``, ``f4`` and ``f6`` are zero-inflated with outliers in the
    thousands of units, and an outlier falling into only one window moved W1 beyond it.
    """
    frame = shuttle() if dataset == "shuttle" else rand_hie()
    rng = np.random.default_rng(2026)
    false_alarms = detections = 0
    for _ in range(splits):
        reference, current = split(frame, rows, rng)
        false_alarms += window_alarm(reference, current)[0]
        detections += window_alarm(reference, inject(frame, current, rng, k=3, scale=0.6))[0]
    assert false_alarms / splits < 0.05
    assert detections / splits >= 0.9


@pytest.mark.parametrize("dataset", ["shuttle", "rand"])
def test_the_proxy_decides_real_windows_as_the_fast_path_does(dataset: str) -> None:
    """:func:`window_alarm` (the real-data tests' shortcut past evidently's report) is the proxy's decision."""
    frame = shuttle() if dataset == "shuttle" else rand_hie()
    rng = np.random.default_rng(7)
    reference, current = split(frame, 1000, rng)
    injected = inject(frame, current, rng)
    for cur in (current, injected):
        reading = by_name(feature_drift_proxies(reference, cur))["drifted_columns_share"]
        alarm, drifted = window_alarm(reference, cur)
        assert reading.detail["drifted"] == drifted
        assert (reading.status == "alert") == alarm
    assert not window_alarm(reference, current)[0] and window_alarm(reference, injected)[0]


@pytest.mark.slow  # twelve evidently reports
def test_no_drift_shuttle_windows_do_not_alert_through_the_proxy() -> None:
    """The full proxy, evidently included, on Shuttle's no-drift splits (about half alerted before)."""
    rng = np.random.default_rng(11)
    statuses = [
        by_name(feature_drift_proxies(*split(shuttle(), 1000, rng)))["drifted_columns_share"].status for _ in range(12)
    ]
    assert statuses.count("alert") == 0


def test_samples_are_drawn_with_the_seed() -> None:
    reference, current = contexts(30_000, seed=1), contexts(30_000, seed=2)
    a = feature_drift_proxies(reference, current, sample=5000, seed=7)
    b = feature_drift_proxies(reference, current, sample=5000, seed=7)
    c = feature_drift_proxies(reference, current, sample=5000, seed=8)
    assert a.scores == b.scores and a.scores != c.scores
    assert all((col.n_reference, col.n_current) == (5000, 5000) for col in a.columns)


# -- data quality ------------------------------------------------------------------------------------------


def hand_built() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference: amounts 1..1000, two countries. Current: 5% amounts above, 10% US, 30% of countries missing."""
    n = 1000
    reference = pd.DataFrame({"amount": np.arange(1.0, n + 1.0), "country": np.where(np.arange(n) % 2, "DE", "FR")})
    amount = np.arange(1.0, n + 1.0)
    amount[:50] = 5000.0  # 5% above the reference's max
    amount[50:60] = 0.5  # 1% below its min
    amount[60:100] = np.nan  # 4% missing: not counted as out of range
    country = np.where(np.arange(n) % 2, "DE", "FR").astype(object)
    country[:100] = "US"  # 10% never seen
    country[100:400] = None  # 30% missing
    return reference, pd.DataFrame({"amount": amount, "country": country})


def test_out_of_range_unseen_and_missing_shares_on_hand_built_frames() -> None:
    reference, current = hand_built()
    readings = by_name(feature_drift_proxies(reference, current, min_rows=100))

    out_of_range = readings["out_of_range_share"]
    assert out_of_range.statistic == pytest.approx(60 / 960)  # of the 960 non-missing amounts
    assert out_of_range.detail["reference_range"] == {"amount": [1.0, 1000.0]}
    assert out_of_range.status == "alert" and out_of_range.covers == ("representativeness", "reliability")

    unseen = readings["unseen_categories_share"]
    assert unseen.statistic == pytest.approx(100 / 700)  # of the 700 non-missing countries
    assert unseen.detail["most_frequent_unseen"] == {"country": ["US"]}
    assert unseen.status == "alert"

    missing = readings["missing_share"]
    assert missing.statistic == pytest.approx(0.3)
    assert missing.detail["increase"] == pytest.approx({"amount": 0.04, "country": 0.3})
    assert missing.status == "alert" and missing.normalised == pytest.approx(1.0 - 0.3 / 0.5)
    json.dumps(feature_drift_proxies(reference, current, min_rows=100).to_dict())


def test_reference_support_comes_from_every_reference_row_not_the_sample() -> None:
    reference = pd.DataFrame({"code": ["rare"] + ["common"] * 9999, "x": np.r_[1e6, np.zeros(9999)]})
    current = pd.DataFrame({"code": ["rare"] * 100 + ["common"] * 900, "x": np.full(1000, 5e5)})
    readings = by_name(feature_drift_proxies(reference, current, sample=1000, seed=0, min_rows=100))
    assert readings["unseen_categories_share"].statistic == 0.0
    assert readings["out_of_range_share"].statistic == 0.0


def test_fewer_missing_values_than_the_reference_do_not_count() -> None:
    reference = pd.DataFrame({"x": np.r_[np.full(500, np.nan), np.ones(500)]})
    current = pd.DataFrame({"x": np.ones(1000)})
    missing = by_name(feature_drift_proxies(reference, current, min_rows=100))["missing_share"]
    assert missing.statistic == 0.0 and missing.status == "ok"
    assert missing.detail["reference"] == {"x": 0.5} and missing.detail["current"] == {"x": 0.0}


def test_a_vanished_or_all_missing_column_is_all_missing_and_skipped_by_the_drift_tests() -> None:
    reference = contexts(3000, seed=1)
    current = contexts(3000, seed=2).drop(columns=["country"]).assign(risk=np.nan, merchant=None)
    drift = feature_drift_proxies(reference, current)
    readings = by_name(drift)
    assert readings["missing_share"].statistic == 1.0
    assert readings["missing_share"].detail["increase"]["country"] == 1.0
    skipped = readings["drifted_columns_share"].detail["skipped"]
    assert skipped == {
        "risk": "all values missing in the current sample",
        "country": "all values missing in the current sample",
        "merchant": "all values missing in the current sample",
    }
    assert {c.column for c in drift.columns} == {"amount", "retries", "wallet"}


def test_every_column_all_missing_leaves_only_the_data_quality_readings() -> None:
    reference = pd.DataFrame({"x": np.ones(2000), "c": ["a"] * 2000})
    current = pd.DataFrame({"x": np.full(2000, np.nan), "c": [None] * 2000})
    drift = feature_drift_proxies(reference, current)
    readings = by_name(drift)
    assert readings["drifted_columns_share"].status == "unavailable"
    assert readings["drifted_columns_share"].detail == {"reason": "every context column is all missing on one side"}
    assert readings["missing_share"].statistic == 1.0
    assert readings["out_of_range_share"].status == "unavailable"
    assert readings["unseen_categories_share"].status == "unavailable"
    assert drift.snapshot is None and drift.columns == ()


# -- columns -----------------------------------------------------------------------------------------------


def test_column_kinds_are_inferred_from_dtypes() -> None:
    n = 1500
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "amount": rng.random(n),
            "count": rng.integers(0, 5, n),
            "flag": rng.random(n) < 0.5,
            "brand": rng.choice(["visa", "mastercard"], n),
            "device": pd.Categorical(rng.choice(["web", "app"], n)),
            "at": pd.date_range("2026-01-01", periods=n, freq="min"),
        }
    )
    drift = feature_drift_proxies(frame, frame)
    kinds = {c.column: c.kind for c in drift.columns}
    assert kinds == {
        "amount": "numerical",
        "count": "numerical",
        "flag": "categorical",
        "brand": "categorical",
        "device": "categorical",
    }
    assert all(c.score == 0.0 and not c.drifted for c in drift.columns)
    assert [r.statistic for r in drift.readings] == [0.0, 0.0, 0.0, 0.0]


def test_given_kinds_are_used_and_the_rest_inferred_or_left_out() -> None:
    frame = contexts(2000, seed=1)
    as_category = feature_drift_proxies(frame, frame, categorical=["retries"])
    # Categorical given: only "retries"; numerical left None: inferred among the other columns.
    assert {c.column: c.kind for c in as_category.columns} == {
        "amount": "numerical",
        "risk": "numerical",
        "retries": "categorical",
    }
    only = feature_drift_proxies(frame, frame, numerical=["amount"], categorical=["country"])
    assert [c.column for c in only.columns] == ["amount", "country"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"numerical": ["nope"]}, "numerical column 'nope' is not in the reference frame"),
        ({"numerical": ["amount"], "categorical": ["amount"]}, "both numerical and categorical"),
        ({"numerical": ["country"]}, "numerical column 'country' has dtype object in the reference"),
        ({"categorical": "country"}, "must be a list of column names"),
        ({"sample": 0}, "sample must be a positive integer"),
        ({"min_rows": -1}, "min_rows must be a positive integer"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    frame = contexts(100, seed=1)
    with pytest.raises(ValueError, match=message):
        feature_drift_proxies(frame, frame, **kwargs)


def test_a_numerical_column_that_turns_to_text_is_rejected() -> None:
    reference = contexts(1000, seed=1)
    current = reference.assign(amount=reference["amount"].astype(str))
    with pytest.raises(ValueError, match="numerical column 'amount' has dtype object in the current frame"):
        feature_drift_proxies(reference, current)


def test_column_names_must_be_strings() -> None:
    frame = pd.DataFrame({0: np.ones(1000)})
    with pytest.raises(ValueError, match="column names must be strings"):
        feature_drift_proxies(frame, frame)


def test_frames_are_required() -> None:
    with pytest.raises(ValueError, match="pandas DataFrames"):
        feature_drift_proxies({"x": [1.0]}, pd.DataFrame({"x": [1.0]}))  # type: ignore[arg-type]


# -- unavailable, report -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "current", "reason"),
    [
        (contexts(999, seed=1), contexts(5000, seed=2), "reference window has 999 rows, fewer than the 1000 needed"),
        (contexts(5000, seed=1), pd.DataFrame(), "current window has 0 rows, fewer than the 1000 needed"),
        (
            pd.DataFrame({"at": pd.date_range("2026-01-01", periods=1000, freq="min")}),
            pd.DataFrame({"at": pd.date_range("2026-02-01", periods=1000, freq="min")}),
            "no numerical or categorical context column to compare",
        ),
    ],
)
def test_unavailable_windows_give_four_unavailable_readings(
    reference: pd.DataFrame, current: pd.DataFrame, reason: str
) -> None:
    drift = feature_drift_proxies(reference, current)
    assert [r.name for r in drift.readings] == NAMES
    assert all(r.status == "unavailable" and r.detail == {"reason": reason} for r in drift.readings)
    assert drift.columns == () and drift.snapshot is None
    with pytest.raises(ValueError, match="no drift report"):
        drift.html()


def test_readings_carry_their_caps_triggers_and_json_detail() -> None:
    drift = feature_drift_proxies(contexts(5000, seed=1), contexts(5000, seed=2))
    assert [r.name for r in drift.readings] == NAMES
    assert all(r.category == "feature_drift" for r in drift.readings)
    share = drift.readings[0]
    assert (share.cap, share.trigger) == (DRIFTED_SHARE_CAP, 1 / 6)  # any one of the six columns
    text = json.dumps(drift.to_dict())
    assert json.loads(text)["columns"][0]["column"] == "amount"
    assert share.detail["sample_rows"] == {"reference": 5000, "current": 5000}


def test_the_evidently_report_saves_as_html(tmp_path: Path) -> None:
    drift = feature_drift_proxies(contexts(3000, seed=1), contexts(3000, seed=2, amount_shift=0.5))
    path = tmp_path / "drift.html"
    drift.save_html(path)  # a Path, which evidently's own save_html would silently skip
    text = path.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html") and text.rstrip().endswith("</html>")
    assert "Drift in column 'amount'" in text and "Count of Drifted Columns" in text
