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


#: Oracle parameter that may name a model class by dotted path, and the package it must come from.
_MODEL_PARAMETER = {"sklearn": ("estimator", "sklearn"), "river": ("model", "river")}


def make_oracle(kind: str, params: dict[str, Any] | None = None) -> RewardOracle:
    """An unfitted oracle from its kind and JSON hyper-parameters, with a clear error for either being wrong.

    scikit-learn and River models are named by dotted path with their own parameters, e.g.
    ``{"estimator": "sklearn.ensemble.HistGradientBoostingRegressor", "estimator_params": {"max_iter": 50}}``.

    >>> params = {"estimator": "sklearn.linear_model.Ridge", "estimator_params": {"alpha": 2.0}}
    >>> make_oracle("sklearn", params).estimator
    Ridge(alpha=2.0)
    """
    oracle = oracle_class(kind)
    params = dict(params or {})
    if kind in _MODEL_PARAMETER:
        name, package = _MODEL_PARAMETER[kind]
        model_params = params.pop(f"{name}_params", {})
        if isinstance(params.get(name), str):
            params[name] = _instantiate(params[name], package, model_params)
        elif model_params:
            raise ValueError(f"{name}_params given without {name}")
    try:
        return oracle(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for oracle {kind!r}: {exc}") from None


def _instantiate(path: str, package: str, params: dict[str, Any]) -> Any:
    # Only classes of the model library itself: a policy configuration must not import arbitrary code.
    module_name, _, class_name = path.rpartition(".")
    if not path.startswith(package + ".") or not class_name:
        raise ValueError(f"model class must be a dotted path inside {package!r}, got {path!r}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(**params)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot find model class {path!r}: {exc}") from None
    except TypeError as exc:
        raise ValueError(f"bad parameters for {path!r}: {exc}") from None


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
