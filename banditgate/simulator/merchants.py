"""Merchant categories (MCC) and a population of merchants.

Each category has its own ticket size, channel mix, share of recurring (merchant-initiated) payments, fraud
exposure, time-of-day pattern and scheme or merchant opt-outs (transit and ride-hailing merchants opt out of
forced 3-D Secure because friction kills conversion at the gate; gambling merchants may not retry declines).
Merchants are drawn once per world: each belongs to one category and one country, with Zipf-like volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditgate.simulator.markets import COUNTRY_CODES, MERCHANT_WEIGHT
from banditgate.simulator.seasonality import shape_weights

DEVICES: tuple[str, ...] = ("web", "app", "moto", "pos")
DEVICE_INDEX = {d: i for i, d in enumerate(DEVICES)}


@dataclass(frozen=True, slots=True)
class MerchantCategory:
    """A merchant category code and how its payments look.

    Parameters
    ----------
    code
        Four-digit ISO 18245 merchant category code.
    description
        What the category sells.
    share
        Relative share of transactions over a whole week.
    shape
        Activity shape over the day and week (a key of ``seasonality.ACTIVITY_SHAPES``).
    amount_median_eur, amount_sigma
        Ticket size: log-normal with this median (EUR) and log-scale standard deviation.
    devices
        Channel mix over ``DEVICES`` (web, app, moto = mail/telephone order, pos = card present).
    recurring_share
        Share of card-not-present payments that are recurring, merchant-initiated charges.
    fraud
        Chargeback log-odds offset of the category.
    covariate_tilt
        Multiplier of the category's share at full covariate drift (new merchants being onboarded).
    force_3ds_opt_out, retry_opt_out
        Whether merchants of the category refuse forced 3-D Secure or instant retries.
    """

    code: str
    description: str
    share: float
    shape: str
    amount_median_eur: float
    amount_sigma: float
    devices: tuple[float, float, float, float]
    recurring_share: float = 0.0
    fraud: float = 0.0
    covariate_tilt: float = 1.0
    force_3ds_opt_out: bool = False
    retry_opt_out: bool = False


CATEGORIES: tuple[MerchantCategory, ...] = (
    MerchantCategory("5411", "grocery stores", 0.16, "retail", 28, 0.7, (0.10, 0.08, 0.0, 0.82), 0.0, -0.3, 0.6),
    MerchantCategory("5812", "restaurants", 0.12, "dining", 35, 0.6, (0.05, 0.15, 0.0, 0.80), 0.0, -0.4, 0.7),
    MerchantCategory("5691", "clothing", 0.11, "online", 75, 0.8, (0.55, 0.30, 0.0, 0.15), 0.0, 0.1, 1.0),
    MerchantCategory("5732", "electronics", 0.07, "online", 180, 1.0, (0.60, 0.25, 0.02, 0.13), 0.0, 0.6, 2.5),
    MerchantCategory(
        "4111", "commuter transport", 0.07, "commute", 6, 0.7, (0.10, 0.60, 0.0, 0.30), 0.05, -0.5, 0.8,
        force_3ds_opt_out=True,
    ),
    MerchantCategory(
        "4121", "taxis and ride-hailing", 0.06, "nightlife", 22, 0.6, (0.05, 0.90, 0.0, 0.05), 0.0, 0.1, 1.0,
        force_3ds_opt_out=True,
    ),
    MerchantCategory("4511", "airlines", 0.05, "online", 320, 0.8, (0.70, 0.20, 0.10, 0.0), 0.0, 0.5, 2.0),
    MerchantCategory("7011", "hotels", 0.05, "online", 240, 0.8, (0.55, 0.15, 0.20, 0.10), 0.0, 0.2, 1.5),
    MerchantCategory("5815", "digital media", 0.08, "online", 9, 0.8, (0.35, 0.65, 0.0, 0.0), 0.45, 0.3, 1.0),
    MerchantCategory("4899", "streaming subscriptions", 0.07, "billing", 13, 0.35, (0.60, 0.40, 0.0, 0.0), 0.85, -0.2),
    MerchantCategory(
        "7995", "gambling", 0.05, "nightlife", 40, 1.0, (0.45, 0.55, 0.0, 0.0), 0.0, 0.8, 2.0, retry_opt_out=True
    ),
    MerchantCategory("5968", "subscription boxes", 0.06, "billing", 32, 0.5, (0.75, 0.25, 0.0, 0.0), 0.75, 0.1, 0.8),
)  # fmt: skip

MCC_CODES: tuple[str, ...] = tuple(c.code for c in CATEGORIES)
MCC_INDEX = {code: i for i, code in enumerate(MCC_CODES)}

#: Per category (in :data:`MCC_CODES` order).
MCC_SHARE = np.array([c.share for c in CATEGORIES])
MCC_AMOUNT_LOG_MEDIAN = np.log([c.amount_median_eur for c in CATEGORIES])
MCC_AMOUNT_SIGMA = np.array([c.amount_sigma for c in CATEGORIES])
MCC_DEVICES = np.array([c.devices for c in CATEGORIES])
MCC_RECURRING = np.array([c.recurring_share for c in CATEGORIES])
MCC_FRAUD = np.array([c.fraud for c in CATEGORIES])
MCC_TILT = np.array([c.covariate_tilt for c in CATEGORIES])
MCC_FORCE_3DS_OPT_OUT = np.array([c.force_3ds_opt_out for c in CATEGORIES])
MCC_RETRY_OPT_OUT = np.array([c.retry_opt_out for c in CATEGORIES])

#: Category mix per (local hour, weekday): shape (24, 7, n_categories), rows sum to 1.
MCC_MIX = np.stack([c.share * shape_weights(c.shape) for c in CATEGORIES], axis=-1)
MCC_MIX /= MCC_MIX.sum(axis=-1, keepdims=True)

#: Merchants in a world.
N_MERCHANTS = 240


@dataclass(frozen=True)
class MerchantTable:
    """The merchants of a world, as parallel arrays.

    Attributes
    ----------
    ids
        Merchant account ids (``"M0001"``...).
    category, country
        Per merchant: index into ``MCC_CODES`` and ``COUNTRY_CODES``.
    cumulative
        Sampling helper (as in :class:`~banditgate.simulator.cards.CardTable`): within category ``g`` the
        values rise from ``g`` to ``g + 1`` following the merchants' volumes.
    """

    ids: tuple[str, ...]
    category: np.ndarray
    country: np.ndarray
    cumulative: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def generate(cls, rng: np.random.Generator, n_merchants: int = N_MERCHANTS) -> MerchantTable:
        """Draw merchants: at least five per category, the rest in proportion to category shares.

        >>> table = MerchantTable.generate(np.random.default_rng(0))
        >>> len(table), table.ids[0], sorted(set(table.category.tolist())) == list(range(len(MCC_CODES)))
        (240, 'M0001', True)
        """
        n_categories = len(CATEGORIES)
        counts = 5 + np.floor((n_merchants - 5 * n_categories) * MCC_SHARE / MCC_SHARE.sum()).astype(int)
        counts[np.argmax(MCC_SHARE)] += n_merchants - counts.sum()
        category = np.repeat(np.arange(n_categories), counts)
        country_p = MERCHANT_WEIGHT / MERCHANT_WEIGHT.sum()
        country = rng.choice(len(COUNTRY_CODES), size=n_merchants, p=country_p)
        cumulative = np.empty(n_merchants)
        for g in range(n_categories):
            members = np.flatnonzero(category == g)
            volume = 1.0 / rng.permutation(np.arange(1, members.size + 1)) ** 1.1
            cumulative[members] = g + np.cumsum(volume) / volume.sum()
            cumulative[members[-1]] = g + 1.0
        ids = tuple(f"M{i + 1:04d}" for i in range(n_merchants))
        return cls(ids=ids, category=category, country=country, cumulative=cumulative)

    def sample(self, category: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Merchant indices for the given category indices, by inverse CDF of uniforms ``u``."""
        idx = np.searchsorted(self.cumulative, category + np.minimum(u, 1.0 - 1e-9), side="right")
        return np.minimum(idx, len(self.ids) - 1)
