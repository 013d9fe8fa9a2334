"""The contract every reward oracle follows, and the artifact envelope they are stored in."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from banditgate.policies.actions import Action, Features

if TYPE_CHECKING:  # the registry validates oracle specs in every serving process: pandas only where a frame is built
    import pandas as pd

    from banditgate.policies.oracles.features import FeatureSpace

ARTIFACT_MAGIC = b"banditgate-oracle/1 "


@dataclass(frozen=True)
class FeatureImportance:
    """Which inputs a fitted oracle relied on, normalised to sum to 1 over all of them.

    Parameters
    ----------
    method
        How it was measured (e.g. ``"lightgbm_gain"``), or None when the oracle has no honest measure.
    context
        Share of each context key (a key the model never used has 0; excluded keys are absent).
    action_id
        Share of the action id.
    action_features
        Share of each action feature.
    reason
        Why there is no measure (``method`` None), or what the measure means.
    """

    method: str | None
    context: dict[str, float] = field(default_factory=dict)
    action_id: float = 0.0
    action_features: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def from_columns(cls, method: str, columns: Sequence[str], values: Sequence[float], reason: str) -> Self:
        """Aggregate per-column importances of a :class:`FeatureSpace`'s columns (``c:key``, ``action_id``,
        ``a:feature``) into shares per context key, action id and action feature."""
        from banditgate.policies.oracles.features import ACTION_ID, ACTION_PREFIX, CONTEXT_PREFIX

        total = float(np.sum(values))
        shares = [float(v) / total if total > 0 else 0.0 for v in values]
        context: dict[str, float] = {}
        action: dict[str, float] = {}
        action_id = 0.0
        for column, share in zip(columns, shares, strict=True):
            if column == ACTION_ID:
                action_id += share
            elif column.startswith(CONTEXT_PREFIX):
                key = column[len(CONTEXT_PREFIX) :]
                context[key] = context.get(key, 0.0) + share
            elif column.startswith(ACTION_PREFIX):
                key = column[len(ACTION_PREFIX) :]
                action[key] = action.get(key, 0.0) + share
        ranked = dict(sorted(context.items(), key=lambda item: (-item[1], item[0])))
        return cls(method, ranked, action_id, dict(sorted(action.items())), reason)

    @classmethod
    def unavailable(cls, reason: str) -> Self:
        """No measure, and why."""
        return cls(None, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RewardOracle(ABC):
    """A regression oracle ``f(x, a) ~ E[reward | x, a]`` over (context, action id, action features).

    Follows the scikit-learn estimator contract: hyper-parameters in ``__init__``, learned state with a
    trailing underscore (``space_`` and the model), :meth:`fit` returns ``self``. Training takes a frame
    built by :func:`~banditgate.policies.oracles.features.records_to_frame`; serving scores every candidate
    action of one decision in a single vectorised call (:meth:`predict_decision`).
    """

    kind: ClassVar[str]
    #: The modules this oracle's models need (imported by :meth:`import_libraries`).
    libraries: ClassVar[tuple[str, ...]] = ()
    space_: FeatureSpace

    @classmethod
    def import_libraries(cls) -> None:
        """Import what loading and serving a model of this kind needs, ahead of the first model.

        Oracles import their libraries when first used, which keeps start-up fast where no model is served;
        a process that will serve one calls this first, so that a promotion does not stall it for the
        seconds of an import (with the GIL held).
        """
        import importlib

        for name in cls.libraries:
            importlib.import_module(name)

    @abstractmethod
    def fit(self, frame: pd.DataFrame, rewards: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        """Learn from logged (context, chosen action) rows and their rewards."""

    @abstractmethod
    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected reward of each row of a frame."""

    @abstractmethod
    def predict_decision(self, context: Features, actions: Sequence[Action]) -> np.ndarray:
        """Expected reward of each candidate action of one decision, in the order given."""

    def feature_importance(self) -> FeatureImportance:
        """Which context keys, action features and the action id the fitted model relied on."""
        return FeatureImportance.unavailable(f"the {self.kind} oracle has no measure of feature importance")

    @abstractmethod
    def hyperparameters(self) -> dict[str, Any]:
        """Hyper-parameters as recorded in the generation registry (JSON-serialisable)."""

    @abstractmethod
    def _payload(self) -> bytes:
        """The fitted model as bytes, the inverse of :meth:`_from_payload`."""

    @classmethod
    @abstractmethod
    def _from_payload(cls, payload: bytes) -> Self:
        """Rebuild a fitted oracle from :meth:`_payload`."""

    def to_bytes(self) -> bytes:
        """The artifact: a one-line header naming the oracle kind, then the model payload."""
        return ARTIFACT_MAGIC + self.kind.encode() + b"\n" + self._payload()

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "space_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_training_input(
    frame: pd.DataFrame, rewards: np.ndarray, sample_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The boundary check of every ``fit``: aligned lengths, finite rewards and non-negative weights."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if len(frame) == 0:
        raise ValueError("cannot fit an oracle on an empty training set")
    if rewards.shape != (len(frame),):
        raise ValueError(f"rewards has shape {rewards.shape}, expected ({len(frame)},)")
    if not np.all(np.isfinite(rewards)):
        raise ValueError("rewards must be finite")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.shape != rewards.shape or np.any(sample_weight < 0) or not np.all(np.isfinite(sample_weight)):
            raise ValueError("sample_weight must be finite, non-negative and one per row")
    return rewards, sample_weight
