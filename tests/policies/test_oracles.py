"""Every oracle passes the same tests: fit, vectorised scoring of a decision, unseen categories, artifacts."""

from __future__ import annotations

import ast
import inspect
import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from banditgate.policies.actions import Action
from banditgate.policies.oracles import (
    ORACLES,
    FeatureSpace,
    LightGBMOracle,
    RewardOracle,
    RiverOracle,
    SklearnOracle,
    load_oracle,
    make_oracle,
    records_to_frame,
    sha256_hex,
)
from banditgate.policies.oracles.river_oracle import MODELS
from banditgate.policies.oracles.sklearn_oracle import ESTIMATORS

ACTIONS = [Action("route_a", {"fee_bps": 10}), Action("route_b", {"fee_bps": 14}), Action("3ds", {"fee_bps": 2})]


def authorisation_probability(context: dict, action: Action) -> float:
    """Route B wins in NL, 3-D Secure wins for large amounts elsewhere, route A otherwise."""
    if context["issuer_country"] == "NL":
        return 0.9 if action.id == "route_b" else 0.4
    if context["amount_eur"] > 200:
        return 0.85 if action.id == "3ds" else 0.3
    return 0.8 if action.id == "route_a" else 0.45


def logged_data(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, list[dict], list[Action]]:
    rng = np.random.default_rng(seed)
    contexts = [
        {
            "amount_eur": float(rng.lognormal(4, 1)),
            "issuer_country": str(rng.choice(["NL", "DE", "FR"])),
            "is_recurring": bool(rng.random() < 0.3),
            "card_brand": None if rng.random() < 0.1 else str(rng.choice(["visa", "mastercard"])),
        }
        for _ in range(n)
    ]
    actions = [ACTIONS[i] for i in rng.integers(0, len(ACTIONS), n)]
    rewards = np.array(
        [float(rng.random() < authorisation_probability(c, a)) for c, a in zip(contexts, actions, strict=True)]
    )
    return records_to_frame(contexts, actions), rewards, contexts, actions


def _oracles() -> list[RewardOracle]:
    return [
        LightGBMOracle(num_boost_round=60),
        SklearnOracle(),
        SklearnOracle("hist_gradient_boosting", {"max_iter": 60}, encoding="ordinal"),
        RiverOracle(),
    ]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, list[dict], list[Action]]:
    return logged_data(6000)


@pytest.fixture(scope="module", params=_oracles(), ids=lambda o: f"{o.kind}-{getattr(o, 'encoding', '')}")
def fitted(request: pytest.FixtureRequest, data) -> RewardOracle:
    frame, rewards, _, _ = data
    return request.param.fit(frame, rewards)


def test_every_oracle_kind_is_covered() -> None:
    assert {o.kind for o in _oracles()} == set(ORACLES)


@pytest.mark.parametrize(
    ("context", "best"),
    [
        ({"amount_eur": 50.0, "issuer_country": "NL", "is_recurring": False, "card_brand": "visa"}, "route_b"),
        ({"amount_eur": 500.0, "issuer_country": "DE", "is_recurring": False, "card_brand": "visa"}, "3ds"),
        ({"amount_eur": 30.0, "issuer_country": "FR", "is_recurring": True, "card_brand": "mastercard"}, "route_a"),
    ],
)
def test_learns_that_the_best_action_differs_by_segment(fitted: RewardOracle, context: dict, best: str) -> None:
    scores = fitted.predict_decision(context, ACTIONS)
    assert scores.shape == (len(ACTIONS),)
    assert ACTIONS[int(np.argmax(scores))].id == best, scores


def test_decision_scoring_matches_frame_scoring(fitted: RewardOracle, data) -> None:
    _, _, contexts, _ = data
    context = contexts[0]
    frame = records_to_frame([context] * len(ACTIONS), ACTIONS)
    np.testing.assert_allclose(fitted.predict_decision(context, ACTIONS), fitted.predict_frame(frame), rtol=1e-9)


def test_unseen_categories_missing_keys_and_wrong_types_still_score(fitted: RewardOracle) -> None:
    context = {"issuer_country": "ZZ", "card_brand": 7, "amount_eur": "not-a-number", "new_field": "x"}
    actions = [Action("never_seen_action", {"fee_bps": None, "other": "y"}), ACTIONS[0]]
    scores = fitted.predict_decision(context, actions)
    assert scores.shape == (2,)
    assert np.all(np.isfinite(scores))


