"""The result of an off-policy estimator: value, uncertainty and weight diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field

from banditgate.policies.ope.diagnostics import WeightDiagnostics


@dataclass(frozen=True)
class Estimate:
    """An off-policy estimate of a target policy's value (its expected reward per decision).

    Attributes
    ----------
    estimator
        Name of the estimator, e.g. ``"snips"``.
    value
        Point estimate.
    std_error
        Standard error: from the per-row contributions (delta method for self-normalised estimators), or
        the standard deviation of the bootstrap replicates.
    ci_low, ci_high
        Confidence interval at level ``confidence``.
    confidence
        Nominal coverage of the interval, e.g. 0.95.
    ci_method
        ``"normal"`` (``value +- z * std_error``) or ``"bootstrap"`` (percentile interval).
    n
        Number of logged rows.
    diagnostics
        Importance-weight diagnostics of the data (the same for every estimator on the same data).
    params
        The estimator's parameters, e.g. ``{"clip": 20.0}``; empty when it has none.
    """

    estimator: str
    value: float
    std_error: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_method: str
    n: int
    diagnostics: WeightDiagnostics
    params: dict[str, float] = field(default_factory=dict)

    @property
    def ci(self) -> tuple[float, float]:
        """``(ci_low, ci_high)``."""
        return self.ci_low, self.ci_high

    @property
    def ess(self) -> float:
        """Effective sample size of the importance weights, ``(sum w)^2 / sum w^2``."""
        return self.diagnostics.ess
