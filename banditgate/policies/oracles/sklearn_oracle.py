"""scikit-learn reward oracle: any regressor or binary classifier."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Self

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.linear_model import LogisticRegression

from banditgate.policies.actions import Action, Features
from banditgate.policies.oracles.base import RewardOracle, validate_training_input
from banditgate.policies.oracles.features import ACTION_ID, FeatureSpace


class SklearnOracle(RewardOracle):
    """Wraps any scikit-learn regressor, or binary classifier whose positive-class probability is the score.

    Columns are one-hot encoded for the estimator: each categorical column becomes one indicator per known
    category (an unseen category is all zeros), missing numbers become 0, and every feature is also crossed
    with the action's indicator, so that even a linear model can learn that the best action differs by
    segment. Estimators that handle interactions, missing values and ordinal codes natively
    (``HistGradientBoostingRegressor``) can take ``encoding="ordinal"`` instead.

    Parameters
    ----------
    estimator
        An unfitted scikit-learn estimator; it is cloned on :meth:`fit`. Default: logistic regression.
    encoding
        ``"onehot"`` (default) or ``"ordinal"``.

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
    """

    kind = "sklearn"

    def __init__(self, estimator: BaseEstimator | None = None, encoding: str = "onehot") -> None:
        if encoding not in ("onehot", "ordinal"):
            raise ValueError(f"encoding must be 'onehot' or 'ordinal', got {encoding!r}")
        self.estimator = estimator
        self.encoding = encoding

    def hyperparameters(self) -> dict[str, Any]:
        estimator = self.estimator if self.estimator is not None else LogisticRegression()
        return {
            "estimator": type(estimator).__name__,
            "estimator_params": {k: repr(v) for k, v in estimator.get_params(deep=False).items()},
            "encoding": self.encoding,
        }

    def fit(self, frame: pd.DataFrame, rewards: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        rewards, sample_weight = validate_training_input(frame, rewards, sample_weight)
        estimator = clone(self.estimator) if self.estimator is not None else LogisticRegression(max_iter=1000)
        self.space_ = FeatureSpace.fit(frame)
        matrix = self._encode(self.space_.transform_frame(frame))
        target: np.ndarray = rewards
        if is_classifier(estimator):
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
            vocabulary = self.space_.categorical.get(column)
            if vocabulary is None:
                blocks.append(np.nan_to_num(matrix[:, j : j + 1], nan=0.0))
            else:
                onehot = (matrix[:, j : j + 1] == np.arange(len(vocabulary))[None, :]).astype(np.float64)
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

    def _predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        encoded = self._encode(matrix)
        if is_classifier(self.estimator_):
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
        self._check_fitted()
        buffer = io.BytesIO()
        joblib.dump({"encoding": self.encoding, "space": self.space_.to_dict(), "estimator": self.estimator_}, buffer)
        return buffer.getvalue()

    @classmethod
    def _from_payload(cls, payload: bytes) -> Self:
        # Artifacts are written by banditgate's own retraining job; never load one from an untrusted source.
        data = joblib.load(io.BytesIO(payload))
        oracle = cls(estimator=clone(data["estimator"]), encoding=data["encoding"])
        oracle.space_ = FeatureSpace.from_dict(data["space"])
        oracle.estimator_ = data["estimator"]
        return oracle
