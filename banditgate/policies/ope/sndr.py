"""Self-normalised doubly robust estimator (SNDR)."""

from __future__ import annotations

from banditgate.policies.ope.base import Estimator, Terms
from banditgate.policies.ope.data import LoggedBandit


class SelfNormalizedDR(Estimator):
    """Doubly robust with the correction term self-normalised, as SNIPS normalises IPS.

    ``V = (1/n) sum_i sum_a pi(a | x_i) q(x_i, a) + sum_i w_i (r_i - q(x_i, a_i)) / sum_i w_i``.

    Keeps DR's robustness to a wrong oracle (consistent when the propensities are right) while bounding the
    correction by the range of the residuals, which tames rows with huge weights; the price is a bias of
    order ``1/n``. Interval by the delta method: per-row influence
    ``(dm_i - mean(dm)) + w_i (e_i - B) / mean(w)`` with ``e_i`` the residual and ``B`` the normalised
    correction. Undefined (a ``ValueError``) when every weight is zero.

    Examples
    --------
    >>> from banditgate.policies.ope import LoggedBandit
    >>> data = LoggedBandit(rewards=[1.0, 0.0, 1.0], actions=[0, 1, 1], propensities=[0.5, 0.5, 0.25],
    ...                     target=[[0.8, 0.2]] * 3, oracle=[[0.9, 0.5], [0.7, 0.3], [0.6, 0.4]])
    >>> round(SelfNormalizedDR().estimate(data).value, 6)  # 2.0 / 3 + (0.16 - 0.12 + 0.48) / (1.6 + 0.4 + 0.8)
    0.852381

    References
    ----------
    Kallus & Uehara, "Intrinsically efficient, stable, and bounded off-policy evaluation for reinforcement
    learning", NeurIPS 2019 (arXiv:1906.03735); Saito, Aihara, Matsutani & Narita, "Open Bandit Dataset and
    Pipeline", NeurIPS 2021 Datasets and Benchmarks (arXiv:2008.07146), estimator ``SelfNormalizedDoublyRobust``.
    """

    name = "sndr"
    requires_oracle = True

    def terms(self, data: LoggedBandit) -> Terms:
        weights = data.importance_weights
        return Terms(
            base=data.oracle_target,
            numerator=weights * (data.rewards - data.oracle_logged),
            denominator=weights,
        )
