"""Logged bandit feedback, validated once, as the arrays every off-policy estimator reads."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from banditgate.policies.ope.diagnostics import WeightDiagnostics

#: Tolerance on the sum of a row of target probabilities over its eligible slots.
TARGET_SUM_TOLERANCE = 1e-6


def _frozen(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


def _float_array(name: str, values: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    array = np.array(values, dtype=np.float64)  # always a copy, so the caller's array stays theirs
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    return array


def _first_bad_row(bad: np.ndarray) -> int:
    rows = bad if bad.ndim == 1 else bad.any(axis=1)
    return int(np.flatnonzero(rows)[0])


@dataclass(frozen=True, eq=False)
class LoggedBandit:
    """Logged contextual-bandit feedback for off-policy evaluation: ``n`` rows over ``K`` action slots.

    Every row is one logged decision. Action sets may differ between rows (dynamic action spaces): pad
    them to ``K`` slots and mark the real ones in ``eligible``. Logs may mix policy generations, so each
    row carries the propensity under which *its own* action was drawn. The inputs are copied, validated
    and stored as read-only float arrays (``actions`` as int64, ``eligible`` as bool).

    Parameters
    ----------
    rewards
        Observed reward of the chosen action, shape ``(n,)``, finite.
    actions
        Index of the chosen slot, shape ``(n,)``, integers in ``[0, K)``; the slot must be eligible.
    propensities
        Logged probability of the chosen action under the policy that chose it, shape ``(n,)``, in (0, 1].
    target
        Probability of every slot under the target policy, shape ``(n, K)``, in [0, 1]. Each row sums to 1
        within ``1e-6`` and gives probability 0 to ineligible slots.
    oracle
        Optional predicted reward of every slot, shape ``(n, K)``, for the model-based estimators. Finite
        on eligible slots; ineligible slots are ignored (they may hold NaN) and stored as 0.
    eligible
        Optional boolean mask of the eligible slots, shape ``(n, K)``; default: all slots are eligible.

    At least two rows are required: a standard error needs two.

    Examples
    --------
    Two rows over three slots; the second row's third slot is padding:

    >>> data = LoggedBandit(
    ...     rewards=[1.0, 0.0],
    ...     actions=[0, 1],
    ...     propensities=[0.5, 0.25],
    ...     target=[[0.2, 0.4, 0.4], [0.5, 0.5, 0.0]],
    ...     eligible=[[True, True, True], [True, True, False]],
    ... )
    >>> data.n, data.n_actions, data.importance_weights.tolist()
    (2, 3, [0.4, 2.0])
    >>> LoggedBandit(rewards=[1.0, 0.0], actions=[0, 2], propensities=[0.5, 0.25], target=[[0.2, 0.4, 0.4]] * 2,
    ...              eligible=[[True, True, True], [True, True, False]])
    Traceback (most recent call last):
    ...
    ValueError: row 1: the chosen action 2 is not eligible
    """

    rewards: np.ndarray
    actions: np.ndarray
    propensities: np.ndarray
    target: np.ndarray
    oracle: np.ndarray | None = None
    eligible: np.ndarray | None = None

    def __post_init__(self) -> None:
        rewards = np.array(self.rewards, dtype=np.float64)
        if rewards.ndim != 1:
            raise ValueError(f"rewards must be 1-d, got shape {rewards.shape}")
        n = rewards.size
        if n < 2:
            raise ValueError(f"at least 2 logged rows are needed, got {n}")
        target = np.array(self.target, dtype=np.float64)
        if target.ndim != 2 or target.shape[0] != n or target.shape[1] < 1:
            raise ValueError(f"target must have shape (n, K) = ({n}, K) with K >= 1, got {target.shape}")
        k = target.shape[1]

        if not np.all(np.isfinite(rewards)):
            raise ValueError(f"row {_first_bad_row(~np.isfinite(rewards))}: rewards must be finite")

        actions = np.array(self.actions)
        if actions.shape != (n,):
            raise ValueError(f"actions must have shape ({n},), got {actions.shape}")
        if actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be integer slot indices, got dtype {actions.dtype}")
        actions = actions.astype(np.int64)
        out_of_range = (actions < 0) | (actions >= k)
        if out_of_range.any():
            row = _first_bad_row(out_of_range)
            raise ValueError(f"row {row}: action {actions[row]} is out of range [0, {k})")

        propensities = _float_array("propensities", self.propensities, (n,))
        bad = ~((propensities > 0.0) & (propensities <= 1.0))  # also catches NaN
        if bad.any():
            row = _first_bad_row(bad)
            raise ValueError(f"row {row}: propensity must be in (0, 1], got {float(propensities[row])!r}")

        if self.eligible is None:
            eligible = np.ones((n, k), dtype=bool)
        else:
            eligible = np.array(self.eligible)
            if eligible.shape != (n, k):
                raise ValueError(f"eligible must have shape {(n, k)}, got {eligible.shape}")
            if eligible.dtype != np.bool_:
                raise ValueError(f"eligible must be a boolean mask, got dtype {eligible.dtype}")
        rows = np.arange(n)
        if not eligible[rows, actions].all():
            row = _first_bad_row(~eligible[rows, actions])
            raise ValueError(f"row {row}: the chosen action {actions[row]} is not eligible")

        bad = ~((target >= 0.0) & (target <= 1.0))
        if bad.any():
            raise ValueError(f"row {_first_bad_row(bad)}: target probabilities must be finite and in [0, 1]")
        if (target[~eligible] != 0.0).any():
            row = _first_bad_row((target != 0.0) & ~eligible)
            raise ValueError(f"row {row}: target gives non-zero probability to an ineligible slot")
        sums = target.sum(axis=1)
        bad = np.abs(sums - 1.0) > TARGET_SUM_TOLERANCE
        if bad.any():
            row = _first_bad_row(bad)
            raise ValueError(f"row {row}: target probabilities sum to {float(sums[row])!r}, not 1")

        oracle = None
        if self.oracle is not None:
            oracle = _float_array("oracle", self.oracle, (n, k))
            bad = ~np.isfinite(oracle) & eligible
            if bad.any():
                raise ValueError(f"row {_first_bad_row(bad)}: oracle predictions must be finite on eligible slots")
            oracle[~eligible] = 0.0

        for name, value in [
            ("rewards", rewards),
            ("actions", actions),
            ("propensities", propensities),
            ("target", target),
            ("oracle", oracle),
            ("eligible", eligible),
        ]:
            object.__setattr__(self, name, value if value is None else _frozen(value))

    @property
    def n(self) -> int:
        """Number of logged rows."""
        return self.rewards.size

    @property
    def n_actions(self) -> int:
        """Number of action slots ``K`` (eligible or padding)."""
        return self.target.shape[1]

    @cached_property
    def importance_weights(self) -> np.ndarray:
        """``w_i = pi(a_i | x_i) / p_i``: target probability of the logged action over its own propensity."""
        return _frozen(self.target[np.arange(self.n), self.actions] / self.propensities)

    @cached_property
    def diagnostics(self) -> WeightDiagnostics:
        """Diagnostics of :attr:`importance_weights` (effective sample size, largest weight, tail)."""
        return WeightDiagnostics.of(self.importance_weights)

    def require_oracle(self, estimator: str) -> np.ndarray:
        """The oracle predictions, or a ``ValueError`` naming the estimator that needs them."""
        if self.oracle is None:
            raise ValueError(f"{estimator} needs oracle predictions: build LoggedBandit with oracle=...")
        return self.oracle

    @cached_property
    def oracle_logged(self) -> np.ndarray:
        """``q(x_i, a_i)``: the oracle's prediction for the logged action (needs an oracle)."""
        return _frozen(self.require_oracle("the oracle's logged-action predictions")[np.arange(self.n), self.actions])

    @cached_property
    def oracle_target(self) -> np.ndarray:
        """``sum_a pi(a | x_i) q(x_i, a)``: the oracle's expected reward of the target policy per row."""
        return _frozen(np.einsum("ij,ij->i", self.target, self.require_oracle("the direct method")))
