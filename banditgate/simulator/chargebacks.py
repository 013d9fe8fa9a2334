"""The latent chargeback probability of an authorised transaction under each action.

``logit q(x, a, t) = -4.9 + 2.0 risk + 0.2 log(amount / 50) + 0.4 cross-border + 0.7 category fraud + 0.4 new
customer - 1.3 card present - 0.4 wallet - 0.5 recurring + action + 0.8 prior(t)``

Actions matter through liability and authentication: a forced 3-D Secure payment is authenticated, so fraud
chargebacks shift to the issuer and the merchant sees far fewer (-1.1); an exemption keeps the liability with
the merchant (+0.25); an instant retry slightly raises the risk (+0.15). The rate is about 1% overall
(median 0.6%), from about 0.2% for card-present payments to several percent for risky cross-border airline
tickets. Prior drift raises it; covariate drift moves it only through the mix; concept drift leaves it alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditgate.simulator.actions import ActionCatalogue
from banditgate.simulator.contexts import ContextBatch
from banditgate.simulator.drift import DriftEffects
from banditgate.simulator.merchants import MCC_FRAUD

INTERCEPT = -4.9
PRIOR_SHIFT = 0.8  # logit shift at full prior drift
THREE_DS_EFFECT = {"default": 0.0, "force": -1.1, "exempt": 0.25}
RETRY_EFFECT = 0.15


@dataclass(frozen=True)
class ChargebackModel:
    """Chargeback probabilities (given authorisation) of every catalogue action for a batch of contexts.

    Parameters
    ----------
    catalogue
        The actions.
    """

    catalogue: ActionCatalogue

    def logits(self, contexts: ContextBatch, effects: DriftEffects) -> np.ndarray:
        """Log-odds of a chargeback, shape (n contexts, n actions)."""
        n = len(contexts)
        prior = np.broadcast_to(np.asarray(effects.prior, dtype=np.float64), (n,))
        base = (
            INTERCEPT
            + 2.0 * contexts["risk_score"]
            + 0.2 * np.log(contexts["amount_eur"] / 50.0)
            + 0.4 * contexts["is_cross_border"]
            + 0.7 * MCC_FRAUD[contexts["mcc"]]
            + 0.4 * (contexts["customer_tenure_days"] == 0)
            - 1.3 * contexts["card_present"]
            - 0.4 * (contexts["wallet"] > 0)
            - 0.5 * contexts["is_recurring"]
            + PRIOR_SHIFT * prior
        )
        shift = np.array([THREE_DS_EFFECT[s.three_ds] + RETRY_EFFECT * s.retry for s in self.catalogue.specs])
        return base[:, None] + shift[None, :]

    def probabilities(self, contexts: ContextBatch, effects: DriftEffects) -> np.ndarray:
        """Chargeback probabilities given authorisation, shape (n contexts, n actions)."""
        return 1.0 / (1.0 + np.exp(-self.logits(contexts, effects)))
