"""The composite sufficiency score: parameters and presets, levels, gate factor, requirements, level changes."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from banditgate.monitoring.alerts import level_alerts
from banditgate.monitoring.sufficiency import (
    DIMENSIONS,
    PRESETS,
    Dimensions,
    Level,
    SufficiencyParameters,
    Weights,
    composite,
    gate_factor,
    level_change,
    level_of,
    preset,
    reaches,
    requirements,
    score_arrays,
)

DEFAULT = SufficiencyParameters()
PAPER = preset("fraud", tau_r=0.15, reliability_metric="f1")
PAPER_START = Dimensions(1.0, 1.0, 0.1333, 1.0)


# --- dimensions and weights -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan, math.inf, "high", None, True])
def test_dimensions_refuse_values_outside_the_unit_interval(value: object) -> None:
    with pytest.raises(ValueError, match="freshness must be"):
        Dimensions(0.5, value, 0.5, 0.5)  # type: ignore[arg-type]


def test_dimensions_convert_to_float_and_replace_by_name() -> None:
    dims = Dimensions(1, 0, 0.5, 0.25)
    assert dims.to_dict() == {"completeness": 1.0, "freshness": 0.0, "reliability": 0.5, "representativeness": 0.25}
    assert isinstance(dims.completeness, float)
    assert dims.replace(reliability=0.9).reliability == 0.9
    with pytest.raises(ValueError, match="unknown dimension 'recall'"):
        dims.replace(recall=0.9)
    assert DIMENSIONS == ("completeness", "freshness", "reliability", "representativeness")


def test_weights_must_sum_to_one_within_1e_9() -> None:
    assert Weights(0.25, 0.25, 0.25, 0.25 + 5e-10).representativeness == pytest.approx(0.25)
    with pytest.raises(ValueError, match="must sum to 1, they sum to"):
        Weights(0.25, 0.25, 0.25, 0.25 + 2e-9)
    with pytest.raises(ValueError, match="weight of freshness must be"):
        Weights(0.5, -0.1, 0.3, 0.3)


def test_weights_from_a_mapping_name_unknown_and_missing_dimensions() -> None:
    assert Weights.from_dict({"completeness": 1, "freshness": 0, "reliability": 0, "representativeness": 0}) == (
        Weights(1.0, 0.0, 0.0, 0.0)
    )
    with pytest.raises(ValueError, match="unknown weight 'recency'"):
        Weights.from_dict({"recency": 0.25, "completeness": 0.75})
    with pytest.raises(ValueError, match="weights lack reliability, representativeness"):
        Weights.from_dict({"completeness": 0.5, "freshness": 0.5})


# --- parameters and presets -------------------------------------------------------------------------------------


def test_default_parameters() -> None:
    assert DEFAULT.weights == Weights(0.25, 0.25, 0.25, 0.25)
    assert (DEFAULT.freshness_lambda, DEFAULT.tau_c, DEFAULT.tau_r, DEFAULT.ks_cap) == (0.02, 0.6, 0.7, 0.30)
    assert (DEFAULT.sufficient, DEFAULT.degraded) == (0.8, 0.5)
    assert DEFAULT.reliability_metric == "brier_skill"
    assert (DEFAULT.min_segment_size, DEFAULT.recent_labels) == (200, 500)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tau_c": 0.0}, r"tau_c must be a finite number in \(0.0, 1.0\], got 0.0"),
        ({"tau_r": 1.2}, r"tau_r must be a finite number in \(0.0, 1.0\]"),
        ({"ks_cap": -0.3}, "ks_cap must be"),
        ({"freshness_lambda": -0.01}, "freshness_lambda must be"),
        ({"freshness_lambda": math.inf}, "freshness_lambda must be"),
        ({"sufficient": 0.5, "degraded": 0.5}, r"degraded threshold \(0.5\) must be below the sufficient one"),
        ({"sufficient": 1.1}, "sufficient must be"),
        ({"reliability_metric": "auc"}, "reliability_metric must be one of f1, brier_skill, calibration, got 'auc'"),
        ({"min_segment_size": 0}, "min_segment_size must be a positive integer, got 0"),
        ({"min_segment_size": 20.5}, "min_segment_size must be a positive integer"),
        ({"recent_labels": True}, "recent_labels must be a positive integer, got True"),
        ({"weights": {"completeness": 1.0}}, "weights lack freshness"),
        ({"weights": [0.25] * 4}, "weights must be a mapping"),
    ],
)
def test_parameters_are_validated(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SufficiencyParameters(**overrides)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        DEFAULT.replace(**overrides)


def test_parameters_round_trip_through_json() -> None:
    for name, params in PRESETS.items():
        text = json.dumps(params.to_dict())
        assert SufficiencyParameters.from_dict(json.loads(text)) == params, name
    custom = preset("credit", tau_r=0.2, reliability_metric="calibration", min_segment_size=50, sufficient=0.9)
    assert SufficiencyParameters.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom


def test_from_dict_fills_defaults_and_names_unknown_keys() -> None:
    assert SufficiencyParameters.from_dict({"tau_r": 0.3}) == DEFAULT.replace(tau_r=0.3)
    with pytest.raises(ValueError, match="unknown parameter 'gamma', 'tau_x'; expected some of weights"):
        SufficiencyParameters.from_dict({"tau_x": 0.1, "gamma": 2, "tau_c": 0.5})
    with pytest.raises(ValueError, match="must be a mapping"):
        SufficiencyParameters.from_dict([("tau_c", 0.5)])  # type: ignore[arg-type]


def test_replace_validates_and_accepts_weights_as_a_mapping() -> None:
    changed = DEFAULT.replace(
        weights={"completeness": 0.4, "freshness": 0.1, "reliability": 0.4, "representativeness": 0.1}
    )
    assert changed.weights == Weights(0.4, 0.1, 0.4, 0.1)
    assert DEFAULT.weights == Weights()  # the original is untouched
    with pytest.raises(ValueError, match="unknown parameter 'lambda'"):
        DEFAULT.replace(**{"lambda": 0.1})


def test_presets() -> None:
    assert set(PRESETS) == {"default", "fraud", "credit"}
    fraud, credit = PRESETS["fraud"], PRESETS["credit"]
    assert fraud.weights == Weights(0.20, 0.30, 0.30, 0.20) and fraud.freshness_lambda == 0.02
    assert credit.weights == Weights(0.25, 0.20, 0.25, 0.30) and credit.freshness_lambda == 0.005
    assert PRESETS["default"].freshness_lambda == 0.02
    assert all((p.tau_c, p.tau_r) == (0.6, 0.7) for p in PRESETS.values())
    assert preset("fraud", tau_r=0.15).tau_r == 0.15 and PRESETS["fraud"].tau_r == 0.7
    with pytest.raises(ValueError, match="unknown preset 'aml'; valid presets: default, fraud, credit"):
        preset("aml")
    with pytest.raises(TypeError):
        PRESETS["mine"] = DEFAULT  # type: ignore[index]


# --- levels, gate factor and composite --------------------------------------------------------------------------


def test_levels_and_their_exit_codes() -> None:
    assert [level.exit_code for level in Level] == [0, 1, 2]
    assert Level("DEGRADED") is Level.DEGRADED and str(Level.INSUFFICIENT) == "INSUFFICIENT"
    cases = {1.0: "SUFFICIENT", 0.8: "SUFFICIENT", 0.7999999: "DEGRADED", 0.5: "DEGRADED", 0.4999999: "INSUFFICIENT"}
    assert {score: level_of(score, DEFAULT).value for score in cases} == cases
    assert level_of(0.0, DEFAULT) is Level.INSUFFICIENT
    strict = DEFAULT.replace(sufficient=0.9, degraded=0.6)
    assert (level_of(0.85, strict), level_of(0.55, strict)) == (Level.DEGRADED, Level.INSUFFICIENT)
    with pytest.raises(ValueError, match="finite number, got nan"):
        level_of(math.nan, DEFAULT)


def test_a_score_exactly_on_a_threshold_is_not_classed_down_by_rounding() -> None:
    # 0.25 * (0.6 + 1.0 + 0.7 + 0.9) is 0.8 exactly, but evaluates to 0.7999999999999999 in binary.
    result = composite(Dimensions(0.6, 1.0, 0.7, 0.9), preset("default"))
    assert result.score < 0.8 and result.score == pytest.approx(0.8, abs=1e-15)
    assert result.level is Level.SUFFICIENT
    assert "is enough" in requirements(result.dimensions, preset("default"))[0].message
    # The alerts check a level against its score with the same rule, so the report's level is accepted.
    assert not level_alerts(["SUFFICIENT"], [result.score])[0].raised_now
    on_degraded = composite(Dimensions(0.6, 0.3, 0.7, 0.4), preset("default"))  # 0.25 * 2.0 = 0.5
    assert on_degraded.level is Level.DEGRADED
    assert level_of(0.8 - 1e-6, DEFAULT) is Level.DEGRADED  # a real shortfall still counts


@settings(max_examples=300, deadline=None)
@given(
    dims=st.tuples(*[st.integers(0, 1000)] * 4),
    weights=st.lists(st.integers(0, 100), min_size=3, max_size=3).filter(lambda w: sum(w) <= 100),
    taus=st.tuples(st.integers(1, 100), st.integers(1, 100)),
)
def test_scores_on_a_threshold_land_in_the_better_level(
    dims: tuple[int, int, int, int], weights: list[int], taus: tuple[int, int]
) -> None:
    # Decimal dimensions, weights and gate thresholds; the exact score (in rationals) is made the threshold.
    c, f, r, p = (Fraction(d, 1000) for d in dims)
    w = [Fraction(x, 100) for x in weights] + [1 - Fraction(sum(weights), 100)]
    tau_c, tau_r = (Fraction(t, 100) for t in taus)
    exact = min(1, c / tau_c) * min(1, r / tau_r) * (w[0] * c + w[1] * f + w[2] * r + w[3] * p)
    assume(Fraction(1, 1000) <= exact <= 1)
    values = Dimensions(*(float(x) for x in (c, f, r, p)))
    params = SufficiencyParameters(
        weights=Weights(*(float(x) for x in w)), tau_c=float(tau_c), tau_r=float(tau_r), degraded=float(exact) / 2
    )
    assert composite(values, params.replace(sufficient=float(exact))).level is Level.SUFFICIENT
    if exact < 1:
        assert composite(values, params.replace(sufficient=1.0, degraded=float(exact))).level is Level.DEGRADED
    if exact + Fraction(1, 10**6) <= 1:
        # Just above the score, the threshold is not reached: the tolerance covers rounding, not shortfalls.
        above = params.replace(sufficient=float(exact + Fraction(1, 10**6)))
        assert composite(values, above).level is not Level.SUFFICIENT


def test_gate_factor_by_hand() -> None:
    assert gate_factor(0.3, 0.7, DEFAULT) == 0.5  # C below tau_c = 0.6
    assert gate_factor(0.6, 0.35, DEFAULT) == 0.5  # R below tau_r = 0.7
    assert gate_factor(0.3, 0.35, DEFAULT) == 0.25
    assert gate_factor(1.0, 1.0, DEFAULT) == 1.0 and gate_factor(0.9, 0.8, DEFAULT) == 1.0
    assert gate_factor(0.0, 1.0, DEFAULT) == 0.0


def test_composite_by_hand() -> None:
    result = composite(Dimensions(0.3, 0.8, 0.35, 0.6), DEFAULT)
    # A = (0.3 / 0.6) * (0.35 / 0.7) = 0.25; weighted sum = (0.3 + 0.8 + 0.35 + 0.6) / 4 = 0.5125.
    assert result.gate_factor == pytest.approx(0.25)
    assert result.weighted_sum == pytest.approx(0.5125)
    assert result.score == pytest.approx(0.128125)
    assert result.level is Level.INSUFFICIENT
    assert result.contributions == pytest.approx(
        {"completeness": 0.01875, "freshness": 0.05, "reliability": 0.021875, "representativeness": 0.0375}
    )
    assert sum(result.contributions.values()) == pytest.approx(result.score)
    document = json.loads(json.dumps(result.to_dict()))
    assert document["S"] == result.score and document["level"] == "INSUFFICIENT"
    assert document["dimensions"]["freshness"] == 0.8


def test_composite_of_the_papers_fraud_configuration() -> None:
    result = composite(PAPER_START, PAPER)
    assert result.gate_factor == pytest.approx(0.1333 / 0.15)
    assert result.weighted_sum == pytest.approx(0.2 + 0.3 + 0.3 * 0.1333 + 0.2)
    assert round(result.score, 3) == 0.658 and result.level is Level.DEGRADED


def test_composite_edge_cases() -> None:
    assert composite(Dimensions(1.0, 1.0, 1.0, 1.0), DEFAULT).score == 1.0
    nothing_labelled = composite(Dimensions(0.0, 1.0, 1.0, 1.0), DEFAULT)  # a high F and P cannot mask C = 0
    assert (nothing_labelled.score, nothing_labelled.gate_factor, nothing_labelled.weighted_sum) == (0.0, 0.0, 0.75)
    assert nothing_labelled.level is Level.INSUFFICIENT
    assert composite(Dimensions(0.0, 0.0, 0.0, 0.0), DEFAULT).score == 0.0


def test_score_arrays_agree_with_composite() -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(size=(4, 300))
    values[:, :20] = rng.integers(0, 2, size=(4, 20))  # corners
    for params in (DEFAULT, PAPER, PRESETS["credit"]):
        scores, gates = score_arrays(*values, params)
        expected = [composite(Dimensions(*column), params) for column in values.T]
        np.testing.assert_allclose(scores, [e.score for e in expected], rtol=0, atol=1e-15)
        np.testing.assert_allclose(gates, [e.gate_factor for e in expected], rtol=0, atol=1e-15)
        assert np.all((scores >= 0) & (scores <= 1 + 1e-12))


# --- requirements -----------------------------------------------------------------------------------------------


def _by_name(dims: Dimensions, params: SufficiencyParameters, target: float | None = None) -> dict:
    return {item.dimension: item for item in requirements(dims, params, target)}


def test_requirements_of_the_papers_configuration() -> None:
    items = _by_name(PAPER_START, PAPER)
    # With R >= tau_r the gate opens: S = 0.7 + 0.3 R reaches 0.8 at R = 1/3.
    assert items["reliability"].needed == pytest.approx(1 / 3, abs=1e-15)
    assert items["reliability"].message == "raise reliability from 0.133 to 0.333 (others unchanged) to reach S = 0.80"
    for name in ("completeness", "freshness", "representativeness"):
        assert items[name].needed is None and not items[name].achievable
        assert items[name].message == f"{name} cannot reach S = 0.80 by itself: even at 1.000, S = 0.658"


def test_a_requirement_names_the_gate_that_caps_the_score() -> None:
    # Gate factors 0.5 (C) and 0.667 (R); at F = 1 the weighted sum is 0.06 + 0.3 + 0.03 + 0.2 = 0.59.
    items = _by_name(Dimensions(0.3, 1.0, 0.1, 1.0), PAPER)
    assert items["freshness"].message == (
        "freshness cannot reach S = 0.80 by itself: even at 1.000, S = 0.197 (the gate caps S at 0.333: "
        "completeness 0.300 is below tau_c 0.60 and reliability 0.100 is below tau_r 0.15)"
    )
    assert items["reliability"].message.endswith("(the gate caps S at 0.500: completeness 0.300 is below tau_c 0.60)")
    assert items["completeness"].message.endswith("(the gate caps S at 0.667: reliability 0.100 is below tau_r 0.15)")


def test_requirement_on_the_quadratic_piece_below_tau() -> None:
    # C = 0.3: S(c) = (c / 0.6) (0.75 + 0.25 c); S(0.6) = 0.9 >= 0.8, so 0.25 c^2 + 0.75 c - 0.48 = 0.
    needed = _by_name(Dimensions(0.3, 1.0, 1.0, 1.0), DEFAULT)["completeness"].needed
    assert needed == pytest.approx((-0.75 + math.sqrt(0.75**2 + 4 * 0.25 * 0.48)) / 0.5, abs=1e-12)
    # Same shape for R: S(r) = (r / 0.7) (0.75 + 0.25 r); 0.25 r^2 + 0.75 r - 0.56 = 0.
    needed = _by_name(Dimensions(1.0, 1.0, 0.2, 1.0), DEFAULT)["reliability"].needed
    assert needed == pytest.approx((-0.75 + math.sqrt(0.75**2 + 4 * 0.25 * 0.56)) / 0.5, abs=1e-12)


def test_requirement_on_the_linear_piece_above_tau() -> None:
    # F = 0.4: S(0.6) = 0.15 + 0.1 + 0.5 = 0.75 < 0.8, so 0.25 c + 0.6 = 0.8 beyond tau_c.
    assert _by_name(Dimensions(0.5, 0.4, 1.0, 1.0), DEFAULT)["completeness"].needed == pytest.approx(0.8, abs=1e-12)
    item = _by_name(Dimensions(1.0, 0.1, 1.0, 1.0), DEFAULT)["freshness"]  # S = 0.75 + 0.25 F
    assert item.needed == pytest.approx(0.2, abs=1e-12)
    assert item.message == "raise freshness from 0.100 to 0.200 (others unchanged) to reach S = 0.80"


def test_requirement_when_tau_is_one_is_quadratic_over_the_whole_range() -> None:
    params = DEFAULT.replace(tau_c=1.0)  # S(c) = c (0.75 + 0.25 c)
    needed = _by_name(Dimensions(0.5, 1.0, 1.0, 1.0), params)["completeness"].needed
    assert needed == pytest.approx((-0.75 + math.sqrt(0.75**2 + 4 * 0.25 * 0.8)) / 0.5, abs=1e-12)


def test_requirements_when_already_sufficient_give_the_headroom() -> None:
    items = _by_name(Dimensions(1.0, 1.0, 1.0, 1.0), PAPER)
    assert items["representativeness"].needed == 0.0  # 0.2 + 0.3 + 0.3 = 0.8 without it
    assert items["freshness"].needed == pytest.approx(1 / 3, abs=1e-12)
    assert items["completeness"].message.startswith("completeness 1.000 is enough: S stays at or above 0.80 down to")
    assert all(item.needed is not None and item.needed <= item.current for item in items.values())


def test_requirement_of_a_dimension_with_zero_weight() -> None:
    params = DEFAULT.replace(
        weights={"completeness": 0.5, "freshness": 0.0, "reliability": 0.5, "representativeness": 0}
    )
    assert _by_name(Dimensions(0.9, 0.1, 0.9, 0.1), params)["freshness"].needed == 0.0
    assert _by_name(Dimensions(0.5, 0.1, 0.9, 0.1), params)["freshness"].needed is None


def test_requirements_for_another_target() -> None:
    items = _by_name(PAPER_START, PAPER, target=0.5)
    assert all(item.target == 0.5 and item.needed is not None for item in items.values())
    assert "S stays at or above 0.50" in items["freshness"].message
    for bad in (0.0, 1.5, math.nan):
        with pytest.raises(ValueError, match="target must be"):
            requirements(PAPER_START, PAPER, target=bad)


def test_requirements_plugged_back_in_reach_the_target_and_are_minimal() -> None:
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(400):
        params = PRESETS[rng.choice(list(PRESETS))].replace(
            tau_c=float(rng.uniform(0.05, 1.0)), tau_r=float(rng.uniform(0.05, 1.0))
        )
        dims = Dimensions(*rng.uniform(size=4))
        target = float(rng.choice([params.sufficient, params.degraded, rng.uniform(0.05, 1.0)]))
        for item in requirements(dims, params, target):
            at_one, at_needed, just_below = (
                composite(dims.replace(**{item.dimension: x}), params).score
                for x in (1.0, item.needed or 0.0, max(0.0, (item.needed or 0.0) - 1e-9))
            )
            if item.needed is None:
                assert at_one < target
                continue
            checked += 1
            assert reaches(at_needed, target)  # at or above it, up to rounding (as the levels read it)
            if item.needed > 0.0:
                assert abs(at_needed - target) < 1e-9  # exact, not a grid search
                assert just_below < target  # and the smallest
    assert checked > 400


# --- level changes ----------------------------------------------------------------------------------------------


def test_only_a_downward_move_is_a_downgrade() -> None:
    first = level_change(None, Level.SUFFICIENT)
    assert (first.previous, first.current, first.downgrade) == (None, Level.SUFFICIENT, False)
    assert level_change(Level.SUFFICIENT, Level.DEGRADED).downgrade
    assert level_change("DEGRADED", "INSUFFICIENT").downgrade
    assert level_change("SUFFICIENT", "INSUFFICIENT").message == (
        "evidence sufficiency fell from SUFFICIENT to INSUFFICIENT"
    )
    assert not level_change("INSUFFICIENT", "DEGRADED").downgrade
    assert not level_change("DEGRADED", "DEGRADED").downgrade
    assert (
        level_change("DEGRADED", "SUFFICIENT").message == "evidence sufficiency recovered from DEGRADED to SUFFICIENT"
    )
    with pytest.raises(ValueError, match="unknown level 'OK'; expected one of SUFFICIENT, DEGRADED, INSUFFICIENT"):
        level_change("OK", "DEGRADED")
