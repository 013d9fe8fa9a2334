"""LightGBM reward oracle (the default)."""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from banditgate.policies.actions import Action, Features
from banditgate.policies.oracles.base import FeatureImportance, RewardOracle, validate_training_input
from banditgate.policies.oracles.calibration import IsotonicCalibration
from banditgate.policies.oracles.features import FeatureSpace, features_to_json, parse_features
from banditgate.policies.oracles.params import Param

#: The hyper-parameters a configuration may set, with their types and ranges. Each is passed to LightGBM as one
#: ``key=value`` pair, so a text parameter is a fixed choice: free text could append parameters of its own.
PARAMETERS = {
    "num_boost_round": Param(int, low=1, high=10_000),
    "learning_rate": Param(float, low=0.0, high=1.0, open_low=True),
    "num_leaves": Param(int, low=2, high=131_072),
    "min_data_in_leaf": Param(int, low=0, high=10_000_000),
    "objective": Param(str, choices=("auto", "cross_entropy", "binary", "regression", "regression_l1", "huber")),
    "num_threads": Param(int, low=0, high=1024),
    "seed": Param(int, low=-(2**31), high=2**31 - 1),
    "odds_multiplier": Param(float, low=0.0, open_low=True),
}

if TYPE_CHECKING:
    import pandas as pd

# Arguments of LGBM_BoosterPredictForMat (lightgbm/c_api.h), built once.
_FLOAT64 = ctypes.c_int(1)  # C_API_DTYPE_FLOAT64
_ROW_MAJOR = ctypes.c_int(1)
_PREDICT_NORMAL = ctypes.c_int(0)  # C_API_PREDICT_NORMAL: probabilities for cross_entropy, like predict()
_FIRST_ITERATION = ctypes.c_int(0)
_ALL_ITERATIONS = ctypes.c_int(-1)
_ONE_THREAD = ctypes.c_char_p(b"num_threads=1")
# LightGBM (and the scikit-learn and pandas it imports: seconds) is imported when a model is first trained or
# loaded, not when a policy spec naming this oracle is validated; :func:`_lightgbm` fills these in.
_PREDICT_FOR_MAT: Any = None
_safe_call: Any = None


def _lightgbm() -> ModuleType:
    global _PREDICT_FOR_MAT, _safe_call
    import lightgbm
    from lightgbm.basic import _LIB
    from lightgbm.basic import _safe_call as safe_call

    _PREDICT_FOR_MAT, _safe_call = _LIB.LGBM_BoosterPredictForMat, safe_call
    return lightgbm


