"""Reward oracles f(x, a) ~ E[reward | x, a], and loading one back from its artifact."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from banditgate.policies.oracles.base import ARTIFACT_MAGIC, RewardOracle, sha256_hex

if TYPE_CHECKING:
    from banditgate.policies.oracles.features import FeatureSpace, records_to_frame
    from banditgate.policies.oracles.lightgbm_oracle import LightGBMOracle
    from banditgate.policies.oracles.river_oracle import RiverOracle
    from banditgate.policies.oracles.sklearn_oracle import SklearnOracle

#: Module and class of each oracle kind. Imported on first use: the serving process, the decision process
#: and the CLI import this package, and LightGBM, scikit-learn, River and pandas take seconds to import.
_ORACLE_CLASSES = {
    "lightgbm": ("lightgbm_oracle", "LightGBMOracle"),
    "sklearn": ("sklearn_oracle", "SklearnOracle"),
    "river": ("river_oracle", "RiverOracle"),
}
_LAZY = {
    **{cls: module for module, cls in _ORACLE_CLASSES.values()},
    "FeatureSpace": "features",
    "records_to_frame": "features",
}


def oracle_class(kind: str) -> type[RewardOracle]:
    """The oracle class of ``kind`` (imports its library); :class:`ValueError` for an unknown kind."""
    try:
        module, name = _ORACLE_CLASSES[kind]
    except KeyError:
        raise ValueError(f"unknown oracle {kind!r}; known: {', '.join(sorted(_ORACLE_CLASSES))}") from None
    cls: type[RewardOracle] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return cls


def __getattr__(name: str) -> Any:
    if name == "ORACLES":  # every oracle class by kind (imports them all)
        return {kind: oracle_class(kind) for kind in _ORACLE_CLASSES}
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_oracle(kind: str, params: dict[str, Any] | None = None) -> RewardOracle:
    """An unfitted oracle from its kind and JSON hyper-parameters, with a clear error for either being wrong.

    Configurations come from requests and settings files: scikit-learn and River models are named from an
    allow-list (:data:`~banditgate.policies.oracles.sklearn_oracle.ESTIMATORS`,
    :data:`~banditgate.policies.oracles.river_oracle.MODELS`) with their declared parameters, e.g.
    ``{"estimator": "hist_gradient_boosting", "estimator_params": {"max_iter": 50}}``; nothing names a module.

    >>> make_oracle("sklearn", {"estimator": "ridge", "estimator_params": {"alpha": 2.0}}).hyperparameters()
    {'estimator': 'ridge', 'estimator_params': {'alpha': 2.0}, 'encoding': 'onehot', 'features': {}}
    >>> make_oracle("sklearn", {"estimator": "os.system"})
    Traceback (most recent call last):
    ...
    ValueError: bad parameters for oracle 'sklearn': estimator 'os.system' is a module path; name one of the \
allowed models: hist_gradient_boosting, hist_gradient_boosting_classifier, logistic_regression, random_forest, \
random_forest_classifier, ridge
    """
    oracle = oracle_class(kind)
    try:
        return oracle(**(params or {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad parameters for oracle {kind!r}: {exc}") from None


def load_oracle(artifact: bytes) -> RewardOracle:
    """Rebuild a fitted oracle from the bytes :meth:`RewardOracle.to_bytes` wrote."""
    header, sep, payload = artifact.partition(b"\n")
    if not sep or not header.startswith(ARTIFACT_MAGIC):
        raise ValueError("not a banditgate oracle artifact (bad header)")
    kind = header[len(ARTIFACT_MAGIC) :].decode()
    if kind not in _ORACLE_CLASSES:
        raise ValueError(f"artifact holds an unknown oracle kind {kind!r}")
    return oracle_class(kind)._from_payload(payload)


__all__ = [
    "ORACLES",
    "FeatureSpace",
    "LightGBMOracle",
    "RewardOracle",
    "RiverOracle",
    "SklearnOracle",
    "load_oracle",
    "make_oracle",
    "oracle_class",
    "records_to_frame",
    "sha256_hex",
]
