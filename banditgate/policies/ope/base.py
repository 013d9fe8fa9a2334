"""The contract every off-policy estimator follows, and the inference they share."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar, Literal

import numpy as np

from banditgate.policies.ope.data import LoggedBandit
from banditgate.policies.ope.estimate import Estimate

CIMethod = Literal["normal", "bootstrap"]


@dataclass(frozen=True)
class Terms:
    """Per-row pieces of an estimate: ``V = mean(base) + sum(numerator) / sum(denominator)``.

    Estimators that are plain averages of per-row contributions (IPS, clipped IPS, DM, DR, Switch-DR) put
    the contributions in ``base`` and leave the ratio out. Self-normalised ones (SNIPS, SNDR) put their
    weighted terms in ``numerator`` and the importance weights in ``denominator``.
    """

    base: np.ndarray
    numerator: np.ndarray | None = None
    denominator: np.ndarray | None = None

    def value(self, rows: np.ndarray | None = None) -> float:
        """The estimate on all rows, or on the rows indexed by ``rows`` (a bootstrap resample)."""
        pick = slice(None) if rows is None else rows
        value = float(self.base[pick].mean())
        if self.numerator is not None and self.denominator is not None:
            value += float(self.numerator[pick].sum() / self.denominator[pick].sum())
        return value

    def influence(self) -> np.ndarray:
        """Per-row influence ``phi_i``: ``V - V_true ~ mean(phi)`` to first order (the delta method).

        ``phi_i = (base_i - mean(base)) + (numerator_i - R * denominator_i) / mean(denominator)`` with
        ``R = sum(numerator) / sum(denominator)``.
        """
        phi = self.base - self.base.mean()
        if self.numerator is not None and self.denominator is not None:
            mean_denominator = self.denominator.mean()
            ratio = self.numerator.sum() / self.denominator.sum()
            phi = phi + (self.numerator - ratio * self.denominator) / mean_denominator
        return phi


class Estimator(ABC):
    """Estimates the value of the target policy in a :class:`LoggedBandit` from logs of other policies.

    Subclasses implement :meth:`terms`; the base class adds the confidence interval, the standard error
    and the weight diagnostics.

    Intervals
        ``ci="normal"``: ``value +- z * se`` with ``se = sqrt(sum(phi^2) / (n * (n - 1)))`` over the
        per-row influence values ``phi`` (for plain averages, the usual standard error of the mean; for
        self-normalised estimators, the delta method). ``ci="bootstrap"``: the percentile interval of
        ``n_bootstrap`` estimates on rows resampled with replacement (seeded, so reproducible), and the
        standard deviation of those estimates as the standard error. The bootstrap costs ``n_bootstrap``
        passes over the rows (about 20 ms per pass per million rows) and its interval need not be centred
        on the estimate; every estimator given the same ``seed`` sees the same resamples.
    """

    name: ClassVar[str]
    #: Whether the estimator needs the oracle's reward predictions.
    requires_oracle: ClassVar[bool] = False

    def estimate(
        self,
        data: LoggedBandit,
        *,
        confidence: float = 0.95,
        ci: CIMethod = "normal",
        n_bootstrap: int = 1000,
        seed: int = 0,
    ) -> Estimate:
        """The estimate of the target policy's value, with its interval and diagnostics."""
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
        if ci not in ("normal", "bootstrap"):
            raise ValueError(f"ci must be 'normal' or 'bootstrap', got {ci!r}")
        if ci == "bootstrap" and n_bootstrap < 2:
            raise ValueError(f"n_bootstrap must be at least 2, got {n_bootstrap!r}")
        if self.requires_oracle:
            data.require_oracle(self.name)
        terms = self.terms(data)
        if terms.denominator is not None and not terms.denominator.sum() > 0.0:
            raise ValueError(f"{self.name} is undefined: the target policy gives probability 0 to every logged action")
        value = terms.value()
        n = data.n
        if ci == "normal":
            phi = terms.influence()
            std_error = math.sqrt(float(np.dot(phi, phi)) / (n * (n - 1)))
            half_width = NormalDist().inv_cdf(0.5 + confidence / 2.0) * std_error
            low, high = value - half_width, value + half_width
        else:
            rng = np.random.default_rng(seed)
            replicates = np.array([terms.value(rng.integers(0, n, size=n)) for _ in range(n_bootstrap)])
            std_error = float(replicates.std(ddof=1))
            low, high = (float(q) for q in np.quantile(replicates, [0.5 - confidence / 2.0, 0.5 + confidence / 2.0]))
        return Estimate(
            estimator=self.name,
            value=value,
            std_error=std_error,
            ci_low=low,
            ci_high=high,
            confidence=confidence,
            ci_method=ci,
            n=n,
            diagnostics=data.diagnostics,
            params=self.params(),
        )

    @abstractmethod
    def terms(self, data: LoggedBandit) -> Terms:
        """The per-row pieces of the estimate on ``data`` (see :class:`Terms`)."""

    def params(self) -> dict[str, float]:
        """Parameters, as reported with each estimate; ``type(self)(**estimator.params())`` rebuilds it."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
