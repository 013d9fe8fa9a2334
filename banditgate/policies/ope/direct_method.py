"""The direct method (DM): the oracle's prediction of the target policy's reward."""

from __future__ import annotations

from banditgate.policies.ope.base import Estimator, Terms
from banditgate.policies.ope.data import LoggedBandit


class DirectMethod(Estimator):
    """Direct method: average the oracle's expected reward of the target policy over the logged contexts.

    ``V = (1/n) sum_i sum_a pi(a | x_i) q(x_i, a)``.

    It ignores the logged rewards and weights, so its variance is small, but it is exactly as good as the
    oracle ``q``: a misspecified or biased oracle biases it, and nothing in the data flags it. Its interval
    only reflects the sampling of contexts, not the oracle's own estimation error, so it is too narrow
    unless ``q`` is (close to) the true mean reward. Use it as a reference next to DR, not alone.

    Examples
    --------
    >>> from banditgate.policies.ope import LoggedBandit
    >>> data = LoggedBandit(rewards=[1.0, 0.0, 1.0], actions=[0, 1, 1], propensities=[0.5, 0.5, 0.25],
    ...                     target=[[0.8, 0.2]] * 3, oracle=[[0.9, 0.5], [0.7, 0.3], [0.6, 0.4]])
    >>> round(DirectMethod().estimate(data).value, 6)  # rows: 0.82, 0.62, 0.56
    0.666667

    References
    ----------
    Beygelzimer & Langford, "The offset tree for learning with partial labels", KDD 2009; Dudik, Langford
    & Li, "Doubly robust policy evaluation and learning", ICML 2011 (arXiv:1103.4601).
    """

    name = "dm"
    requires_oracle = True

    def terms(self, data: LoggedBandit) -> Terms:
        return Terms(base=data.oracle_target)
