"""Reward oracles f(x, a) ~ E[reward | x, a], and loading one back from its artifact."""

from __future__ import annotations

from typing import Any

from banditgate.policies.oracles.base import ARTIFACT_MAGIC, RewardOracle, sha256_hex
from banditgate.policies.oracles.features import FeatureSpace, records_to_frame
from banditgate.policies.oracles.lightgbm_oracle import LightGBMOracle
from banditgate.policies.oracles.river_oracle import RiverOracle
from banditgate.policies.oracles.sklearn_oracle import SklearnOracle

ORACLES: dict[str, type[RewardOracle]] = {o.kind: o for o in (LightGBMOracle, SklearnOracle, RiverOracle)}


def make_oracle(kind: str, params: dict[str, Any] | None = None) -> RewardOracle:
    """An unfitted oracle from its kind and JSON hyper-parameters, with a clear error for either being wrong.

    Configurations come from requests and settings files: scikit-learn and River models are named from an
    allow-list (:data:`~banditgate.policies.oracles.sklearn_oracle.ESTIMATORS`,
    :data:`~banditgate.policies.oracles.river_oracle.MODELS`) with their declared parameters, e.g.
    ``{"estimator": "hist_gradient_boosting", "estimator_params": {"max_iter": 50}}``; nothing names a module.

    >>> make_oracle("sklearn", {"estimator": "ridge", "estimator_params": {"alpha": 2.0}}).hyperparameters()
    {'estimator': 'ridge', 'estimator_params': {'alpha': 2.0}, 'encoding': 'onehot'}
    >>> make_oracle("sklearn", {"estimator": "os.system"})
    Traceback (most recent call last):
    ...
    ValueError: bad parameters for oracle 'sklearn': estimator 'os.system' is a module path; name one of the \
allowed models: hist_gradient_boosting, hist_gradient_boosting_classifier, logistic_regression, random_forest, \
random_forest_classifier, ridge
    """
    try:
        oracle = ORACLES[kind]
    except KeyError:
        raise ValueError(f"unknown oracle {kind!r}; known: {', '.join(sorted(ORACLES))}") from None
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
    if kind not in ORACLES:
        raise ValueError(f"artifact holds an unknown oracle kind {kind!r}")
    return ORACLES[kind]._from_payload(payload)


__all__ = [
    "ORACLES",
    "FeatureSpace",
    "LightGBMOracle",
    "RewardOracle",
    "RiverOracle",
    "SklearnOracle",
    "load_oracle",
    "make_oracle",
    "records_to_frame",
    "sha256_hex",
]
