"""The latent authorisation probability of a transaction under each action: the world's ground truth.

``logit p(x, a, t) = base(x) - 1.0 * prior(t) + sum of the effects of a's interventions on x (under concept(t))``

The base rate depends on the issuer (its country and a latent per-issuer offset behind its BINs), card type
and brand, cross-border status, the PSP's risk score, amount, channel, wallet, recurring status, earlier
declines, customer tenure, night-time and, for stored cards, how stale the credential is. Each intervention
helps some segments and hurts others, so the best action differs by segment:

- **3DS forced**: friction on every payment (abandonment counts as a decline), less of it in app; outweighed
  by issuer trust for risky, large, cross-border or SCA-region payments.
- **SCA exemption**: lifts conversion of low-risk, low-value payments; issuers decline risky or large ones.
- **secondary acquirer**: better with US, UK, Canadian and Australian issuers, worse with the rest; plus a
  latent per-issuer affinity.
- **local acquirer**: makes a cross-border payment domestic; a large gain in BR and IN, smaller in US, GB, AU.
- **instant retry**: pays off only with issuers prone to transient soft declines (a latent per-issuer trait),
  a little more for recurring charges; otherwise a small penalty (issuers and schemes punish retries).
- **ISO reformat**: helps Mastercard issuers in IT, ES, PL and BR, and US Visa issuers on recurring charges
  (MIT indicators); a tiny cost elsewhere.
- **account updater**: recovers stored cards older than about 18 months (likely reissued or expired).

Concept drift moves the intervention effects between a "before" and an "after" set of parameters
(``value = (1 - e) * before + e * after``) and touches nothing else; see :mod:`banditgate.simulator.drift`.
Covariate drift does not enter at all. The authorised / declined outcome is what the service should learn
from (see :mod:`banditgate.simulator.outcomes`).

References
----------
Adyen, "Contextual Bandits in Payment Processing: Non-uniform Exploration and Supervised Learning",
arXiv 2412.00569 (the interventions and the setting); the effect sizes are illustrative, not measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditgate.simulator.actions import ActionCatalogue
from banditgate.simulator.cards import BRAND_INDEX, BRANDS, CARD_TYPES, CardTable
from banditgate.simulator.contexts import ContextBatch
from banditgate.simulator.drift import DriftEffects
from banditgate.simulator.markets import COUNTRY_CODES, COUNTRY_SCA, country_mask, per_country
from banditgate.simulator.merchants import DEVICE_INDEX, DEVICES

INTERCEPT = 2.6
PRIOR_SHIFT = -1.0  # logit shift at full prior drift

COUNTRY_BASE = per_country(
    {"NL": 0.45, "DE": 0.3, "FR": 0.2, "GB": 0.3, "ES": 0.1, "IT": -0.1, "BE": 0.3, "SE": 0.35, "PL": 0.0,
     "US": -0.2, "CA": -0.1, "BR": -0.8, "IN": -0.9, "AU": 0.0}
)  # fmt: skip
CARD_TYPE_EFFECT = np.array([{"credit": 0.0, "debit": 0.15, "prepaid": -0.7}[t] for t in CARD_TYPES])
BRAND_EFFECT = np.array([{"amex": 0.1, "maestro": -0.1, "discover": -0.2}.get(b, 0.0) for b in BRANDS])
DEVICE_EFFECT = np.array([{"web": 0.0, "app": 0.15, "moto": -0.35, "pos": 1.2}[d] for d in DEVICES])

# Intervention effects before and after concept drift (arrays are indexed by issuer country).
_ANGLO = country_mask(["US", "GB", "CA", "AU"])
SECONDARY_BEFORE = np.where(_ANGLO, 0.45, -0.15)
SECONDARY_AFTER = np.where(_ANGLO, -0.25, 0.2)
LOCAL_GAIN_BEFORE = per_country({"GB": 0.35, "US": 0.5, "BR": 1.0, "IN": 1.1, "AU": 0.4})
LOCAL_GAIN_AFTER = per_country({"GB": 0.35, "US": 0.5, "BR": -0.2, "IN": 1.3, "AU": 0.4})
FRICTION_BEFORE, FRICTION_AFTER = -0.55, -0.05
EXEMPTION_COUNTRY_AFTER = np.where(country_mask(["DE", "FR", "IT", "ES"]), -1.2, 0.0)
REFORMAT_MASTERCARD = country_mask(["IT", "ES", "PL", "BR"])
SECONDARY_3DS_INTERACTION = -0.15


@dataclass(frozen=True)
class IssuerTraits:
    """Latent per-issuer parameters, visible to a model only through the BIN.

    Attributes
    ----------
    base
        Logit offset of the issuer's approval rate, ~ N(0, 0.35).
    soft_declines, soft_declines_after
        Proneness to transient soft declines in [0, 1] (Beta(0.7, 2.5)) before and after concept drift:
        the gain of an instant retry.
    secondary
        Issuer-specific affinity to the secondary acquirer, ~ N(0, 0.2).
    """

    base: np.ndarray
    soft_declines: np.ndarray
    soft_declines_after: np.ndarray
    secondary: np.ndarray

    @classmethod
    def generate(cls, rng: np.random.Generator, n_issuers: int) -> IssuerTraits:
        return cls(
            base=rng.normal(0.0, 0.35, n_issuers),
            soft_declines=rng.beta(0.7, 2.5, n_issuers),
            soft_declines_after=rng.beta(0.7, 2.5, n_issuers),
            secondary=rng.normal(0.0, 0.2, n_issuers),
        )


def _mix(before: float | np.ndarray, after: float | np.ndarray, e: np.ndarray) -> np.ndarray:
    return (1.0 - e) * before + e * after


def credential_staleness(contexts: ContextBatch) -> np.ndarray:
    """0 for fresh (or no) stored cards, rising to 1 between 18 and 48 months of age."""
    age = contexts["credential_age_months"] * contexts["stored_credential"]
    return np.clip((age - 18.0) / 30.0, 0.0, 1.0)


@dataclass(frozen=True)
class AuthorisationModel:
    """Authorisation probabilities of every catalogue action for a batch of contexts.

    Parameters
    ----------
    cards
        The world's BIN table (maps a BIN to its issuer).
    catalogue
        The actions (their interventions decide their effects).
    traits
        The issuers' latent traits.
    """

    cards: CardTable
    catalogue: ActionCatalogue
    traits: IssuerTraits

    def logits(self, contexts: ContextBatch, effects: DriftEffects) -> np.ndarray:
        """Log-odds of authorisation, shape (n contexts, n actions); ``effects`` hold numbers or (n,) arrays."""
        n = len(contexts)
        concept = np.broadcast_to(np.asarray(effects.concept, dtype=np.float64), (n,))
        prior = np.broadcast_to(np.asarray(effects.prior, dtype=np.float64), (n,))
        issuer = self.cards.issuer[contexts["bin"]]
        country = contexts["issuer_country"]
        brand = contexts["card_brand"]
        device = contexts["device"]
        cross = contexts["is_cross_border"]
        recurring = contexts["is_recurring"]
        risk = contexts["risk_score"]
        amount = contexts["amount_eur"]
        staleness = credential_staleness(contexts)

        base = (
            INTERCEPT
            + COUNTRY_BASE[country]
            + self.traits.base[issuer]
            + CARD_TYPE_EFFECT[contexts["card_type"]]
            + BRAND_EFFECT[brand]
            - 0.7 * cross
            - 2.2 * risk
            - 0.22 * np.maximum(0.0, np.log(amount / 50.0))
            + DEVICE_EFFECT[device]
            + 0.35 * (contexts["wallet"] > 0)
            + 0.2 * recurring
            - 0.55 * contexts["retry_count"]
            + 0.1 * np.log1p(contexts["customer_tenure_days"] / 30.0)
            - 0.25 * (contexts["hour_of_day"] < 6)
            - 1.6 * staleness
            + PRIOR_SHIFT * prior
        )

        log_large = np.maximum(0.0, np.log(amount / 100.0))
        route = {
            "primary": np.zeros(n),
            "secondary": _mix(SECONDARY_BEFORE[country], SECONDARY_AFTER[country], concept)
            + self.traits.secondary[issuer],
            "local": np.where(cross, _mix(LOCAL_GAIN_BEFORE[country], LOCAL_GAIN_AFTER[country], concept), -0.1),
        }
        three_ds = {
            "default": np.zeros(n),
            "force": _mix(FRICTION_BEFORE, FRICTION_AFTER, concept)
            + 0.25 * (device == DEVICE_INDEX["app"])
            + 1.6 * risk
            + 0.35 * log_large
            + 0.35 * cross
            + 0.3 * (COUNTRY_SCA[country] & (amount > 30.0)),
            "exempt": 0.45 - 2.0 * risk - 0.3 * log_large + _mix(0.0, EXEMPTION_COUNTRY_AFTER[country], concept),
        }
        soft_declines = _mix(self.traits.soft_declines[issuer], self.traits.soft_declines_after[issuer], concept)
        retry = -0.3 + 1.6 * soft_declines + 0.25 * recurring
        reformat = (
            -0.05
            + 0.6 * ((brand == BRAND_INDEX["mastercard"]) & REFORMAT_MASTERCARD[country])
            + 0.35 * (recurring & (brand == BRAND_INDEX["visa"]) & (country == COUNTRY_CODES.index("US")))
        )
        updater = 1.5 * staleness - 0.05

        out = np.empty((n, len(self.catalogue)))
        for j, spec in enumerate(self.catalogue.specs):
            logit = base + route[spec.acquirer] + three_ds[spec.three_ds]
            if spec.retry:
                logit = logit + retry
            if spec.reformat:
                logit = logit + reformat
            if spec.account_updater:
                logit = logit + updater
            if spec.acquirer == "secondary" and spec.three_ds == "force":
                logit = logit + SECONDARY_3DS_INTERACTION
            out[:, j] = logit
        return out

    def probabilities(self, contexts: ContextBatch, effects: DriftEffects) -> np.ndarray:
        """Authorisation probabilities, shape (n contexts, n actions)."""
        return 1.0 / (1.0 + np.exp(-self.logits(contexts, effects)))
