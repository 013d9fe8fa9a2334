"""Declared context-key treatments: validation, identical encoding at training and serving, every oracle honours
them, the automatic treatment of high-cardinality keys, and feature importance."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import pytest

from banditgate.policies.actions import Action
from banditgate.policies.oracles import FeatureSpace, LightGBMOracle, RiverOracle, SklearnOracle, load_oracle
from banditgate.policies.oracles.features import (
    HIGH_CARDINALITY,
    MAX_DECLARED_KEYS,
    MAX_KEY_LENGTH,
    MIN_CATEGORY_ROWS,
    KeyTreatment,
    bucket,
    parse_features,
    records_to_frame,
)

ACTIONS = [Action("a", {"fee": 1.0}), Action("b", {"fee": 2.0})]


def frame_of(contexts: list[dict], actions: list[Action] | None = None) -> pd.DataFrame:
    actions = actions or [ACTIONS[i % 2] for i in range(len(contexts))]
    return records_to_frame(contexts, actions)


def assert_serving_encodes_as_training(space: FeatureSpace, contexts: list[dict]) -> None:
    for context in contexts:
        by_decision = space.transform_decision(context, ACTIONS)
        by_frame = space.transform_frame(records_to_frame([context] * len(ACTIONS), ACTIONS))
        np.testing.assert_array_equal(by_decision, by_frame)


# -- validation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"bin": "ordinal"}, "features['bin']: unknown treatment 'ordinal'; allowed: numeric, categorical, hashed"),
        ({"bin": 3}, "features['bin']: a treatment is one of numeric, categorical, hashed, excluded or an object"),
        ({"bin": {"treatment": "hashed", "buckets": 1}}, "buckets must be an integer in [2, 65536], got 1"),
        ({"bin": {"treatment": "hashed", "buckets": 10**9}}, "buckets must be an integer in [2, 65536]"),
        ({"bin": {"treatment": "hashed", "buckets": 8.0}}, "buckets must be an integer"),
        ({"bin": {"treatment": "hashed", "buckets": True}}, "buckets must be an integer"),
        ({"bin": {"treatment": "numeric", "buckets": 8}}, "buckets apply to hashed keys only"),
        ({"bin": {"treatment": "hashed", "salt": "x"}}, "unknown field 'salt'; allowed: treatment, buckets"),
        ({"bin": {"buckets": 8}}, "treatment must be one of"),
        ({"": "numeric"}, "a key must be a string of 1 to 128 characters"),
        ({"k" * (MAX_KEY_LENGTH + 1): "numeric"}, "a key must be a string of 1 to 128 characters"),
        ({f"k{i}": "numeric" for i in range(MAX_DECLARED_KEYS + 1)}, f"at most {MAX_DECLARED_KEYS}"),
        (["bin"], "features must be an object"),
    ],
)
def test_declarations_are_validated_strictly(declared: object, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_features(declared)
    assert message in str(error.value)


def test_declarations_have_a_canonical_form() -> None:
    parsed = parse_features({"bin": "hashed", "mid": {"treatment": "hashed", "buckets": 8}, "x": "excluded"})
    assert parsed == {
        "bin": KeyTreatment("hashed", 64),
        "mid": KeyTreatment("hashed", 8),
        "x": KeyTreatment("excluded"),
    }
    assert LightGBMOracle(features=parsed_json(parsed)).features == {
        "bin": {"treatment": "hashed", "buckets": 64},
        "mid": {"treatment": "hashed", "buckets": 8},
        "x": "excluded",
    }
    with pytest.raises(ValueError, match="unknown treatment"):
        SklearnOracle(features={"bin": "bogus"})
    with pytest.raises(ValueError, match="unknown treatment"):
        RiverOracle(features={"bin": "bogus"})


def parsed_json(parsed: dict[str, KeyTreatment]) -> dict:
    return {key: treatment.to_json() for key, treatment in parsed.items()}


# -- each treatment: training and serving encode alike -------------------------------------------------------------

MESSY = [
    {"amount": 1.5, "bin": "411111", "hour": 13, "mid": "m1"},
    {"amount": "12", "bin": 411111, "hour": 13.0, "mid": None},
    {"amount": True, "bin": "999999", "hour": "13", "mid": "never-seen"},
    {"bin": None, "hour": None},
    {"amount": None, "bin": 5.5, "hour": 7, "mid": "m2"},
]


def test_declared_treatments_encode_alike_in_training_and_serving() -> None:
    training = [{"amount": float(i), "bin": f"4{i % 7}", "hour": i % 24, "mid": f"m{i % 3}"} for i in range(60)]
    declared = parse_features({"amount": "numeric", "bin": "hashed", "hour": "categorical", "mid": "excluded"})
    space = FeatureSpace.fit(frame_of(training), declared)
    assert "c:mid" not in space.columns  # excluded
    assert space.hashed == {"c:bin": 64}
    assert space.categorical["c:hour"] == sorted(str(h) for h in range(24))  # numbers as categories
    assert "c:amount" in space.numeric
    assert_serving_encodes_as_training(space, MESSY)
    row = dict(zip(space.columns, space.transform_decision(MESSY[1], ACTIONS[:1])[0], strict=True))
    # A string in a declared numeric column is missing in both paths (training coerced "12" to 12 before).
    assert np.isnan(row["c:amount"])
    assert row["c:bin"] == bucket("411111", 64) == zlib.crc32(b"411111") % 64
    assert row["c:hour"] == space.categorical["c:hour"].index("13")
    unseen = dict(zip(space.columns, space.transform_decision(MESSY[2], ACTIONS[:1])[0], strict=True))
    assert unseen["c:bin"] == bucket("999999", 64)  # an unseen category still lands in a bucket
    assert unseen["c:amount"] == 1.0


def test_the_space_round_trips_with_its_declaration_and_old_spaces_still_load() -> None:
    training = [{"bin": f"b{i % 50}", "mid": "m", "country": "NL"} for i in range(100)]
    space = FeatureSpace.fit(frame_of(training), parse_features({"bin": "hashed", "mid": "excluded"}))
    restored = FeatureSpace.from_dict(space.to_dict())
    assert restored.to_dict() == space.to_dict()
    assert restored.features == {"bin": {"treatment": "hashed", "buckets": 64}, "mid": "excluded"}
    for context in [{"bin": "b3", "country": "NL"}, {"bin": "zz", "country": "FR"}]:
        np.testing.assert_array_equal(
            restored.transform_decision(context, ACTIONS), space.transform_decision(context, ACTIONS)
        )
    old = FeatureSpace.from_dict({"numeric": ["a:fee"], "categorical": {"c:country": ["NL"], "action_id": ["a", "b"]}})
    assert np.isnan(old.transform_decision({"country": "FR"}, ACTIONS)[0][old.columns.index("c:country")])


def test_hash_buckets_are_stable_across_processes() -> None:
    code = (
        "from banditgate.policies.oracles.features import bucket; print([bucket(k, 97) for k in ('411111', 'mé', 'x')])"
    )
    seen = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        seen.add(result.stdout.strip())
    assert seen == {str([bucket(k, 97) for k in ("411111", "mé", "x")])}
    assert [bucket(k, 97) for k in ("411111", "mé", "x")] == [
        zlib.crc32(k.encode()) % 97 for k in ("411111", "mé", "x")
    ]


# -- the automatic treatment ---------------------------------------------------------------------------------------


def high_cardinality_contexts(seed: int = 0) -> list[dict]:
    """A key with many categories: a few frequent ones, and many seen a handful of times."""
    rng = np.random.default_rng(seed)
    frequent = [f"f{i}" for i in range(3)]
    rare = [f"r{i}" for i in range(HIGH_CARDINALITY * 2)]
    n = MIN_CATEGORY_ROWS * 3 + len(rare) * 2
    values = [frequent[i % 3] for i in range(MIN_CATEGORY_ROWS * 3)] + rare * 2
    return [
        {"merchant": v, "country": str(rng.choice(["NL", "DE"])), "amount": float(i)} for i, v in enumerate(values)
    ][:n]


def test_rare_categories_of_a_high_cardinality_key_share_one_other_code() -> None:
    contexts = high_cardinality_contexts()
    space = FeatureSpace.fit(frame_of(contexts))
    assert space.categorical["c:merchant"] == ["f0", "f1", "f2"]
    assert space.other == ["c:merchant"]
    assert space.categorical["c:country"] == ["DE", "NL"] and "c:country" not in space.other  # few categories: all
    j = space.columns.index("c:merchant")
    codes = {c: space.transform_decision({"merchant": c}, ACTIONS[:1])[0][j] for c in ("f1", "r5", "unseen")}
    assert codes == {"f1": 1.0, "r5": 3.0, "unseen": 3.0}  # rare in training and unseen alike
    assert np.isnan(space.transform_decision({"merchant": None}, ACTIONS[:1])[0][j])
    assert_serving_encodes_as_training(space, [{"merchant": "r1"}, {"merchant": "f0"}, {"merchant": 3}, {}])
    # A declared categorical keeps every category.
    declared = FeatureSpace.fit(frame_of(contexts), parse_features({"merchant": "categorical"}))
    assert len(declared.categorical["c:merchant"]) == 3 + HIGH_CARDINALITY * 2 and declared.other == []


# -- every oracle honours the declaration -----------------------------------------------------------------------


def logged(n: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    contexts = [
        {"country": str(rng.choice(["NL", "DE"])), "bin": str(rng.integers(100)), "noise": float(rng.random())}
        for _ in range(n)
    ]
    actions = [ACTIONS[i] for i in rng.integers(0, 2, n)]
    p = [0.8 if (c["country"] == "NL") == (a.id == "a") else 0.3 for c, a in zip(contexts, actions, strict=True)]
    rewards = (rng.random(n) < np.array(p)).astype(float)
    return records_to_frame(contexts, actions), rewards, contexts


ORACLES = [
    lambda f: LightGBMOracle(num_boost_round=30, features=f),
    lambda f: SklearnOracle(features=f),
    lambda f: SklearnOracle("random_forest", {"n_estimators": 10, "random_state": 0}, "ordinal", features=f),
    lambda f: RiverOracle(features=f),
]


@pytest.mark.parametrize("make", ORACLES, ids=["lightgbm", "sklearn-onehot", "sklearn-forest", "river"])
def test_every_oracle_honours_the_declaration(make) -> None:
    frame, rewards, contexts = logged()
    declared = {"noise": "excluded", "bin": {"treatment": "hashed", "buckets": 8}}
    oracle = make(declared).fit(frame, rewards)
    assert oracle.hyperparameters()["features"] == {"bin": {"treatment": "hashed", "buckets": 8}, "noise": "excluded"}
    assert "c:noise" not in oracle.space_.columns and oracle.space_.hashed == {"c:bin": 8}
    context = dict(contexts[0])
    # An excluded key changes nothing; two bins in the same bucket score alike; the artifact serves the same.
    base = oracle.predict_decision(context, ACTIONS)
    np.testing.assert_array_equal(oracle.predict_decision({**context, "noise": 123.0}, ACTIONS), base)
    same_bucket = next(str(b) for b in range(1000, 10_000) if bucket(str(b), 8) == bucket(context["bin"], 8))
    np.testing.assert_array_equal(oracle.predict_decision({**context, "bin": same_bucket}, ACTIONS), base)
    restored = load_oracle(oracle.to_bytes())
    assert restored.hyperparameters() == oracle.hyperparameters()
    np.testing.assert_array_equal(restored.predict_decision(context, ACTIONS), base)
    np.testing.assert_allclose(oracle.predict_frame(frame.head(50)), restored.predict_frame(frame.head(50)))


# -- feature importance --------------------------------------------------------------------------------------------


def test_lightgbm_importance_is_gain_per_context_key_action_id_and_action_feature() -> None:
    frame, rewards, _ = logged(3000)
    importance = LightGBMOracle(num_boost_round=30, features={"bin": "excluded"}).fit(frame, rewards)
    importance = importance.feature_importance()
    assert importance.method == "lightgbm_gain"
    assert set(importance.context) == {"country", "noise"}  # the excluded key is not an input
    total = sum(importance.context.values()) + importance.action_id + sum(importance.action_features.values())
    assert total == pytest.approx(1.0)
    # The reward depends on country x action: the country and the action carry most of the gain.
    assert importance.context["country"] + importance.action_id + importance.action_features["fee"] > 0.5
    assert list(importance.context.values()) == sorted(importance.context.values(), reverse=True)  # ranked
    assert importance.to_dict()["context"] == importance.context


def test_importance_where_the_model_has_none_says_why() -> None:
    frame, rewards, _ = logged(600)
    linear = SklearnOracle().fit(frame, rewards).feature_importance()
    assert linear.method is None and "no built-in importance" in linear.reason and linear.context == {}
    river = RiverOracle().fit(frame, rewards).feature_importance()
    assert river.method is None and "river" in river.reason
    forest = SklearnOracle("random_forest", {"n_estimators": 5, "random_state": 0}).fit(frame, rewards)
    shares = forest.feature_importance()
    assert shares.method == "impurity" and set(shares.context) == {"country", "bin", "noise"}
    assert sum(shares.context.values()) + shares.action_id + sum(shares.action_features.values()) == pytest.approx(1)
