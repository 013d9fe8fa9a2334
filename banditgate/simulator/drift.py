"""Drift scenarios: what moves (P(X), P(Y|X) or P(Y)), how much, and from when.

Each kind of drift ramps in linearly after its onset, as in the blind-period model (docs/methods.md):
``effect(day) = magnitude * min(1, max(0, (day - onset_day) / ramp_days))``, with ``day`` counted from the
world's epoch. The effect is a number in [0, 1] that the parts of the world read:

- **covariate** (``P(X)`` moves, ``P(Y|X)`` does not): the context sampler tilts the mix towards foreign
  (US, BR, IN, CA) cardholders, high-ticket merchant categories, larger amounts, in-app payments and
  wallets (a merchant portfolio expanding into new markets). The authorisation and chargeback models ignore
  it, so the true probability of any fixed (context, action) pair is unchanged.
- **concept** (``P(Y|X)`` moves, ``P(X)`` does not): issuers change behaviour, so the best action changes
  for some segments while the features look exactly the same: SCA-region issuers in DE/FR/IT/ES start
  refusing exemption requests, 3-D Secure gets less friction, the secondary acquirer loses its edge with
  American issuers and gains one with European ones, the Brazilian local acquirer degrades and the set of
  issuers where an instant retry pays off rotates. The context sampler ignores it: for the same seed the
  traffic is identical to the no-drift scenario, so no label-free detector can see it.
- **prior** (``P(Y)`` moves): the base authorisation rate falls (logit shift of ``-1.0 * effect``, e.g. issuers
  tightening in a downturn) and the chargeback rate rises (logit shift of ``+0.8 * effect``). The shift is the
  same for every action, so the ranking of actions in any context is unchanged; only the level moves.

Defaults follow the paper's scenarios (arXiv 2604.15740: covariate 0.6 from day 15, concept 0.8 from day 10,
mixed = covariate 0.4 from day 15 + concept 0.5 from day 20). The paper gives no prior-drift magnitude; the
default here is 0.5 from day 15. The ramp is 90 days, the blind-period model's constant.

References
----------
"Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (blind-period drift model);
Moreno-Torres et al., "A unifying view on dataset shift in classification", Pattern Recognition 45 (2012).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

#: Days for an effect to reach its full magnitude (the blind-period model's ``(t - onset) / 90``).
DEFAULT_RAMP_DAYS = 90.0

KINDS = ("covariate", "concept", "prior")


@dataclass(frozen=True, slots=True)
class DriftRamp:
    """One kind of drift: ``magnitude * min(1, max(0, (day - onset_day) / ramp_days))``.

    Parameters
    ----------
    magnitude
        Full-strength effect, in [0, 1].
    onset_day
        Day (since the world's epoch) the drift starts.
    ramp_days
        Days to reach full strength; 0 makes it a step.

    Examples
    --------
    >>> ramp = DriftRamp(magnitude=0.8, onset_day=10)
    >>> [round(float(ramp.effect(d)), 3) for d in (0, 10, 55, 100, 200)]
    [0.0, 0.0, 0.4, 0.8, 0.8]
    """

    magnitude: float
    onset_day: float
    ramp_days: float = DEFAULT_RAMP_DAYS

    def __post_init__(self) -> None:
        if not 0.0 <= self.magnitude <= 1.0:
            raise ValueError(f"drift magnitude must be in [0, 1], got {self.magnitude!r}")
        if not np.isfinite(self.onset_day):
            raise ValueError(f"onset_day must be finite, got {self.onset_day!r}")
        if not (self.ramp_days >= 0.0 and np.isfinite(self.ramp_days)):
            raise ValueError(f"ramp_days must be a non-negative number, got {self.ramp_days!r}")

    def effect(self, day: float | np.ndarray) -> float | np.ndarray:
        """Effect in [0, magnitude] at ``day`` (a number or an array of days)."""
        elapsed = np.asarray(day, dtype=np.float64) - self.onset_day
        if self.ramp_days == 0.0:
            progress = (elapsed >= 0.0).astype(np.float64)
        else:
            with np.errstate(over="ignore"):  # a tiny ramp: a step, up to rounding
                progress = np.clip(elapsed / self.ramp_days, 0.0, 1.0)
        out = self.magnitude * progress
        return float(out) if out.ndim == 0 else out


@dataclass(frozen=True, slots=True)
class DriftEffects:
    """Effects of each kind of drift at some time(s): numbers, or arrays with one entry per transaction."""

    covariate: float | np.ndarray = 0.0
    concept: float | np.ndarray = 0.0
    prior: float | np.ndarray = 0.0


@dataclass(frozen=True, slots=True)
class DriftScenario:
    """A named combination of drifts; a kind left ``None`` does not drift.

    Parameters
    ----------
    name
        Label used in reports.
    covariate, concept, prior
        The ramp of each kind of drift, or ``None``.

    Examples
    --------
    >>> mixed = DriftScenario.preset("mixed")
    >>> effects = mixed.effects(65.0)
    >>> round(effects.covariate, 3), round(effects.concept, 3), effects.prior
    (0.222, 0.25, 0.0)
    >>> DriftScenario.preset("concept", magnitude=0.5, onset_day=0).concept
    DriftRamp(magnitude=0.5, onset_day=0, ramp_days=90.0)
    """

    name: str = "none"
    covariate: DriftRamp | None = None
    concept: DriftRamp | None = None
    prior: DriftRamp | None = None

    @classmethod
    def preset(
        cls,
        name: str,
        magnitude: float | None = None,
        onset_day: float | None = None,
        ramp_days: float = DEFAULT_RAMP_DAYS,
    ) -> DriftScenario:
        """One of :data:`PRESETS` (``none``, ``covariate``, ``concept``, ``prior``, ``mixed``).

        ``magnitude`` and ``onset_day`` override the defaults of every component (both of ``mixed``).
        """
        try:
            scenario = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown drift scenario {name!r}; known: {', '.join(PRESETS)}") from None
        parts = {}
        for kind in KINDS:
            ramp = getattr(scenario, kind)
            if ramp is not None:
                parts[kind] = DriftRamp(
                    magnitude=ramp.magnitude if magnitude is None else magnitude,
                    onset_day=ramp.onset_day if onset_day is None else onset_day,
                    ramp_days=ramp_days,
                )
        return replace(scenario, **parts)

    def effects(self, day: float | np.ndarray) -> DriftEffects:
        """The effect of each kind of drift at ``day`` (days since the world's epoch)."""
        zero: float | np.ndarray = 0.0 if np.ndim(day) == 0 else np.zeros(np.shape(day))
        return DriftEffects(
            covariate=zero if self.covariate is None else self.covariate.effect(day),
            concept=zero if self.concept is None else self.concept.effect(day),
            prior=zero if self.prior is None else self.prior.effect(day),
        )

    @property
    def moves_contexts(self) -> bool:
        """Whether the scenario changes P(X) (a label-free detector can see it)."""
        return self.covariate is not None and self.covariate.magnitude > 0.0


#: The scenarios of arXiv 2604.15740 (docs/methods.md), plus prior drift (0.5 from day 15: a choice, the paper has
#: none).
PRESETS: dict[str, DriftScenario] = {
    "none": DriftScenario("none"),
    "covariate": DriftScenario("covariate", covariate=DriftRamp(0.6, 15)),
    "concept": DriftScenario("concept", concept=DriftRamp(0.8, 10)),
    "prior": DriftScenario("prior", prior=DriftRamp(0.5, 15)),
    "mixed": DriftScenario("mixed", covariate=DriftRamp(0.4, 15), concept=DriftRamp(0.5, 20)),
}


def as_scenario(scenario: str | DriftScenario) -> DriftScenario:
    """A scenario from its preset name, or the scenario itself."""
    return scenario if isinstance(scenario, DriftScenario) else DriftScenario.preset(scenario)
