"""Inverse propensity scoring (IPS)."""

from __future__ import annotations

from banditgate.policies.ope.base import Estimator, Terms
from banditgate.policies.ope.data import LoggedBandit


class IPS(Estimator):
    """Inverse propensity scoring, the Horvitz-Thompson estimator.

    ``V = (1/n) sum_i w_i r_i`` with ``w_i = pi(a_i | x_i) / p_i``.

    Unbiased whenever every action the target policy can take had a positive logged probability and the
    logged propensities are right (each row with its own, so logs of several generations mix freely). Its
    variance grows with the weights: see the diagnostics, and prefer SNIPS or DR when the ESS is small.
    It is not equivariant to a shift of the rewards (``r + c`` moves it by ``c * mean(w)``, not ``c``).

    Examples
    --------
    >>> from banditgate.policies.ope import LoggedBandit
    >>> data = LoggedBandit(rewards=[1.0, 0.0, 1.0], actions=[0, 1, 1], propensities=[0.5, 0.5, 0.25],
    ...                     target=[[0.8, 0.2]] * 3)
    >>> round(IPS().estimate(data).value, 6)  # weights 1.6, 0.4, 0.8: (1.6 + 0 + 0.8) / 3
    0.8

    References
    ----------
    Horvitz & Thompson, "A generalization of sampling without replacement from a finite universe", JASA 47,
    1952; Precup, Sutton & Singh, "Eligibility traces for off-policy policy evaluation", ICML 2000;
    Strehl, Langford, Li & Kakade, "Learning from logged implicit exploration data", NeurIPS 2010.
    """

    name = "ips"

    def terms(self, data: LoggedBandit) -> Terms:
        return Terms(base=data.importance_weights * data.rewards)