class LightGBMOracle(RewardOracle):
    """Gradient-boosted trees on the encoded (context, action) features, categorical columns native.

    Serving calls LightGBM's C prediction function directly, with ``num_threads=1``: the scikit-learn
    wrapper adds about 300 us per call, ``Booster.predict``'s own argument handling about 13 us (a quarter of
    the prediction of ten rows), and OpenMP threads turn the p99 into milliseconds when the other core is
    busy. The result is the one ``Booster.predict`` gives, to the bit (the same C function computes it).

    Parameters
    ----------
    num_boost_round
        Number of trees.
    learning_rate, num_leaves, min_data_in_leaf
        The usual LightGBM hyper-parameters.
    objective
        ``"auto"`` picks ``cross_entropy`` when every reward lies in [0, 1] (authorisation outcomes, so the
        score is a probability) and ``regression`` otherwise.
    num_threads
        Threads used for *training* (0 = LightGBM's default). Prediction always uses one.
    seed
        Seed for LightGBM's randomness, so a retraining run is reproducible.
    odds_multiplier
        Prior correction applied to every prediction: the odds ``p / (1 - p)`` are multiplied by it. Set by
        retraining when it balanced the classes, so that scores remain calibrated probabilities.
    features
        How each context key is used, ``{key: treatment}`` (see
        :func:`~banditgate.policies.oracles.features.parse_features`); undeclared keys are treated
        automatically. Retraining sets it from the policy's ``features``.

    Attributes
    ----------
    calibration_
        An :class:`~banditgate.policies.oracles.calibration.IsotonicCalibration` applied to every score after
        the odds correction, or None (the default). Retraining fits it on held-out rows (``calibration``
        option) and it is stored in the artifact, so serving and replays apply the same map.

    Examples
    --------
    >>> import numpy as np
    >>> from banditgate.policies.oracles.features import records_to_frame
    >>> rng = np.random.default_rng(0)
    >>> contexts = [{"amount": float(a)} for a in rng.uniform(0, 100, 2000)]
    >>> actions = [Action(str(a)) for a in rng.choice(["3ds", "none"], 2000)]
    >>> rewards = np.array([float((c["amount"] > 50) == (a.id == "3ds")) for c, a in zip(contexts, actions)])
    >>> oracle = LightGBMOracle(num_boost_round=20).fit(records_to_frame(contexts, actions), rewards)
    >>> scores = oracle.predict_decision({"amount": 90.0}, [Action("3ds"), Action("none")])
    >>> bool(scores[0] > 0.9 > 0.1 > scores[1])
    True
    """

    kind = "lightgbm"
    libraries = ("lightgbm", "pandas", "banditgate.policies.oracles.features")
    calibration_: IsotonicCalibration | None = None

    def __init__(
        self,
        num_boost_round: int = 100,
        learning_rate: float = 0.1,
        num_leaves: int = 31,
        min_data_in_leaf: int = 20,
        objective: str = "auto",
        num_threads: int = 0,
        seed: int = 0,
        odds_multiplier: float = 1.0,
        features: dict[str, Any] | None = None,
    ) -> None:
        self.num_boost_round = _checked("num_boost_round", num_boost_round)
        self.learning_rate = _checked("learning_rate", learning_rate)
        self.num_leaves = _checked("num_leaves", num_leaves)
        self.min_data_in_leaf = _checked("min_data_in_leaf", min_data_in_leaf)
        self.objective = _checked("objective", objective)
        self.num_threads = _checked("num_threads", num_threads)
        self.seed = _checked("seed", seed)
        self.odds_multiplier = _checked("odds_multiplier", odds_multiplier)
        self.features = features_to_json(parse_features(features))

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "num_boost_round": self.num_boost_round,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "objective": self.objective,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "odds_multiplier": self.odds_multiplier,
            "features": dict(self.features),
        }

    def fit(self, frame: pd.DataFrame, rewards: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        lgb = _lightgbm()
        rewards, sample_weight = validate_training_input(frame, rewards, sample_weight)
        objective = self.objective
        if objective == "auto":
            objective = "cross_entropy" if rewards.min() >= 0.0 and rewards.max() <= 1.0 else "regression"
        self.space_ = FeatureSpace.fit(frame, parse_features(self.features))
        matrix = self.space_.transform_frame(frame)
        params = {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "seed": self.seed,
            "deterministic": True,
            "verbosity": -1,
        }
        if self.num_threads:
            params["num_threads"] = self.num_threads
        dataset = lgb.Dataset(
            matrix,
            label=rewards,
            weight=sample_weight,
            feature_name=[_safe_name(c) for c in self.space_.columns],
            categorical_feature=self.space_.categorical_indices,
            free_raw_data=True,
        )
        self.booster_ = lgb.train(params, dataset, num_boost_round=self.num_boost_round)
        return self

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        return self._corrected(self.booster_.predict(self.space_.transform_frame(frame)))

    def feature_importance(self) -> FeatureImportance:
        """LightGBM's gain importance (the loss reduction of every split on a column), per input."""
        self._check_fitted()
        gains = self.booster_.feature_importance(importance_type="gain")
        return FeatureImportance.from_columns(
            "lightgbm_gain", self.space_.columns, gains.tolist(), "share of the training loss reduction of all splits"
        )

    def predict_decision(self, context: Features, actions: Sequence[Action]) -> np.ndarray:
        return self.predict_matrix(self.space_.transform_decision(context, actions))

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Scores of an encoded, C-contiguous float64 matrix, on one thread (the serving path)."""
        out = np.empty(matrix.shape[0])
        written = ctypes.c_int64()
        _safe_call(
            _PREDICT_FOR_MAT(
                self.booster_._handle,
                ctypes.c_void_p(matrix.ctypes.data),
                _FLOAT64,
                ctypes.c_int32(matrix.shape[0]),
                ctypes.c_int32(matrix.shape[1]),
                _ROW_MAJOR,
                _PREDICT_NORMAL,
                _FIRST_ITERATION,
                _ALL_ITERATIONS,
                _ONE_THREAD,
                ctypes.byref(written),
                ctypes.c_void_p(out.ctypes.data),
            )
        )
        return self._corrected(out)

    def calibrate(self, frame: pd.DataFrame, rewards: np.ndarray) -> Self:
        """Fit :attr:`calibration_` on rows the model was not trained on: their raw scores against ``rewards``."""
        self._check_fitted()
        self.calibration_ = None
        self.calibration_ = IsotonicCalibration.fit(self.predict_frame(frame), rewards)
        return self

    def _corrected(self, p: np.ndarray) -> np.ndarray:
        if self.odds_multiplier != 1.0:
            odds = p * self.odds_multiplier
            p = odds / (odds + 1.0 - p)
        return p if self.calibration_ is None else self.calibration_.apply(p)

    def _payload(self) -> bytes:
        self._check_fitted()
        data = {
            "hyperparameters": self.hyperparameters(),
            "space": self.space_.to_dict(),
            "booster": self.booster_.model_to_string(),
        }
        if self.calibration_ is not None:  # absent otherwise: an uncalibrated artifact is what it always was
            data["calibration"] = self.calibration_.to_dict()
        return json.dumps(data).encode()

    @classmethod
    def _from_payload(cls, payload: bytes) -> Self:
        data = json.loads(payload)
        oracle = cls(**data["hyperparameters"])
        oracle.space_ = FeatureSpace.from_dict(data["space"])
        oracle.booster_ = _lightgbm().Booster(model_str=data["booster"])
        if "calibration" in data:
            oracle.calibration_ = IsotonicCalibration.from_dict(data["calibration"])
        return oracle


def _checked(name: str, value: Any) -> Any:
    return PARAMETERS[name].check(name, value)


def _safe_name(column: str) -> str:
    # LightGBM rejects some JSON special characters in feature names.
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in column)
