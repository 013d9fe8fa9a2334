"""River reward oracle: an online (one example at a time) linear model, fitted per generation."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from banditgate.policies.actions import Action, Features, Scalar
from banditgate.policies.oracles.base import RewardOracle, validate_training_input
from banditgate.policies.oracles.features import ACTION_ID, FeatureSpace, category_key, decision_row
from banditgate.policies.oracles.params import ModelSpec, Param, lookup

if TYPE_CHECKING:
    import pandas as pd

_LINEAR = {
    "learning_rate": Param(float, low=0.0, high=10.0, open_low=True),  # of the SGD optimizer
    "l1": Param(float, low=0.0),
    "l2": Param(float, low=0.0),
    "intercept_lr": Param(float, low=0.0, high=10.0),
}

#: The River models a policy may configure, by the name it uses, with the parameters it may set. The dotted
#: path of an allowed class (``"river.linear_model.LinearRegression"``) is accepted as an alias of its name.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "logistic_regression",
            "river.linear_model.LogisticRegression",
            _LINEAR,
            defaults={"learning_rate": 0.05},
            classifier=True,
        ),
        ModelSpec(
            "linear_regression", "river.linear_model.LinearRegression", _LINEAR, defaults={"learning_rate": 0.01}
        ),
    )
}


class RiverOracle(RewardOracle):
    """Wraps a River regressor or binary classifier learning one example at a time.

    Features are River dictionaries: each number squashed by a signed ``log1p`` (amounts span orders of
    magnitude, and a running scaler would zero out indicators, which are constant whenever present), each
    categorical value as an indicator ``"name=value"``, and the action id crossed with every context
    feature so a linear model can learn that the best action differs by segment. Unseen categories simply
    have no weight yet.

    The model learns one example at a time while a generation is trained, but a registered generation's model
    is fixed: it does not keep learning from rewards between generations. A decision must be reproducible from
    the generation that made it (its artifact's sha256 and the logged probabilities), which a model updated in
    place would break; each retraining fits a new model on the window instead.

    The model is named from :data:`MODELS` (an allow-list: a configuration never names a module path) with its
    declared parameters, checked on construction. River itself is imported on :meth:`fit` and on loading an
    artifact, not with this module.

    Parameters
    ----------
    model
        Name of an allowed model (:data:`MODELS`), default ``"logistic_regression"`` (a binary classifier).
    model_params
        Its parameters, e.g. ``{"learning_rate": 0.05, "l2": 0.001}`` (``learning_rate`` is the SGD
        optimizer's).

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
    libraries = ("river", "pandas", "banditgate.policies.oracles.features")

    def __init__(self, model: str = "logistic_regression", model_params: dict[str, Any] | None = None) -> None:
        self._spec = lookup(MODELS, model, "model")
        self.model = self._spec.name
        self.model_params = self._spec.validate(model_params)

    def hyperparameters(self) -> dict[str, Any]:
        return {"model": self.model, "model_params": dict(self.model_params)}

    def _build(self) -> Any:
        from river import optim

        params = dict(self.model_params)
        optimizer = optim.SGD(params.pop("learning_rate"))
        return self._spec.model_class()(optimizer=optimizer, **params)

    def fit(self, frame: pd.DataFrame, rewards: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        rewards, sample_weight = validate_training_input(frame, rewards, sample_weight)
        self.space_ = FeatureSpace.fit(frame)
        self.model_ = self._build()
        if self._spec.classifier and not np.all(np.isin(rewards, (0.0, 1.0))):
            raise ValueError("a classifier oracle needs rewards in {0, 1}; use a regressor for other rewards")
        columns = list(frame.columns)
        for i, row in enumerate(frame.itertuples(index=False, name=None)):
            repeats = 1 if sample_weight is None else round(sample_weight[i])
            for _ in range(repeats):
                self._learn(dict(zip(columns, row, strict=True)), float(rewards[i]))
        return self

    def _learn(self, row: dict[str, Scalar], reward: float) -> None:
        target: Any = reward >= 0.5 if self._spec.classifier else reward
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
        if self._spec.classifier:
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
        import joblib

        self._check_fitted()
        buffer = io.BytesIO()
        joblib.dump({**self.hyperparameters(), "space": self.space_.to_dict(), "fitted": self.model_}, buffer)
        return buffer.getvalue()

    @classmethod
    def _from_payload(cls, payload: bytes) -> Self:
        # A pickle: loading it runs whatever it names. Callers verify the artifact's sha256 against the registry
        # first (banditgate.ledger.artifacts.load_artifact); never load bytes from an untrusted source.
        import joblib

        data = joblib.load(io.BytesIO(payload))
        if "fitted" not in data:  # written before models were named: the fitted model alone
            data = {**data, **_named(data["model"]), "fitted": data["model"]}
        oracle = cls(data["model"], data["model_params"])
        if type(data["fitted"]) is not oracle._spec.model_class():
            raise ValueError(f"artifact holds a {type(data['fitted']).__name__}, not the {oracle.model} it names")
        oracle.space_ = FeatureSpace.from_dict(data["space"])
        oracle.model_ = data["fitted"]
        return oracle


def _named(model: Any) -> dict[str, Any]:
    """The allow-list's name and parameters of a fitted model (refused if not allowed)."""
    for spec in MODELS.values():
        if type(model) is spec.model_class():
            try:
                rates = {
                    "learning_rate": model.optimizer.learning_rate,
                    "intercept_lr": model.intercept_lr.learning_rate,
                }
            except AttributeError:
                break  # an optimizer or schedule the allow-list cannot express
            return {"model": spec.name, "model_params": {"l1": model.l1, "l2": model.l2, **rates}}
    raise ValueError(f"artifact holds a {type(model).__name__} configured beyond the allowed models' parameters")
