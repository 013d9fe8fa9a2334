"""Self-normalised inverse propensity scoring (SNIPS)."""

from __future__ import annotations

import numpy as np

from banditgate.policies.ope.base import Estimator, Terms
from banditgate.policies.ope.data import LoggedBandit


class SNIPS(Estimator):
    """Self-normalised IPS: the weighted mean of the logged rewards.

    ``V = sum_i w_i r_i / sum_i w_i``.

    Dividing by the realised total weight instead of ``n`` (its expectation) makes the estimate a convex
    combination of observed rewards, so it stays within their range, is equivariant to shifts of the
    rewards and usually has a much smaller variance than IPS; the price is a bias of order ``1/n``. The
    interval uses the delta method: per-row influence ``w_i (r_i - V) / mean(w)``. Undefined (a
    ``ValueError``) when every weight is zero.

    Examples
    --------
    >>> from banditgate.policies.ope import LoggedBandit
    >>> data = LoggedBandit(rewards=[1.0, 0.0, 1.0], actions=[0, 1, 1], propensities=[0.5, 0.5, 0.25],
    ...                     target=[[0.8, 0.2]] * 3)
    >>> round(SNIPS().estimate(data).value, 6)  # weights 1.6, 0.4, 0.8: (1.6 + 0.8) / (1.6 + 0.4 + 0.8)
    0.857143

    References
    ----------
    Swaminathan & Joachims, "The self-normalized estimator for counterfactual learning", NeurIPS 2015;
    Hesterberg, "Weighted average importance sampling and defensive mixture distributions",
    Technometrics 37(2), 1995.
    """

    name = "snips"

    def terms(self, data: LoggedBandit) -> Terms:
        weights = data.importance_weights
        return Terms(base=np.zeros(data.n), numerator=weights * data.rewards, denominator=weights)