def test_artifact_round_trip_gives_identical_scores(fitted: RewardOracle, data) -> None:
    _, _, contexts, _ = data
    artifact = fitted.to_bytes()
    restored = load_oracle(artifact)
    assert type(restored) is type(fitted)
    if fitted.kind == "lightgbm":  # a text format: saving the restored model gives back the same bytes
        assert sha256_hex(restored.to_bytes()) == sha256_hex(artifact)
    for context in contexts[:20]:
        np.testing.assert_array_equal(
            restored.predict_decision(context, ACTIONS), fitted.predict_decision(context, ACTIONS)
        )


def test_lightgbm_training_is_reproducible(data) -> None:
    frame, rewards, _, _ = data
    first = LightGBMOracle(num_boost_round=20).fit(frame, rewards).to_bytes()
    second = LightGBMOracle(num_boost_round=20).fit(frame, rewards).to_bytes()
    assert sha256_hex(first) == sha256_hex(second)


def test_sample_weights_change_the_fit(data) -> None:
    frame, rewards, _, _ = data
    weights = np.where(frame["action_id"] == "3ds", 5.0, 1.0)
    plain = LightGBMOracle(num_boost_round=20).fit(frame, rewards)
    weighted = LightGBMOracle(num_boost_round=20).fit(frame, rewards, sample_weight=weights)
    assert not np.allclose(plain.predict_frame(frame.head(50)), weighted.predict_frame(frame.head(50)))


def test_regressor_oracle_for_non_binary_rewards() -> None:
    frame = records_to_frame([{"x": float(i)} for i in range(200)], [Action("a")] * 200)
    rewards = np.arange(200, dtype=float) * 2.5
    oracle = SklearnOracle("ridge").fit(frame, rewards)
    assert oracle.predict_decision({"x": 100.0}, [Action("a")])[0] == pytest.approx(250.0, rel=0.01)
    assert LightGBMOracle(num_boost_round=10).fit(frame, rewards).booster_.params["objective"] == "regression"


@pytest.mark.parametrize("oracle", [SklearnOracle(), RiverOracle()], ids=["sklearn", "river"])
def test_classifier_oracles_refuse_non_binary_rewards(oracle: RewardOracle) -> None:
    frame = records_to_frame([{"x": 1.0}] * 3, [Action("a")] * 3)
    with pytest.raises(ValueError, match="rewards in"):
        oracle.fit(frame, np.array([0.0, 0.5, 1.0]))


@pytest.mark.parametrize(
    ("rewards", "weights", "message"),
    [
        (np.array([1.0, np.nan]), None, "finite"),
        (np.array([1.0]), None, "shape"),
        (np.array([1.0, 0.0]), np.array([1.0, -1.0]), "sample_weight"),
    ],
)
def test_fit_validates_its_input(rewards: np.ndarray, weights, message: str) -> None:
    frame = records_to_frame([{"x": 1.0}, {"x": 2.0}], [Action("a"), Action("b")])
    with pytest.raises(ValueError, match=message):
        LightGBMOracle().fit(frame, rewards, sample_weight=weights)


def test_unfitted_oracle_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        LightGBMOracle().to_bytes()


def test_load_oracle_refuses_foreign_bytes() -> None:
    with pytest.raises(ValueError, match="not a banditgate oracle"):
        load_oracle(b"\x80\x04garbage")


