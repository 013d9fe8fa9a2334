"""The dimensions of an evidence frame, overall and per segment: a hand-computed window, segments below their
minimum size, as-of reading of late labels, references per segment, missing oracles, empty windows, input
validation, and agreement of the grouped computation with the single-array functions."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from banditgate.monitoring.dimensions import (
    DimensionSet,
    calibration_reliability,
    completeness,
    freshness,
    reliability,
    representativeness,
    segment_dimensions,
    window_dimensions,
)

AS_OF = pd.Timestamp("2026-01-21", tz="UTC")
NAN = math.nan

#: issuer_country, action_id, labelled, label, label_observed_at, score
ROWS = [
    ("NL", "route_a", True, 1.0, "2026-01-11", 0.9),
    ("NL", "route_a", True, 0.0, "2026-01-11", 0.2),
    ("NL", "route_a", True, 1.0, "2026-01-13", 0.6),
    ("NL", "route_a", False, NAN, None, 0.4),
    ("NL", "route_b", True, 0.0, "2026-01-01", 0.1),
    ("NL", "route_b", False, NAN, None, NAN),
    ("DE", "route_a", True, 1.0, "2026-02-01", 0.2),  # observed after as_of: not yet arrived
    ("DE", "route_a", True, 0.0, "2026-01-19", 0.3),
    ("DE", "route_a", False, NAN, None, 0.7),
    ("DE", "route_a", False, NAN, None, 0.5),
    (None, "route_a", False, NAN, None, 0.5),
]
REFERENCE = [0.9, 0.2, 0.6, 0.4, 0.1, 0.2, 0.3, 0.7, 0.5, 0.5]
PARAMS: dict[str, Any] = {"as_of": AS_OF, "lambda_per_day": 0.02}


def hand_frame() -> pd.DataFrame:
    country, action, labelled, label, observed, score = zip(*ROWS, strict=True)
    return pd.DataFrame(
        {
            "decided_at": pd.Timestamp("2026-01-01", tz="UTC"),
            "labelled": labelled,
            "label": label,
            "label_observed_at": pd.to_datetime(list(observed), utc=True),
            "score": score,
            "issuer_country": country,
            "action_id": action,
        }
    )


def random_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    decided = AS_OF - pd.to_timedelta(rng.uniform(0, 40, n), unit="D")
    observed = pd.Series(decided + pd.to_timedelta(rng.exponential(10, n), unit="D"))
    labelled = rng.random(n) < 0.8
    score = rng.beta(2, 8, n)
    score[rng.random(n) < 0.05] = NAN
    return pd.DataFrame(
        {
            "decided_at": decided,
            "labelled": labelled,
            "label": np.where(labelled, (rng.random(n) < 0.3).astype(float), NAN),
            "label_observed_at": observed.where(labelled),
            "score": score,
            "issuer_country": rng.choice(["DE", "FR", "NL", "US"], n),
            "action_id": rng.choice(["route_a", "route_b", "route_c", "retry", "3ds"], n),
        }
    )


def test_window_dimensions_by_hand() -> None:
    dims = window_dimensions(hand_frame(), reference_scores=REFERENCE, **PARAMS)
    # 5 labels by as_of out of 11 decisions.
    assert dims.completeness.value == pytest.approx(5 / 11)
    assert dims.completeness.detail["labelled"] == 5
    # Labels at Jan 1, 11, 11, 13, 19: median Jan 11, 10 days before as_of.
    assert dims.freshness.value == pytest.approx(math.exp(-0.2))
    assert dims.freshness.n == 5
    # Labelled and scored by as_of: y 1 0 1 0 0, p .9 .2 .6 .1 .3: TP 2, no FP, no FN (the late positive at
    # p = .2 would have been a false negative).
    assert dims.reliability.value == 1.0
    assert (dims.reliability.detail["tp"], dims.reliability.detail["fn"]) == (2, 0)
    # The finite production scores are the reference itself.
    assert dims.representativeness.value == 1.0
    assert dims.representativeness.n == 10
    json.dumps(dims.to_dict())


def test_segment_dimensions_by_hand() -> None:
    result = segment_dimensions(hand_frame(), ["issuer_country", "action_id"], min_size=3, **PARAMS)
    assert [(r.segment, r.decisions, r.counted, r.reason) for r in result] == [
        ({"issuer_country": "DE", "action_id": "route_a"}, 4, True, None),
        ({"issuer_country": "NL", "action_id": "route_a"}, 4, True, None),
        ({"issuer_country": "NL", "action_id": "route_b"}, 2, False, "below minimum size 2 < 3"),
        ({"issuer_country": None, "action_id": "route_a"}, 1, False, "below minimum size 1 < 3"),
    ]
    de, nl_a, nl_b, unknown = (r.dimensions for r in result)
    assert de.completeness.value == 0.25
    assert de.freshness.value == pytest.approx(math.exp(-0.04))
    assert de.reliability.detail["reason"].startswith("no positive labels")
    assert nl_a.completeness.value == 0.75
    assert nl_a.freshness.value == pytest.approx(math.exp(-0.2))
    assert nl_a.reliability.value == 1.0
    # Below the minimum size, still measured.
    assert nl_b.completeness.value == 0.5
    assert nl_b.freshness.value == pytest.approx(math.exp(-0.4))
    assert unknown.completeness.value == 0.0
    assert unknown.freshness.detail["reason"] == "no confirmed labels by as_of"
    assert unknown.reliability.detail["reason"] == "no labelled decisions"
    for r in result:
        assert r.dimensions.representativeness.detail["reason"] == "no reference scores"
    json.dumps([r.to_dict() for r in result])


def test_segment_representativeness_against_a_shared_reference_by_hand() -> None:
    result = segment_dimensions(
        hand_frame(), ["issuer_country", "action_id"], min_size=1, reference_scores=REFERENCE, **PARAMS
    )
    nl_a = result[1].dimensions.representativeness
    # NL route_a scores .2 .4 .6 .9 against the reference: the largest gap is at 0.5 (0.5 vs 0.7).
    assert nl_a.detail["ks"] == pytest.approx(0.2)
    assert nl_a.detail["ks"] == pytest.approx(ks_2samp(REFERENCE, [0.9, 0.2, 0.6, 0.4]).statistic)
    assert nl_a.value == pytest.approx(1 - 0.2 / 0.3)
    assert result[2].dimensions.representativeness.n == 1  # NL route_b: one decision has no score


def test_references_per_segment() -> None:
    frame = hand_frame()
    by_key = {("NL", "route_a"): [0.2, 0.4, 0.6, 0.9], ("DE", "route_a"): [0.0, 0.05]}
    result = segment_dimensions(frame, ["issuer_country", "action_id"], min_size=1, reference_scores=by_key, **PARAMS)
    p = [r.dimensions.representativeness for r in result]
    assert p[0].detail["ks"] == 1.0  # DE: every score above the reference
    assert p[1].value == 1.0
    assert p[2].detail["reason"] == p[3].detail["reason"] == "no reference scores for this segment"
    by_country = segment_dimensions(frame, ["issuer_country"], min_size=1, reference_scores={"NL": REFERENCE}, **PARAMS)
    assert [r.segment["issuer_country"] for r in by_country] == ["DE", "NL", None]
    assert by_country[1].dimensions.representativeness.defined
    assert not by_country[0].dimensions.representativeness.defined
    with pytest.raises(ValueError, match="not a mapping"):
        window_dimensions(frame, reference_scores=by_key, **PARAMS)


def test_the_window_is_the_segment_of_everything() -> None:
    frame = random_frame(3000, seed=1).assign(everything="all")
    reference = np.random.default_rng(2).beta(2, 7, 5000)
    window = window_dimensions(frame, reference_scores=reference, **PARAMS)
    (whole,) = segment_dimensions(frame, ["everything"], min_size=1, reference_scores=reference, **PARAMS)
    assert whole.dimensions.to_dict() == window.to_dict()


@pytest.mark.parametrize("metric", ["f1", "brier_skill", "calibration"])
def test_grouped_measurements_match_the_array_functions(metric: str) -> None:
    frame = random_frame(5000, seed=3)
    reference = np.random.default_rng(4).beta(2, 7, 20_000)
    params = {"n_boot": 200, "seed": 5}
    result = segment_dimensions(
        frame,
        ["issuer_country", "action_id"],
        min_size=200,
        reference_scores=reference,
        reliability_metric=metric,
        reliability_params=params,
        recent=50,
        **PARAMS,
    )
    assert len(result) == 20
    for r in result:
        rows = frame[
            (frame["issuer_country"] == r.segment["issuer_country"]) & (frame["action_id"] == r.segment["action_id"])
        ]
        assert r.decisions == len(rows)
        assert r.counted == (len(rows) >= 200)
        labelled = rows[rows["labelled"] & (rows["label_observed_at"] <= AS_OF)]
        scored = labelled[labelled["score"].notna()]
        expected = DimensionSet(
            completeness=completeness(len(labelled), len(rows)),
            freshness=freshness(labelled["label_observed_at"], AS_OF, 0.02, recent=50),
            reliability=reliability(scored["label"], scored["score"], metric, **params),
            representativeness=representativeness(reference, rows["score"]),
        )
        got = r.dimensions
        assert got.completeness == expected.completeness
        assert got.freshness == expected.freshness
        # Bootstrap replicates depend on the order of the cells, not of the rows: same seed, same interval.
        assert got.reliability.value == pytest.approx(expected.reliability.value)
        assert (got.reliability.low, got.reliability.high) == pytest.approx(
            (expected.reliability.low, expected.reliability.high)
        )
        assert got.reliability.detail["labelled_without_score"] == len(labelled) - len(scored)
        assert got.representativeness.value == pytest.approx(expected.representativeness.value, abs=1e-12)
        assert got.representativeness.detail["ks"] == pytest.approx(expected.representativeness.detail["ks"], abs=1e-12)


def test_reliability_metric_and_parameters_are_forwarded() -> None:
    frame = hand_frame()
    dims = window_dimensions(frame, reliability_metric="calibration", reliability_params={"bins": 2}, **PARAMS)
    expected = calibration_reliability([1, 0, 1, 0, 0], [0.9, 0.2, 0.6, 0.1, 0.3], bins=2)
    assert dims.reliability.value == pytest.approx(expected.value)
    f1_low = window_dimensions(frame, reliability_params={"threshold": 0.25}, **PARAMS).reliability
    assert f1_low.detail["fp"] == 1  # the 0.3-scored negative now counts as predicted positive


def test_a_generation_without_an_oracle() -> None:
    frame = hand_frame().assign(score=NAN)
    dims = window_dimensions(frame, reference_scores=REFERENCE, **PARAMS)
    assert dims.reliability.detail["reason"] == "the labelled decisions have no oracle score"
    assert dims.reliability.n == 5
    assert dims.representativeness.detail["reason"] == "no production scores"
    assert dims.completeness.value == pytest.approx(5 / 11)


def test_an_empty_window() -> None:
    frame = hand_frame().iloc[0:0]
    dims = window_dimensions(frame, reference_scores=REFERENCE, **PARAMS)
    assert [getattr(dims, d).value for d in ("completeness", "freshness", "reliability", "representativeness")] == [
        0.0
    ] * 4
    assert dims.completeness.detail["reason"] == "no decisions in the window"
    assert dims.freshness.detail["reason"] == "no confirmed labels by as_of"
    assert dims.reliability.detail["reason"] == "no labelled decisions"
    assert dims.representativeness.detail["reason"] == "no production scores"
    assert segment_dimensions(frame, ["issuer_country"], min_size=10, **PARAMS) == []


def test_as_of_reads_later_labels_as_not_arrived() -> None:
    frame = hand_frame()
    later = window_dimensions(frame, **{**PARAMS, "as_of": "2026-02-02"})
    assert later.completeness.value == pytest.approx(6 / 11)
    assert later.reliability.detail["fn"] == 1
    earlier = window_dimensions(frame, **{**PARAMS, "as_of": "2026-01-05"})
    assert earlier.completeness.value == pytest.approx(1 / 11)


def bad(frame: pd.DataFrame, **changes: Any) -> pd.DataFrame:
    return frame.assign(**changes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["score"]), "lacks the columns \\['score'\\]"),
        (lambda f: f.assign(labelled=f["labelled"].astype(int)), "'labelled' must be a boolean"),
        (lambda f: f.assign(label=np.where(f["labelled"], 2.0, NAN)), "a label of 0 or 1"),
        (lambda f: f.assign(label=NAN), "a label of 0 or 1"),
        (lambda f: f.assign(label_observed_at=pd.NaT), "needs its label_observed_at"),
        (lambda f: f.assign(label_observed_at=1.0), "must hold datetimes"),
        (lambda f: f.assign(score="high"), "'score' must be a numeric column"),
    ],
)
def test_a_malformed_frame_is_refused(change: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        window_dimensions(change(hand_frame()), **PARAMS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reliability_metric": "auc"}, "unknown reliability metric"),
        ({"reliability_params": {"bins": 3}}, "bad parameters"),
        ({"reliability_params": {"threshold": 2.0}}, "threshold"),
        ({"ks_cap": 0.0}, "ks_cap"),
        ({"confidence": 1.5}, "confidence"),
        ({"recent": 0}, "recent"),
        ({"lambda_per_day": -1.0}, "lambda_per_day"),
        ({"as_of": "yesterday-ish"}, "as_of"),
    ],
)
def test_bad_parameters_are_refused_even_on_an_empty_window(kwargs: dict[str, Any], message: str) -> None:
    empty = hand_frame().iloc[0:0]
    with pytest.raises(ValueError, match=message):
        window_dimensions(empty, **{**PARAMS, **kwargs})
    with pytest.raises(ValueError, match=message):
        segment_dimensions(empty, ["issuer_country"], min_size=1, **{**PARAMS, **kwargs})


def test_bad_segmentation_is_refused() -> None:
    frame = hand_frame()
    with pytest.raises(ValueError, match="not in the evidence frame"):
        segment_dimensions(frame, ["merchant"], min_size=1, **PARAMS)
    with pytest.raises(ValueError, match="at least one segment column"):
        segment_dimensions(frame, [], min_size=1, **PARAMS)
    with pytest.raises(ValueError, match="min_size"):
        segment_dimensions(frame, ["issuer_country"], min_size=0, **PARAMS)
    with pytest.raises(ValueError, match="DataFrame"):
        window_dimensions(frame.to_dict(), **PARAMS)  # type: ignore[arg-type]


def test_segment_values_are_plain_python() -> None:
    frame = hand_frame().assign(bucket=np.int64(3), flag=[True] * 10 + [False])
    result = segment_dimensions(frame, ["bucket", "flag"], min_size=1, **PARAMS)
    assert [r.segment for r in result] == [{"bucket": 3, "flag": False}, {"bucket": 3, "flag": True}]
    assert all(type(r.segment["bucket"]) is int for r in result)
    json.dumps([r.to_dict() for r in result])
