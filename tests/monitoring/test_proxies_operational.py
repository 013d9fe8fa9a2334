"""Operational proxies: hand-computed values, the noise band, edge cases and properties."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditgate.monitoring.proxies.base import proxy_dimensions
from banditgate.monitoring.proxies.operational import (
    OperationalCounts,
    OperationalLimits,
    discounted_total_variation,
    operational_proxies,
    proportion_shift,
    too_few,
    wilson_lower,
)


def counts(
    decisions: int = 10_000,
    labelled: int | None = None,
    declines: int = 1_000,
    explored: int = 800,
    fallbacks: int = 0,
    errors: int | None = 0,
    actions: dict[str, int] | None = None,
) -> OperationalCounts:
    return OperationalCounts(
        decisions=decisions,
        authorisation_labelled=decisions if labelled is None else labelled,
        declines=declines,
        explored=explored,
        fallbacks=fallbacks,
        errors=errors,
        action_counts={"a": decisions // 2, "b": decisions - decisions // 2} if actions is None else actions,
    )


def by_name(reference: OperationalCounts, current: OperationalCounts, **limits: float) -> dict:
    return {r.name: r for r in operational_proxies(reference, current, OperationalLimits(**limits))}


def test_identical_windows_read_no_trouble() -> None:
    readings = operational_proxies(counts(), counts())
    assert [r.name for r in readings] == [
        "decline_rate_shift",
        "exploration_share_shift",
        "fallback_rate",
        "error_rate",
        "action_mix_shift",
    ]
    assert all(r.category == "operational" for r in readings)
    assert all(r.status == "ok" and r.statistic == 0.0 and r.normalised == 1.0 for r in readings)


def test_proportion_shift_by_hand() -> None:
    # 10% -> 15% of 10,000: pooled 0.125, SE0 = sqrt(0.125 * 0.875 * 2 / 10,000) = 0.0046771
    assert proportion_shift(1000, 10_000, 1500, 10_000, z=4.0).item() == pytest.approx(0.05 - 4 * 0.0046771, abs=1e-6)
    assert proportion_shift(1000, 10_000, 1500, 10_000, z=0.0).item() == pytest.approx(0.05)
    # Symmetric, and nothing at all when the band is wider than the difference.
    assert proportion_shift(1500, 10_000, 1000, 10_000, z=4.0).item() == pytest.approx(0.0312917, abs=1e-6)
    assert proportion_shift(10, 100, 15, 100, z=4.0).item() == 0.0


def test_decline_shift_alerts_only_beyond_both_noise_and_tolerance() -> None:
    # A million decisions: 10.0% -> 10.5% is 11.7 standard errors, but only half a point.
    big = by_name(counts(1_000_000, declines=100_000, explored=0), counts(1_000_000, declines=105_000, explored=0))
    shift = big["decline_rate_shift"]
    assert shift.detail["z_score"] == pytest.approx(0.005 / math.sqrt(0.1025 * 0.8975 * 2e-6), rel=1e-9)
    assert shift.detail["z_score"] > 11
    assert shift.statistic == pytest.approx(0.005 - 4 * math.sqrt(0.1025 * 0.8975 * 2e-6))
    assert shift.status == "ok"
    # 200 labelled decisions: 10% -> 20% is beyond the tolerance but within 4 standard errors (0.143).
    small = by_name(counts(200, declines=20, explored=0), counts(200, declines=40, explored=0))
    assert small["decline_rate_shift"].statistic == 0.0
    assert small["decline_rate_shift"].status == "ok"
    # Both: 10% -> 15% of 10,000 decisions.
    both = by_name(counts(declines=1000), counts(declines=1500))["decline_rate_shift"]
    assert both.status == "alert"
    assert both.statistic == pytest.approx(0.0312917, abs=1e-6)
    assert both.normalised == pytest.approx(1 - 0.0312917 / 0.10, abs=1e-5)
    assert both.covers == ("reliability", "representativeness")
    assert both.detail["reference_rate"] == 0.1
    assert both.detail["current_rate"] == 0.15
    assert both.detail["current"] == {"count": 1500, "of": 10_000}


def test_decline_rate_is_over_authorisation_labelled_decisions_only() -> None:
    # 1,000 of 5,000 labelled declined in both windows: 20%, however many decisions are unlabelled.
    shift = by_name(counts(10_000, labelled=5_000), counts(20_000, labelled=5_000))["decline_rate_shift"]
    assert shift.detail["reference_rate"] == shift.detail["current_rate"] == 0.2
    assert shift.statistic == 0.0


def test_exploration_share_shift() -> None:
    reading = by_name(counts(explored=800), counts(explored=1600))["exploration_share_shift"]
    pooled = 2400 / 20_000
    assert reading.statistic == pytest.approx(0.08 - 4 * math.sqrt(pooled * (1 - pooled) * 2e-4))
    assert reading.status == "alert"
    assert reading.covers == ("representativeness",)


def test_fallback_and_error_rates_use_the_wilson_lower_bound() -> None:
    readings = by_name(counts(), counts(decisions=1000, declines=100, explored=80, fallbacks=10, errors=53))
    fallback = readings["fallback_rate"]
    assert fallback.statistic == pytest.approx(0.0030383, abs=1e-6)  # 10 of 1,000 at z = 4
    assert fallback.status == "ok"  # 1% observed, but only 0.3% for sure
    assert fallback.detail["current_rate"] == 0.01
    assert fallback.detail["reference_rate"] == 0.0
    error = readings["error_rate"]
    assert error.detail["current"] == {"count": 53, "of": 1053}  # failed requests over all requests
    assert error.statistic == pytest.approx(wilson_lower(53, 1053, 4.0))
    assert error.status == "alert"
    assert error.covers == ("completeness",)
    assert wilson_lower(50, 1000, 4.0) == pytest.approx(0.0288333, abs=1e-6)
    assert wilson_lower(0, 1000, 4.0) == 0.0
    assert wilson_lower(1000, 1000, 4.0) < 1.0


def test_unknown_errors_make_the_error_rate_unavailable() -> None:
    reading = by_name(counts(), counts(errors=None))["error_rate"]
    assert reading.status == "unavailable"
    assert reading.normalised is None
    assert "unknown" in reading.detail["reason"]
    # An unknown reference is fine: the rate is the current window's.
    known = by_name(counts(errors=None), counts(errors=0))["error_rate"]
    assert known.status == "ok"
    assert known.detail["reference_rate"] is None


def test_action_mix_is_a_total_variation_over_the_union_of_actions() -> None:
    assert discounted_total_variation({"a": 600, "b": 400}, {"a": 400, "c": 600}, z=0.0) == pytest.approx(0.6)
    reading = by_name(counts(actions={"a": 6000, "b": 4000}), counts(actions={"a": 4000, "b": 5000, "c": 1000}))[
        "action_mix_shift"
    ]
    assert reading.detail["total_variation"] == pytest.approx(0.2)
    assert reading.detail["reference_shares"] == {"a": 0.6, "b": 0.4, "c": 0.0}
    assert reading.detail["current_shares"] == {"a": 0.4, "b": 0.5, "c": 0.1}
    expected = 0.0
    for k_ref, k_cur in ((6000, 4000), (4000, 5000), (0, 1000)):
        pooled = (k_ref + k_cur) / 20_000
        expected += max(0.0, abs(k_cur - k_ref) / 10_000 - 4 * math.sqrt(pooled * (1 - pooled) * 2e-4))
    assert reading.statistic == pytest.approx(expected / 2)
    assert reading.status == "alert"


def test_action_mix_unavailable_without_counts() -> None:
    reading = by_name(counts(actions={}), counts())["action_mix_shift"]
    assert reading.status == "unavailable"
    assert reading.detail["reason"] == "action counts are missing for the reference window"


def test_windows_below_the_minimum_are_unavailable_not_healthy() -> None:
    readings = by_name(counts(), counts(decisions=50, declines=5, explored=4, actions={"a": 50}))
    assert {name: r.status for name, r in readings.items()} == dict.fromkeys(readings, "unavailable")
    assert readings["decline_rate_shift"].detail["reason"] == (
        "current window: 50 authorisation-labelled decisions, below the minimum of 100"
    )
    assert readings["fallback_rate"].detail["reason"] == "current window: 50 decisions, below the minimum of 100"
    assert too_few(100, "decisions", 99, 1000) == "reference window: 99 decisions, below the minimum of 100"
    assert too_few(100, "decisions", 100, 100) is None
    # An empty current window.
    empty = by_name(counts(), counts(decisions=0, declines=0, explored=0, errors=0, actions={}))
    assert all(r.status == "unavailable" for r in empty.values())
    assert proxy_dimensions(empty.values()) == dict.fromkeys(proxy_dimensions([]), None)


def test_readings_are_json_serialisable() -> None:
    readings = operational_proxies(counts(), counts(declines=1500, fallbacks=3, errors=None))
    text = json.dumps([r.to_dict() for r in readings], allow_nan=False)
    assert json.loads(text)[3]["status"] == "unavailable"
    same = operational_proxies(counts(declines=0), counts(declines=0))  # zero standard error: no z score
    assert same[0].detail["z_score"] is None
    json.dumps([r.to_dict() for r in same], allow_nan=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"declines": 20_000}, "declines"),
        ({"explored": 10_001}, "explored"),
        ({"fallbacks": -1}, "fallbacks must be a non-negative integer"),
        ({"decisions": 10.0}, "decisions must be a non-negative integer"),
        ({"errors": True}, "errors must be a non-negative integer"),
        ({"actions": {"a": 1}}, "action_counts sum to 1"),
        ({"actions": {"a": -1, "b": 10_001}}, "action_counts"),
    ],
)
def test_counts_are_validated(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        counts(**changes)


def test_labelled_cannot_exceed_decisions() -> None:
    with pytest.raises(ValueError, match="authorisation_labelled"):
        counts(decisions=100, labelled=101, declines=0, explored=0)


@pytest.mark.parametrize(
    ("limits", "message"),
    [({"z": 0.0}, "z must be"), ({"decline_cap": -0.1}, "decline_cap"), ({"min_decisions": 0}, "min_decisions")],
)
def test_limits_are_validated(limits: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OperationalLimits(**limits)


def test_counts_from_decisions() -> None:
    built = OperationalCounts.from_decisions(
        actions=["a", "b", "a", "c"],
        explored=np.array([False, True, False, True]),
        fallback=np.array([False, False, True, False]),
        authorisation=[1.0, 0.0, np.nan, 0.0],
        errors=2,
    )
    assert built == OperationalCounts(
        decisions=4,
        authorisation_labelled=3,
        declines=2,
        explored=2,
        fallbacks=1,
        errors=2,
        action_counts={"a": 2, "b": 1, "c": 1},
    )
    with pytest.raises(ValueError, match="authorisation rewards must be 0, 1 or NaN"):
        OperationalCounts.from_decisions(["a"], [False], [False], [0.5])
    with pytest.raises(ValueError, match="explored must be a boolean array"):
        OperationalCounts.from_decisions(["a", "b"], [0, 1], [False, False], [1.0, 1.0])
    with pytest.raises(ValueError, match="one value per decision"):
        OperationalCounts.from_decisions(["a", "b"], [False, True], [False, False], [1.0])


def test_a_million_decisions_are_counted_quickly() -> None:
    rng = np.random.default_rng(1)
    n = 1_000_000
    actions = rng.choice(np.array([f"action_{i}" for i in range(12)], dtype=object), size=n)
    authorisation = np.where(rng.uniform(size=n) < 0.3, np.nan, (rng.uniform(size=n) < 0.9).astype(float))
    start = time.perf_counter()
    explored, fallback = rng.uniform(size=n) < 0.1, rng.uniform(size=n) < 0.001
    current = OperationalCounts.from_decisions(actions, explored, fallback, authorisation)
    readings = operational_proxies(current, current)
    assert time.perf_counter() - start < 2.0
    assert current.decisions == n
    assert sum(current.action_counts.values()) == n
    assert readings[3].status == "unavailable"  # no error count given
    assert all(r.statistic == 0.0 for r in readings if r.name not in ("fallback_rate", "error_rate"))


def noisy_window(rng: np.random.Generator, size: int) -> OperationalCounts:
    mix = rng.multinomial(size, [0.4, 0.3, 0.2, 0.07, 0.03])
    return OperationalCounts(
        decisions=size,
        authorisation_labelled=size,
        declines=int(rng.binomial(size, 0.1)),
        explored=int(rng.binomial(size, 0.08)),
        fallbacks=int(rng.binomial(size, 0.001)),
        errors=int(rng.binomial(size, 0.002)),
        action_counts={str(i): int(k) for i, k in enumerate(mix)},
    )


def test_sampling_noise_does_not_alarm() -> None:
    """Two windows from the same process, 300 times over: not one alert (z = 4 and the tolerances)."""
    rng = np.random.default_rng(7)
    alerts = 0
    for n in rng.integers(1_000, 200_000, size=300):
        readings = operational_proxies(noisy_window(rng, int(n)), noisy_window(rng, int(n)))
        alerts += sum(r.status == "alert" for r in readings)
    assert alerts == 0


count_maps = st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 5_000), min_size=1).filter(
    lambda m: sum(m.values()) > 0
)


@settings(max_examples=200, deadline=None)
@given(reference=count_maps, current=count_maps, z=st.floats(0.0, 6.0))
def test_discounted_total_variation_properties(reference: dict, current: dict, z: float) -> None:
    value = discounted_total_variation(reference, current, z)
    raw = discounted_total_variation(reference, current, 0.0)
    assert 0.0 <= value <= raw + 1e-12 <= 1.0 + 1e-12
    assert value == pytest.approx(discounted_total_variation(current, reference, z), abs=1e-12)
    assert discounted_total_variation(reference, reference, z) == pytest.approx(0.0, abs=1e-12)
    assert discounted_total_variation(reference, {k: 3 * v for k, v in reference.items()}, 0.0) == pytest.approx(
        0.0, abs=1e-12
    )


@settings(max_examples=200, deadline=None)
@given(
    n_ref=st.integers(1, 100_000),
    n_cur=st.integers(1, 100_000),
    p_ref=st.floats(0, 1),
    p_cur=st.floats(0, 1),
    z=st.floats(0, 6),
)
def test_proportion_shift_properties(n_ref: int, n_cur: int, p_ref: float, p_cur: float, z: float) -> None:
    k_ref, k_cur = round(p_ref * n_ref), round(p_cur * n_cur)
    value = proportion_shift(k_ref, n_ref, k_cur, n_cur, z).item()
    assert 0.0 <= value <= abs(k_cur / n_cur - k_ref / n_ref) + 1e-12
    assert proportion_shift(k_ref, n_ref, k_cur, n_cur, z + 1).item() <= value + 1e-12
    assert 0.0 <= wilson_lower(k_cur, n_cur, z) <= k_cur / n_cur + 1e-12