ALLOWED_ESTIMATORS = "hist_gradient_boosting, hist_gradient_boosting_classifier, logistic_regression, random_forest"


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("xgboost", {}, "unknown oracle"),
        ("lightgbm", {"trees": 5}, "bad parameters"),
        ("lightgbm", {"num_boost_round": "100"}, "num_boost_round must be an integer"),
        ("lightgbm", {"num_boost_round": 10**9}, "num_boost_round must be an integer in"),
        ("lightgbm", {"learning_rate": True}, "learning_rate must be a number"),
        ("lightgbm", {"objective": "regression output_model=/tmp/x"}, "objective must be one of"),
        ("sklearn", {"estimator": "os.system"}, f"module path; name one of the allowed models: {ALLOWED_ESTIMATORS}"),
        (
            "sklearn",
            {
                "estimator": "sklearn.utils._testing.assert_run_python_script_without_output",
                "estimator_params": {"source_code": "print(1)"},
            },
            "is a module path",
        ),
        ("sklearn", {"estimator": "sklearn.linear_model.NoSuchModel"}, "is a module path"),
        ("sklearn", {"estimator": "lasso"}, f"unknown estimator 'lasso'; allowed: {ALLOWED_ESTIMATORS}"),
        ("sklearn", {"estimator": {"class": "Ridge"}}, "must be the name of an allowed model"),
        ("sklearn", {"estimator": "ridge", "estimator_params": {"copy_X": False}}, "unknown parameter 'copy_X'"),
        ("sklearn", {"estimator": "ridge", "estimator_params": {"alpha": -1.0}}, r"ridge.alpha must be a number in"),
        ("sklearn", {"estimator": "random_forest", "estimator_params": {"n_jobs": -1}}, "unknown parameter 'n_jobs'"),
        ("sklearn", {"estimator": "random_forest", "estimator_params": {"n_estimators": 10**6}}, "n_estimators"),
        ("sklearn", {"estimator_params": {"C": 1.0, "solver": "cg"}}, "solver must be one of"),
        ("sklearn", {"estimator": "ridge", "estimator_params": ["alpha"]}, "parameters must be an object"),
        ("sklearn", {"encoding": "binary"}, "encoding"),
        ("river", {"model": "river.linear_model.LogisticRegression", "model_params": {"nope": 1}}, "bad parameters"),
        ("river", {"model": "river.tree.HoeffdingTreeClassifier"}, "module path; name one of the allowed models"),
        ("river", {"model": "builtins.eval"}, "is a module path"),
        ("river", {"model": "logistic_regression", "model_params": {"optimizer": "Adam"}}, "unknown parameter"),
        ("river", {"model": "linear_regression", "model_params": {"learning_rate": 0}}, "learning_rate"),
    ],
)
def test_make_oracle_refuses_bad_configuration(kind: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_oracle(kind, params)


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("sklearn", {}, {"estimator": "logistic_regression", "estimator_params": {"max_iter": 1000}}),
        (
            "sklearn",
            {"estimator": "sklearn.linear_model.Ridge", "estimator_params": {"alpha": 2}},
            {"estimator": "ridge", "estimator_params": {"alpha": 2.0}},
        ),
        (
            "sklearn",
            {"estimator": "random_forest", "estimator_params": {"max_features": "sqrt", "max_depth": None}},
            {"estimator": "random_forest", "estimator_params": {"max_features": "sqrt", "max_depth": None}},
        ),
        (
            "river",
            {"model": "river.linear_model.LinearRegression", "model_params": {"l2": 0.01}},
            {"model": "linear_regression", "model_params": {"learning_rate": 0.01, "l2": 0.01}},
        ),
    ],
)
def test_allowed_models_by_name_or_by_the_dotted_path_of_an_allowed_class(kind: str, params, expected) -> None:
    hyperparameters = make_oracle(kind, params).hyperparameters()
    assert {k: hyperparameters[k] for k in expected} == expected
    assert make_oracle(kind, hyperparameters).hyperparameters() == hyperparameters  # what a generation records


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("sklearn", {"estimator": "ridge", "estimator_params": {"alpha": 0.5}}),
        ("sklearn", {"estimator": "random_forest", "estimator_params": {"n_estimators": 20, "random_state": 0}}),
        ("sklearn", {"estimator": "hist_gradient_boosting_classifier", "estimator_params": {"max_iter": 30}}),
        ("sklearn", {"estimator": "random_forest_classifier", "estimator_params": {"n_estimators": 20}}),
        ("river", {"model": "linear_regression", "model_params": {"learning_rate": 0.02}}),
    ],
)
def test_every_allowed_model_fits_scores_and_round_trips(kind: str, params: dict, data) -> None:
    frame, rewards, contexts, _ = data
    oracle = make_oracle(kind, params).fit(frame.head(1500), rewards[:1500])
    restored = load_oracle(oracle.to_bytes())
    assert restored.hyperparameters() == oracle.hyperparameters()
    scores = restored.predict_decision(contexts[0], ACTIONS)
    np.testing.assert_array_equal(scores, oracle.predict_decision(contexts[0], ACTIONS))
    assert np.all(np.isfinite(scores))


