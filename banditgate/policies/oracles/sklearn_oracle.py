"""scikit-learn reward oracle: a regressor or binary classifier from an allow-list, imported when used."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from banditgate.policies.actions import Action, Features
from banditgate.policies.oracles.base import FeatureImportance, RewardOracle, validate_training_input
from banditgate.policies.oracles.features import ACTION_ID, FeatureSpace, features_to_json, parse_features
from banditgate.policies.oracles.params import ModelSpec, Param, lookup

if TYPE_CHECKING:
    import pandas as pd

_SEED = Param(int, low=0, high=2**32 - 1, choices=(None,))
_DEPTH = Param(int, low=1, high=64, choices=(None,))
_BOOSTING = {
    "learning_rate": Param(float, low=0.0, high=1.0, open_low=True),
    "max_iter": Param(int, low=1, high=10_000),
    "max_leaf_nodes": Param(int, low=2, high=4096, choices=(None,)),
    "max_depth": _DEPTH,
    "min_samples_leaf": Param(int, low=1, high=1_000_000),
    "l2_regularization": Param(float, low=0.0),
    "max_features": Param(float, low=0.0, high=1.0, open_low=True),
    "max_bins": Param(int, low=2, high=255),
    "early_stopping": Param(bool, choices=("auto",)),
    "random_state": _SEED,
}
_FOREST = {
    "n_estimators": Param(int, low=1, high=1000),
    "max_depth": _DEPTH,
    "min_samples_split": Param(int, low=2, high=1_000_000),
    "min_samples_leaf": Param(int, low=1, high=1_000_000),
    "max_features": Param(float, low=0.0, high=1.0, open_low=True, choices=("sqrt", "log2", None)),
    "max_samples": Param(float, low=0.0, high=1.0, open_low=True, choices=(None,)),
    "random_state": _SEED,
}

#: The estimators a policy may configure, by the name it uses, with the parameters it may set. The dotted path
#: of an allowed class (``"sklearn.linear_model.Ridge"``) is accepted as an alias of its name.
ESTIMATORS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "logistic_regression",
            "sklearn.linear_model.LogisticRegression",
            {
                "C": Param(float, low=0.0, open_low=True),
                "class_weight": Param(str, choices=("balanced", None)),
                "fit_intercept": Param(bool),
                "max_iter": Param(int, low=1, high=100_000),
                "solver": Param(str, choices=("lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga")),
                "tol": Param(float, low=0.0, open_low=True),
            },
            defaults={"max_iter": 1000},
            classifier=True,
        ),
        ModelSpec(
            "ridge",
            "sklearn.linear_model.Ridge",
            {
                "alpha": Param(float, low=0.0),
                "fit_intercept": Param(bool),
                "solver": Param(str, choices=("auto", "svd", "cholesky", "lsqr", "sparse_cg", "sag", "saga")),
                "tol": Param(float, low=0.0, open_low=True),
            },
        ),
        ModelSpec(
            "hist_gradient_boosting",
            "sklearn.ensemble.HistGradientBoostingRegressor",
            {**_BOOSTING, "loss": Param(str, choices=("squared_error", "absolute_error", "poisson"))},
        ),
        ModelSpec(
            "hist_gradient_boosting_classifier",
            "sklearn.ensemble.HistGradientBoostingClassifier",
            {**_BOOSTING, "class_weight": Param(str, choices=("balanced", None))},
            classifier=True,
        ),
        ModelSpec(
            "random_forest",
            "sklearn.ensemble.RandomForestRegressor",
            {**_FOREST, "criterion": Param(str, choices=("squared_error", "absolute_error", "friedman_mse"))},
        ),
        ModelSpec(
            "random_forest_classifier",
            "sklearn.ensemble.RandomForestClassifier",
            {
                **_FOREST,
                "criterion": Param(str, choices=("gini", "entropy", "log_loss")),
                "class_weight": Param(str, choices=("balanced", "balanced_subsample", None)),
            },
            classifier=True,
        ),
    )
}


class SklearnOracle(RewardOracle):
    """A scikit-learn regressor, or binary classifier whose positive-class probability is the score.

    The estimator is named from :data:`ESTIMATORS` (an allow-list: a configuration never names a module path)
    with its declared parameters, checked on construction. scikit-learn itself is imported on :meth:`fit`
    and on loading an artifact, not with this module.

    Columns are one-hot encoded for the estimator: each categorical column becomes one indicator per known
    category (an unseen category is all zeros), missing numbers become 0, and every feature is also crossed
    with the action's indicator, so that even a linear model can learn that the best action differs by
    segment. Estimators that handle interactions, missing values and ordinal codes natively
    (``"hist_gradient_boosting"``) can take ``encoding="ordinal"`` instead.

    Parameters
    ----------
    estimator
        Name of an allowed estimator (:data:`ESTIMATORS`), default ``"logistic_regression"``. The dotted path of
        an allowed class (``"sklearn.linear_model.Ridge"``) is accepted for it.
    estimator_params
        Parameters of the estimator, among those declared for it (e.g. ``{"alpha": 2.0}`` for ``"ridge"``).
    encoding
        ``"onehot"`` (default) or ``"ordinal"``.
    features
        How each context key is used, ``{key: treatment}`` (see
        :func:`~banditgate.policies.oracles.features.parse_features`); a hashed key is one-hot encoded over
        its buckets. Retraining sets it from the policy's ``features``.

    Examples
    --------
    >>> import numpy as np
    >>> from banditgate.policies.oracles.features import records_to_frame
    >>> rng = np.random.default_rng(0)
    >>> contexts = [{"country": str(c)} for c in rng.choice(["NL", "DE"], 1000)]
    >>> actions = [Action(str(a)) for a in rng.choice(["retry", "none"], 1000)]
    >>> rewards = np.array([float(a.id == "retry") for a in actions])
    >>> oracle = SklearnOracle().fit(records_to_frame(contexts, actions), rewards)
    >>> scores = oracle.predict_decision({"country": "FR"}, [Action("retry"), Action("none")])
    >>> bool(scores[0] > 0.5 > scores[1])
    True
    >>> SklearnOracle("sklearn.svm.SVR")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: estimator 'sklearn.svm.SVR' is a module path; name one of the allowed models: hist_gradient_boosting...
    """

    kind = "sklearn"
    libraries = ("sklearn", "joblib", "pandas", "banditgate.policies.oracles.features")

    def __init__(
        self,
        estimator: str = "logistic_regression",
        estimator_params: dict[str, Any] | None = None,
        encoding: str = "onehot",
        features: dict[str, Any] | None = None,
    ) -> None:
        if encoding not in ("onehot", "ordinal"):
            raise ValueError(f"encoding must be 'onehot' or 'ordinal', got {encoding!r}")
        self._spec = lookup(ESTIMATORS, estimator, "estimator")
        self.estimator = self._spec.name
        self.estimator_params = self._spec.validate(estimator_params)
        self.encoding = encoding
        self.features = features_to_json(parse_features(features))

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "estimator_params": dict(self.estimator_params),
            "encoding": self.encoding,
            "features": dict(self.features),
        }

    def fit(self, frame: pd.DataFrame, rewards: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        rewards, sample_weight = validate_training_input(frame, rewards, sample_weight)
        estimator = self._spec.model_class()(**self.estimator_params)
        self.space_ = FeatureSpace.fit(frame, parse_features(self.features))
        matrix = self._encode(self.space_.transform_frame(frame))
        target: np.ndarray = rewards
        if self._spec.classifier:
            if not np.all(np.isin(rewards, (0.0, 1.0))):
                raise ValueError("a classifier oracle needs rewards in {0, 1}; use a regressor for other rewards")
            target = rewards.astype(int)
        fit_params = {"sample_weight": sample_weight} if sample_weight is not None else {}
        self.estimator_ = estimator.fit(matrix, target, **fit_params)
        return self

    def _encode(self, matrix: np.ndarray) -> np.ndarray:
        if self.encoding == "ordinal":
            return matrix
        blocks, action_block = [], None
        for j, column in enumerate(self.space_.columns):
            codes = self.space_.cardinality(column)
            if codes is None:
                blocks.append(np.nan_to_num(matrix[:, j : j + 1], nan=0.0))
            else:
                onehot = (matrix[:, j : j + 1] == np.arange(codes)[None, :]).astype(np.float64)
                if column == ACTION_ID:
                    action_block = onehot
                else:
                    blocks.append(onehot)
        base = np.hstack(blocks) if blocks else np.zeros((len(matrix), 0))
        if action_block is None:
            return base
        # Cross every feature with the action so that a linear model can prefer different actions per segment.
        crossed = (action_block[:, :, None] * base[:, None, :]).reshape(len(matrix), -1)
        return np.hstack([action_block, base, crossed])

    def _encoded_columns(self) -> list[str]:
        """The space column each column of :meth:`_encode`'s output comes from (a feature crossed with the action
        counts for the feature: that is how the feature is used)."""
        if self.encoding == "ordinal":
            return list(self.space_.columns)
        base: list[str] = []
        for column in self.space_.columns:
            if column != ACTION_ID:
                base += [column] * (self.space_.cardinality(column) or 1)
        if ACTION_ID not in self.space_.categorical:
            return base
        actions = self.space_.cardinality(ACTION_ID) or 0
        return [ACTION_ID] * actions + base + base * actions

    def feature_importance(self) -> FeatureImportance:
        """The impurity importance of a random forest, per input; no measure for the other estimators.

        Linear coefficients over one-hot, action-crossed columns of different scales, and histogram boosting
        (which exposes no importance), would give numbers that look like importances without being ones.
        """
        self._check_fitted()
        importances = getattr(self.estimator_, "feature_importances_", None)
        if importances is None:
            return FeatureImportance.unavailable(
                f"{self.estimator} has no built-in importance (only the random forests do); none is reported "
                "rather than coefficients over one-hot, action-crossed columns"
            )
        return FeatureImportance.from_columns(
            "impurity", self._encoded_columns(), list(importances), "mean decrease in impurity of the forest's splits"
        )

    def _predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        encoded = self._encode(matrix)
        if self._spec.classifier:
            proba = self.estimator_.predict_proba(encoded)
            positive = np.flatnonzero(self.estimator_.classes_ == 1)
            return proba[:, positive[0]] if positive.size else np.zeros(len(encoded))
        return np.asarray(self.estimator_.predict(encoded), dtype=np.float64)

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        return self._predict_matrix(self.space_.transform_frame(frame))

    def predict_decision(self, context: Features, actions: Sequence[Action]) -> np.ndarray:
        return self._predict_matrix(self.space_.transform_decision(context, actions))

    def _payload(self) -> bytes:
        import joblib

        self._check_fitted()
        buffer = io.BytesIO()
        joblib.dump({**self.hyperparameters(), "space": self.space_.to_dict(), "model": self.estimator_}, buffer)
        return buffer.getvalue()

    @classmethod
    def _from_payload(cls, payload: bytes) -> Self:
        # A pickle: loading it runs whatever it names. Callers verify the artifact's sha256 against the registry
        # first (banditgate.ledger.artifacts.load_artifact); never load bytes from an untrusted source.
        import joblib

        data = joblib.load(io.BytesIO(payload))
        if "model" not in data:  # written before estimators were named: the fitted estimator alone
            data = {**data, **_named(data["estimator"]), "model": data["estimator"]}
        oracle = cls(data["estimator"], data["estimator_params"], data["encoding"], data.get("features"))
        if type(data["model"]) is not oracle._spec.model_class():
            raise ValueError(f"artifact holds a {type(data['model']).__name__}, not the {oracle.estimator} it names")
        oracle.space_ = FeatureSpace.from_dict(data["space"])
        oracle.estimator_ = data["model"]
        return oracle


def _named(estimator: Any) -> dict[str, Any]:
    """The allow-list's name and the declared parameters of a fitted estimator (refused if not allowed)."""
    for spec in ESTIMATORS.values():
        if type(estimator) is spec.model_class():
            params = estimator.get_params(deep=False)
            return {"estimator": spec.name, "estimator_params": {k: params[k] for k in spec.params}}
    raise ValueError(f"artifact holds a {type(estimator).__name__}, which is not an allowed estimator")
