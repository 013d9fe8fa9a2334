"""The learning benchmark's harness on a tiny stream: every learner gets the same transactions and outcome noise,
the computed bounds score 0 and 1, banditgate learns through its own retrain -> promote path, and ``--set``
values are typed by the field they set."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest

from banditgate.pipelines.retrain import RetrainOptions
from banditgate.service.settings import PolicySettings
from benchmarks.learning import (
    BANDITGATE_LEARNERS,
    Stream,
    banditgate_configuration,
    describe,
    gain_fraction,
    parse_setting,
    run_learner,
    summarise,
    vw_available,
)


@pytest.fixture(scope="module")
def runs():
    stream = Stream("none", seed=21, days=3, per_day=200)
    learners = ["uniform", "best", "banditgate"] + (["vw-online", "vw-daily"] if vw_available() else [])
    return {name: run_learner(name, stream) for name in learners}


def test_every_learner_sees_the_same_stream(runs):
    first = runs["uniform"]
    for run in runs.values():
        assert run.stream_sha256 == first.stream_sha256
        assert run.decisions == first.decisions and sum(run.decisions) > 400
        assert run.uniform == first.uniform and run.best == first.best


def test_bounds_and_learners_are_scored(runs):
    assert abs(gain_fraction([runs["uniform"]], 1, 3).value) < 1e-12
    assert gain_fraction([runs["best"]], 1, 3).value == pytest.approx(1.0)
    for name, run in runs.items():
        fraction = gain_fraction([run], 1, 3)
        assert all(math.isfinite(v) for v in (fraction.value, fraction.low, fraction.high)), name
        assert fraction.low <= fraction.value <= fraction.high or fraction.low == fraction.high, name
        assert fraction.value <= 1.0 + 1e-9, name
        # a learner other than the bounds serves neither uniform nor the best action everywhere
        if name not in ("uniform", "best"):
            assert run.policy != run.uniform and run.policy != run.best, name


def test_banditgate_retrains_and_promotes_as_of_each_day_end(runs):
    notes = runs["banditgate"].notes
    assert [n["as_of"][:10] for n in notes] == ["2026-01-06", "2026-01-07"]  # ends of days 1 and 2, not day 3
    assert any("generation" in n for n in notes)  # at least one generation trained and promoted
    # a new user's configuration: the served policy's defaults and the retrain command's, one thread aside
    configuration = runs["banditgate"].configuration
    assert configuration["policy"] == describe(PolicySettings().spec())
    assert configuration["retrain"] == {**describe(RetrainOptions()), "oracle_overrides": {"num_threads": 1}}


def test_settings_are_typed_by_the_field_they_set():
    settings = [
        parse_setting("retrain.gamma_schedule=sqrt"),
        parse_setting("retrain.window=7d"),
        parse_setting("retrain.importance_weighting=true"),
        parse_setting("policy.floor=0.02"),
        parse_setting("softmax:policy.exploration_params.temperature=0.5"),
    ]
    spec, options = banditgate_configuration("softmax", settings)
    assert options.gamma_schedule == "sqrt" and options.window == timedelta(days=7)
    assert options.importance_weighting is True and spec.floor == 0.02
    assert spec.exploration == "softmax" and spec.exploration_params == {"temperature": 0.5}
    other, _ = banditgate_configuration("epsilon-greedy", settings)
    assert other.exploration_params == BANDITGATE_LEARNERS["epsilon-greedy"]["exploration_params"]
    for bad in ("policy.nope=1", "retrain.window=soon", "retrain.importance_weighting=maybe", "policy.floor=2"):
        with pytest.raises(ValueError):
            banditgate_configuration("banditgate", [parse_setting(bad)])
    for bad in ("floor=1", "vw-online:policy.floor=1", "retrain.as_of=2026-01-01", "policy.floor"):
        with pytest.raises(ValueError):
            parse_setting(bad)


def test_summary_counts_complete_streams_and_refuses_different_streams(runs):
    # an interrupted benchmark: a stream that only some learners finished is left out
    unfinished = replace(runs["uniform"], scenario="concept")
    report = summarise([*runs.values(), unfinished], 1, 3)
    assert report["seeds"] == {"none": [21]} and set(report["mean"]["uniform"]) == {"none"}
    assert report["mean"]["uniform"]["none"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert report["mean"]["best"]["none"]["value"] == pytest.approx(1.0)
    if vw_available():
        assert set(report["ratio_to_vw"]) == {"banditgate/vw-online", "banditgate/vw-daily"}
    tampered = replace(runs["banditgate"], stream_sha256="0" * 64)
    with pytest.raises(AssertionError, match="same stream"):
        summarise([*(r for n, r in runs.items() if n != "banditgate"), tampered], 1, 3)
