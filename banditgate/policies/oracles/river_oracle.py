"""River reward oracle: online learning, can keep learning between generations."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any, Self

import joblib
import numpy as np
import pandas as pd
from river import linear_model, optim
from river.base import Classifier, Estimator

from banditgate.policies.actions import Action, Features, Scalar
from banditgate.policies.oracles.base import RewardOracle, validate_training_input
from banditgate.policies.oracles.features import ACTION_ID, FeatureSpace, category_key, decision_row


def _default_model() -> Estimator:
    return linear_model.LogisticRegression(optimizer=optim.SGD(0.05))


class RiverOracle(RewardOracle):
    """Wraps a River regressor or binary classifier learning one example at a time.

    Features are River dictionaries: each number squashed by a signed ``log1p`` (amounts span orders of
    magnitude, and a running scaler would zero out indicators, which are constant whenever present), each
    categorical value as an indicator ``"name=value"``, and the action id crossed with every context
    feature so a linear model can learn that the best action differs by segment. Unseen categories simply
    have no weight yet. After :meth:`fit`, :meth:`learn_one` keeps updating the model as rewards arrive.

    Parameters
    ----------
    model
        An unfitted River estimator (cloned on :meth:`fit`). Default: logistic regression with SGD.

    Examples
    --------
    >>> import numpy as np
    >>> from banditgate.policies.oracles.features import records_to_frame
    >>> rng = np.random.default_rng(0)
    >>> contexts = [{"country": str(c)} for c in rng.choice(["NL", "DE"], 2000)]
    >>> actions = [Action(str(a)) for a in rng.choice(["retry", "none"], 2000)]
    >>> rewards = np.array([float(a.id == "retry") for a in actions])
    >>> oracle = RiverOracle().fit(records_to_frame(contexts, actions), rewards)
    >>> scores = oracle.predict_decision({"country": "NL"}, [Action("retry"), Action("none")])
    >>> bool(scores[0] > 0.5 > scores[1])
    True

    References
    ----------
    Montiel et al., "River: machine learning for streaming data in Python", JMLR 22 (2021).
    """

    kind = "river"

    def __init__(self, model: Estimator | None = None) -> None:
        self.model = model

    def hyperparameters(self) -> dict[str, Any]:
        model = self.model if self.model is not None else _default_model()
        return {"model": repr(model)}

    def fit(self, frame: pd.DataFrame, rewards: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        rewards, sample_weight = validate_training_input(frame, rewards, sample_weight)
        self.space_ = FeatureSpace.fit(frame)
        self.model_ = self.model.clone() if self.model is not None else _default_model()
        if isinstance(self.model_, Classifier) and not np.all(np.isin(rewards, (0.0, 1.0))):
            raise ValueError("a classifier oracle needs rewards in {0, 1}; use a regressor for other rewards")
        columns = list(frame.columns)
        for i, row in enumerate(frame.itertuples(index=False, name=None)):
            repeats = 1 if sample_weight is None else round(sample_weight[i])
            for _ in range(repeats):
                self._learn(dict(zip(columns, row, strict=True)), float(rewards[i]))
        return self

    def learn_one(self, context: Features, action: Action, reward: float) -> None:
        """Update the fitted model with one matured reward (online learning between generations)."""
        self._check_fitted()
        self._learn(decision_row(context, action), reward)

    def _learn(self, row: dict[str, Scalar], reward: float) -> None:
        target: Any = reward >= 0.5 if isinstance(self.model_, Classifier) else reward
        self.model_.learn_one(self._features(row), target)

    def _features(self, row: dict[str, Scalar]) -> dict[str, float]:
        action = category_key(row.get(ACTION_ID)) or ""
        x: dict[str, float] = {f"{ACTION_ID}={action}": 1.0}
        for name, value in row.items():
            if name == ACTION_ID or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if name in self.space_.categorical or isinstance(value, str):
                key = f"{name}={category_key(value)}"
                x[key] = 1.0
                x[f"{action}*{key}"] = 1.0
            else:
                squashed = math.copysign(math.log1p(abs(float(value))), float(value))
                x[name] = squashed
                x[f"{action}*{name}"] = squashed
        return x

    def _predict_row(self, row: dict[str, Scalar]) -> float:
        x = self._features(row)
        if isinstance(self.model_, Classifier):
            return float(self.model_.predict_proba_one(x).get(True, 0.0))
        return float(self.model_.predict_one(x))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        columns = list(frame.columns)
        return np.array(
            [self._predict_row(dict(zip(columns, r, strict=True))) for r in frame.itertuples(index=False, name=None)]
        )

    def predict_decision(self, context: Features, actions: Sequence[Action]) -> np.ndarray:
        return np.array([self._predict_row(decision_row(context, action)) for action in actions])

    def _payload(self) -> bytes:
        self._check_fitted()
        buffer = io.BytesIO()
        joblib.dump({"space": self.space_.to_dict(), "model": self.model_}, buffer)
        return buffer.getvalue()

    @classmethod
    def _from_payload(cls, payload: bytes) -> Self:
        # Artifacts are written by banditgate's own retraining job; never load one from an untrusted source.
        data = joblib.load(io.BytesIO(payload))
        oracle = cls(model=data["model"].clone())
        oracle.space_ = FeatureSpace.from_dict(data["space"])
        oracle.model_ = data["model"]
        return oracle
