"""The doubly robust estimator (DR)."""

from __future__ import annotations

from banditgate.policies.ope.base import Estimator, Terms
from banditgate.policies.ope.data import LoggedBandit


class DoublyRobust(Estimator):
    """Doubly robust: the direct method plus an importance-weighted correction of the oracle's error.

    ``V = (1/n) sum_i [ sum_a pi(a | x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i)) ]``.

    Unbiased when the propensities are right, whatever the oracle (the correction has the oracle's bias as
    its expectation); when the oracle is right as well the correction only adds noise around zero, and the
    variance is usually well below that of IPS because the weights multiply residuals, not rewards.
    Equivariant to a shift of rewards and oracle together.

    Examples
    --------
    >>> from banditgate.policies.ope import LoggedBandit
    >>> data = LoggedBandit(rewards=[1.0, 0.0, 1.0], actions=[0, 1, 1], propensities=[0.5, 0.5, 0.25],
    ...                     target=[[0.8, 0.2]] * 3, oracle=[[0.9, 0.5], [0.7, 0.3], [0.6, 0.4]])
    >>> round(DoublyRobust().estimate(data).value, 6)  # DM rows 0.82, 0.62, 0.56; corrections 0.16, -0.12, 0.48
    0.84

    References
    ----------
    Dudik, Langford & Li, "Doubly robust policy evaluation and learning", ICML 2011 (arXiv:1103.4601);
    Robins, Rotnitzky & Zhao, "Estimation of regression coefficients when some regressors are not always
    observed", JASA 89, 1994.
    """

    name = "dr"
    requires_oracle = True

    def terms(self, data: LoggedBandit) -> Terms:
        return Terms(base=data.oracle_target + data.importance_weights * (data.rewards - data.oracle_logged))
