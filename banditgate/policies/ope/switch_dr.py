"""Switch doubly robust estimator (Switch-DR)."""

from __future__ import annotations

import numpy as np

from banditgate.policies.ope.base import Estimator, Terms
from banditgate.policies.ope.data import LoggedBandit

#: Default importance-weight threshold of :class:`SwitchDR`.
DEFAULT_TAU = 20.0


class SwitchDR(Estimator):
    """DR where the importance weight is at most ``tau``, the direct method where it is larger.

    ``V = (1/n) sum_i [ sum_a pi(a | x_i) q(x_i, a) + 1{w_i <= tau} w_i (r_i - q(x_i, a_i)) ]``.

    Rows whose weight exceeds ``tau`` keep only their oracle term, so huge weights cannot blow up the
    variance; the price is the oracle's bias on the (context, action) cells with ``w > tau``. In expectation
    this row-wise form equals Wang et al.'s per-cell switch (which needs every action's logging
    probability; the logs here keep only the chosen one's): ``E = E_x[ sum_{a: w(x,a) <= tau} pi(a|x)
    r(x,a) + sum_{a: w(x,a) > tau} pi(a|x) q(x,a) ]``. ``tau = inf`` (or ``tau >= max(w)``) gives
    :class:`~banditgate.policies.ope.doubly_robust.DoublyRobust`, ``tau = 0`` the direct method. Wang et al.
    pick ``tau`` by minimising an estimate of the mean squared error; here it is a fixed parameter.

    Parameters
    ----------
    tau
        Importance-weight threshold, ``>= 0``; ``inf`` never switches.

    Examples
    --------
    >>> from banditgate.policies.ope import LoggedBandit
    >>> data = LoggedBandit(rewards=[1.0, 0.0, 1.0], actions=[0, 1, 1], propensities=[0.5, 0.5, 0.25],
    ...                     target=[[0.8, 0.2]] * 3, oracle=[[0.9, 0.5], [0.7, 0.3], [0.6, 0.4]])
    >>> round(SwitchDR(tau=1.0).estimate(data).value, 6)  # row 0 (w = 1.6) loses its correction 0.16
    0.786667

    References
    ----------
    Wang, Agarwal & Dudik, "Optimal and adaptive off-policy evaluation in contextual bandits", ICML 2017
    (arXiv:1612.01205); Saito et al., "Open Bandit Dataset and Pipeline" (arXiv:2008.07146), estimator
    ``SwitchDoublyRobust`` (the same row-wise form).
    """

    name = "switch_dr"
    requires_oracle = True

    def __init__(self, tau: float = DEFAULT_TAU) -> None:
        if not tau >= 0.0:
            raise ValueError(f"tau must be a non-negative number (inf never switches), got {tau!r}")
        self.tau = float(tau)

    def terms(self, data: LoggedBandit) -> Terms:
        weights = data.importance_weights
        kept = np.where(weights <= self.tau, weights, 0.0)
        return Terms(base=data.oracle_target + kept * (data.rewards - data.oracle_logged))

    def params(self) -> dict[str, float]:
        return {"tau": self.tau}