def test_allowed_models_name_classes_that_exist() -> None:
    for spec in [*ESTIMATORS.values(), *MODELS.values()]:
        cls = spec.model_class()
        assert spec.path.endswith("." + cls.__name__)
        assert set(spec.params) - {"learning_rate"} <= set(inspect.signature(cls).parameters), spec.name


def test_artifacts_of_unnamed_estimators_still_load(data) -> None:
    """Artifacts written before estimators were named held the fitted estimator alone: still served."""
    import joblib
    from sklearn.linear_model import Ridge

    frame, rewards, contexts, _ = data
    fitted = SklearnOracle("ridge", {"alpha": 3.0}).fit(frame.head(500), rewards[:500])
    buffer = io.BytesIO()
    joblib.dump({"encoding": "onehot", "space": fitted.space_.to_dict(), "estimator": fitted.estimator_}, buffer)
    restored = load_oracle(b"banditgate-oracle/1 sklearn\n" + buffer.getvalue())
    assert isinstance(restored.estimator_, Ridge) and restored.estimator_params["alpha"] == 3.0
    np.testing.assert_array_equal(
        restored.predict_decision(contexts[0], ACTIONS), fitted.predict_decision(contexts[0], ACTIONS)
    )


def test_importing_the_oracles_does_not_import_sklearn_or_river() -> None:
    code = "import sys, banditgate.policies.oracles; print(sorted({'sklearn', 'river', 'lightgbm'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(ast.literal_eval(result.stdout))
    assert "river" not in imported
    assert "sklearn" not in imported or "lightgbm" in imported  # LightGBM imports scikit-learn itself


def test_feature_space_encodes_booleans_nulls_and_categories() -> None:
    frame = records_to_frame(
        [{"amount": 1.5, "country": "NL", "recurring": True}, {"amount": None, "country": "DE", "recurring": False}],
        [Action("a", {"fee": 1}), Action("b")],
    )
    space = FeatureSpace.fit(frame)
    assert space.categorical == {"c:country": ["DE", "NL"], "action_id": ["a", "b"]}
    assert set(space.numeric) == {"c:amount", "c:recurring", "a:fee"}
    row = space.transform_decision({"amount": 2, "country": "FR", "recurring": True}, [Action("b")])[0]
    encoded = dict(zip(space.columns, row, strict=True))
    assert encoded["c:amount"] == 2.0 and encoded["c:recurring"] == 1.0 and encoded["action_id"] == 1.0
    assert np.isnan(encoded["c:country"]) and np.isnan(encoded["a:fee"])
    assert FeatureSpace.from_dict(space.to_dict()).columns == space.columns


def test_decision_encoding_equals_frame_encoding_for_messy_values() -> None:
    contexts = [
        {"amount": 1.5, "country": "NL", "recurring": True, "bin": 411111},
        {"amount": None, "country": "DE", "recurring": False, "bin": 522222},
        {"amount": 3, "country": 7, "recurring": "yes", "bin": 411111.0},
        {"country": "ZZ", "extra": "x"},
    ]
    actions = [Action("a", {"fee": 1, "network": "visa"}), Action("b"), Action("c", {"fee": "n/a", "network": True})]
    space = FeatureSpace.fit(records_to_frame(contexts[:2] * 2, [actions[0], actions[1], actions[1], actions[0]]))
    for context in contexts:
        by_decision = space.transform_decision(context, actions)
        by_frame = space.transform_frame(records_to_frame([context] * len(actions), actions))
        np.testing.assert_array_equal(by_decision, by_frame)


def test_lightgbm_decision_scores_are_booster_predict_to_the_bit(data) -> None:
    frame, rewards, contexts, _ = data
    oracle = LightGBMOracle(num_boost_round=30, odds_multiplier=1.0).fit(frame, rewards)
    for context in contexts[:20]:
        matrix = oracle.space_.transform_decision(context, ACTIONS)
        expected = oracle.booster_.predict(matrix, num_threads=1)
        assert oracle.predict_decision(context, ACTIONS).tolist() == expected.tolist()
