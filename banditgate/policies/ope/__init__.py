"""Off-policy evaluation: estimate a target policy's value from logs of the policies that were deployed.

Build a :class:`LoggedBandit` from arrays (rewards, chosen slots, each row's own logged propensity, the
target policy's probabilities, optionally oracle predictions and an eligibility mask), then call
:func:`evaluate_all` or one estimator's :meth:`~Estimator.estimate`. The estimators, by name:

- ``ips``: inverse propensity scoring (unbiased, high variance);
- ``clipped_ips``: IPS with weights capped at ``clip`` (biased down, lower variance);
- ``snips``: self-normalised IPS (small bias, much lower variance, bounded by the rewards);
- ``dm``: direct method, the oracle's prediction (low variance, as biased as the oracle);
- ``dr``: doubly robust (unbiased with right propensities, low variance with a good oracle);
- ``sndr``: DR with a self-normalised correction;
- ``switch_dr``: DR where the weight is at most ``tau``, DM above.

Each returns an :class:`Estimate` with a confidence interval, the standard error, the effective sample
size and importance-weight diagnostics.
"""

from __future__ import annotations

from banditgate.policies.ope.base import CIMethod, Estimator, Terms
from banditgate.policies.ope.clipped_ips import DEFAULT_CLIP, ClippedIPS
from banditgate.policies.ope.data import LoggedBandit
from banditgate.policies.ope.diagnostics import (
    WeightDiagnostics,
    effective_sample_size,
    hill_tail_index,
    top_share,
)
from banditgate.policies.ope.direct_method import DirectMethod
from banditgate.policies.ope.doubly_robust import DoublyRobust
from banditgate.policies.ope.estimate import Estimate
from banditgate.policies.ope.ips import IPS
from banditgate.policies.ope.sndr import SelfNormalizedDR
from banditgate.policies.ope.snips import SNIPS
from banditgate.policies.ope.switch_dr import DEFAULT_TAU, SwitchDR

ESTIMATORS: dict[str, type[Estimator]] = {
    e.name: e for e in (IPS, ClippedIPS, SNIPS, DirectMethod, DoublyRobust, SelfNormalizedDR, SwitchDR)
}


def evaluate_all(
    data: LoggedBandit,
    *,
    clip: float = DEFAULT_CLIP,
    tau: float = DEFAULT_TAU,
    confidence: float = 0.95,
    ci: CIMethod = "normal",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """All seven estimates on ``data``, keyed by estimator name, in the order of :data:`ESTIMATORS`.

    ``data`` must carry oracle predictions (DM, DR, SNDR and Switch-DR need them); without, call
    IPS, clipped IPS and SNIPS one by one. The other arguments go to :meth:`Estimator.estimate`.

    Examples
    --------
    >>> data = LoggedBandit(rewards=[1.0, 0.0, 1.0], actions=[0, 1, 1], propensities=[0.5, 0.5, 0.25],
    ...                     target=[[0.8, 0.2]] * 3, oracle=[[0.9, 0.5], [0.7, 0.3], [0.6, 0.4]])
    >>> {name: round(e.value, 4) for name, e in evaluate_all(data, clip=1.0, tau=1.0).items()}
    {'ips': 0.8, 'clipped_ips': 0.6, 'snips': 0.8571, 'dm': 0.6667, 'dr': 0.84, 'sndr': 0.8524, 'switch_dr': 0.7867}
    """
    data.require_oracle("evaluate_all (for DM, DR, SNDR and Switch-DR)")
    estimators: list[Estimator] = [
        IPS(),
        ClippedIPS(clip=clip),
        SNIPS(),
        DirectMethod(),
        DoublyRobust(),
        SelfNormalizedDR(),
        SwitchDR(tau=tau),
    ]
    return {
        e.name: e.estimate(data, confidence=confidence, ci=ci, n_bootstrap=n_bootstrap, seed=seed) for e in estimators
    }


__all__ = [
    "DEFAULT_CLIP",
    "DEFAULT_TAU",
    "ESTIMATORS",
    "IPS",
    "SNIPS",
    "CIMethod",
    "ClippedIPS",
    "DirectMethod",
    "DoublyRobust",
    "Estimate",
    "Estimator",
    "LoggedBandit",
    "SelfNormalizedDR",
    "SwitchDR",
    "Terms",
    "WeightDiagnostics",
    "effective_sample_size",
    "evaluate_all",
    "hill_tail_index",
    "top_share",
]
