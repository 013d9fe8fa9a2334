"""Recalibration of an oracle's scores: a monotone map from the raw score to the observed reward.

An oracle trained on one generation's logs can rank the actions well and still be off in level (a regression
oracle on imbalanced logs, say). Isotonic regression (Zadrozny & Elkan 2002) fits the non-decreasing step
function ``g`` that minimises ``sum_i (g(s_i) - y_i)^2`` over held-out pairs of raw score ``s_i`` and reward
``y_i`` in [0, 1]; the calibrated score is ``g(s)``, linear between the fitted thresholds and clipped outside
them. The map is stored as two plain arrays and applied with :func:`numpy.interp`: serving needs no
scikit-learn, and the same arrays give the same floats on every replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np

Calibration = Literal["none", "isotonic"]
#: The calibrations a retraining may name (``none``: the raw scores).
CALIBRATIONS: tuple[str, ...] = ("none", "isotonic")


def check_calibration(name: str) -> Calibration:
    """``name`` if it is one of :data:`CALIBRATIONS`, else :class:`ValueError` naming the allowed ones."""
    if name not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {name!r}: {' or '.join(CALIBRATIONS)}")
    return name  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class IsotonicCalibration:
    """A fitted isotonic map from raw score to calibrated score.

    Parameters
    ----------
    thresholds
        Strictly increasing raw scores (scikit-learn's ``X_thresholds_``).
    values
        Non-decreasing calibrated scores in [0, 1] at the thresholds (``y_thresholds_``).
    rows
        How many held-out rows it was fitted on.

    Examples
    --------
    >>> calibration = IsotonicCalibration.fit(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 0.0, 1.0, 1.0]))
    >>> calibration.apply(np.array([0.0, 0.25, 0.5])).tolist()
    [0.0, 0.5, 1.0]
    """

    thresholds: np.ndarray
    values: np.ndarray
    rows: int = 0

    def __post_init__(self) -> None:
        x = np.asarray(self.thresholds, dtype=np.float64)
        y = np.asarray(self.values, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
            raise ValueError("calibration thresholds and values must be two non-empty arrays of the same length")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("calibration thresholds and values must be finite")
        if np.any(np.diff(x) <= 0.0) or np.any(np.diff(y) < 0.0):
            raise ValueError("calibration thresholds must increase and values must not decrease")
        if y[0] < 0.0 or y[-1] > 1.0:
            raise ValueError("calibrated values must lie in [0, 1]")
        object.__setattr__(self, "thresholds", x)
        object.__setattr__(self, "values", y)

    @classmethod
    def fit(cls, scores: np.ndarray, rewards: np.ndarray) -> Self:
        """Fit on held-out raw scores and their observed rewards (each in [0, 1])."""
        from sklearn.isotonic import IsotonicRegression

        scores = np.asarray(scores, dtype=np.float64)
        rewards = np.asarray(rewards, dtype=np.float64)
        if scores.shape != rewards.shape or scores.ndim != 1 or len(scores) == 0:
            raise ValueError("calibration needs one raw score per reward, at least one")
        if not (np.all(np.isfinite(scores)) and np.all(rewards >= 0.0) and np.all(rewards <= 1.0)):
            raise ValueError("isotonic calibration maps scores to probabilities: rewards must lie in [0, 1]")
        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(scores, rewards)
        return cls(model.X_thresholds_, model.y_thresholds_, len(scores))

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated scores: linear between the thresholds, clipped to the end values outside them."""
        return np.interp(scores, self.thresholds, self.values)

    def to_dict(self) -> dict[str, Any]:
        # Python's float repr round-trips float64 exactly, so a stored map scores bit for bit as fitted.
        return {
            "method": "isotonic",
            "thresholds": self.thresholds.tolist(),
            "values": self.values.tolist(),
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if data.get("method") != "isotonic":
            raise ValueError(f"unknown calibration in artifact: {data.get('method')!r}")
        return cls(np.asarray(data["thresholds"]), np.asarray(data["values"]), int(data.get("rows", 0)))

    def describe(self) -> dict[str, Any]:
        """What the generation's report records: the method, rows fitted on and the number of thresholds."""
        return {"method": "isotonic", "rows": self.rows, "thresholds": len(self.thresholds)}
