"""Clipped (truncated) inverse propensity scoring."""

from __future__ import annotations

import numpy as np

from banditgate.policies.ope.base import Estimator, Terms
from banditgate.policies.ope.data import LoggedBandit

#: Default cap on the importance weights of :class:`ClippedIPS`.
DEFAULT_CLIP = 20.0


class ClippedIPS(Estimator):
    """IPS with the importance weights capped at ``clip``.

    ``V = (1/n) sum_i min(w_i, M) r_i`` with ``M = clip``.

    Clipping trades variance for bias: rows whose weight exceeds ``M`` count for ``M`` only, so with
    non-negative rewards the estimate is biased downwards by ``E[(w - M)_+ r]``. The interval covers the
    clipped quantity, not the policy value; compare ``max_weight`` in the diagnostics with ``clip`` to see
    whether clipping was active. With ``clip >= max(w)`` it equals :class:`~banditgate.policies.ope.ips.IPS`.

    Parameters
    ----------
    clip
        Weight cap ``M > 0``; ``inf`` disables clipping.

    Examples
    --------
    >>> from banditgate.policies.ope import LoggedBandit
    >>> data = LoggedBandit(rewards=[1.0, 0.0, 1.0], actions=[0, 1, 1], propensities=[0.5, 0.5, 0.25],
    ...                     target=[[0.8, 0.2]] * 3)
    >>> round(ClippedIPS(clip=1.0).estimate(data).value, 6)  # weights 1.6 -> 1, 0.4, 0.8: (1 + 0 + 0.8) / 3
    0.6

    References
    ----------
    Bottou, Peters, Quinonero-Candela, Charles, Chickering, Portugaly, Ray, Simard & Snelson,
    "Counterfactual reasoning and learning systems: the example of computational advertising", JMLR 14,
    2013; Ionides, "Truncated importance sampling", J. Comput. Graph. Stat. 17(2), 2008.
    """

    name = "clipped_ips"

    def __init__(self, clip: float = DEFAULT_CLIP) -> None:
        if not clip > 0.0:
            raise ValueError(f"clip must be a positive number (inf disables clipping), got {clip!r}")
        self.clip = float(clip)

    def terms(self, data: LoggedBandit) -> Terms:
        return Terms(base=np.minimum(data.importance_weights, self.clip) * data.rewards)

    def params(self) -> dict[str, float]:
        return {"clip": self.clip}
