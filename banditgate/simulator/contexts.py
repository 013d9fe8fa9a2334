"""Transaction contexts: the 22 features a gateway sends with each decision, and how they are sampled.

Features (in the order of :data:`FEATURES`):

=====================  ========  ====================================================================
name                   type      meaning
=====================  ========  ====================================================================
amount                 float     amount in the presentment currency
currency               category  presentment currency (merchant's, or the shopper's for some foreigners)
amount_eur             float     amount converted to euros at the book rate
merchant_id            category  merchant account (240 per world, Zipf-like volumes)
mcc                    category  merchant category code (12 categories)
merchant_country       category  where the merchant is based
issuer_country         category  where the card was issued (14 countries)
is_cross_border        bool      issuer country differs from merchant country
card_brand             category  visa, mastercard, amex, maestro, discover
card_type              category  credit, debit, prepaid
bin                    category  six-digit BIN (a few hundred per world, tied to brand, country, issuer)
device                 category  web, app, moto (mail/telephone order), pos (card present)
card_present           bool      device is pos
wallet                 category  none, apple_pay, google_pay
is_recurring           bool      merchant-initiated recurring charge
stored_credential      bool      card on file at the merchant
credential_age_months  int       months since the stored card was saved (0 without one)
retry_count            int       earlier attempts of this payment (0-3)
customer_tenure_days   int       days since the shopper's first payment at the merchant (0: new)
risk_score             float     the PSP's fraud score in (0, 1)
hour_of_day            int       local hour of the world's time zone
day_of_week            int       0 = Monday
=====================  ========  ====================================================================

Sampling is vectorised and draws a fixed number of random numbers per transaction whatever the drift, so a
drift changes values, never the random stream: the same seed gives the same traffic under the no-drift and
concept-drift scenarios, and the covariate scenario maps the same uniforms through shifted distributions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from banditgate.simulator.cards import BRAND_MIX, BRANDS, CARD_TYPES, CardTable
from banditgate.simulator.markets import (
    COUNTRY_CODES,
    COUNTRY_CURRENCY,
    COUNTRY_UTC_OFFSET,
    CROSS_BORDER_WEIGHT,
    CURRENCIES,
    CURRENCY_RATE,
    DOMESTIC_SHARE,
    country_mask,
)
from banditgate.simulator.merchants import (
    DEVICE_INDEX,
    DEVICES,
    MCC_AMOUNT_LOG_MEDIAN,
    MCC_AMOUNT_SIGMA,
    MCC_CODES,
    MCC_DEVICES,
    MCC_FRAUD,
    MCC_MIX,
    MCC_RECURRING,
    MCC_TILT,
    MerchantTable,
)
from banditgate.simulator.seasonality import country_activity

WALLETS: tuple[str, ...] = ("none", "apple_pay", "google_pay")

#: Feature name -> kind ("category", "float", "int" or "bool"), in the order contexts are built.
FEATURES: dict[str, str] = {
    "amount": "float",
    "currency": "category",
    "amount_eur": "float",
    "merchant_id": "category",
    "mcc": "category",
    "merchant_country": "category",
    "issuer_country": "category",
    "is_cross_border": "bool",
    "card_brand": "category",
    "card_type": "category",
    "bin": "category",
    "device": "category",
    "card_present": "bool",
    "wallet": "category",
    "is_recurring": "bool",
    "stored_credential": "bool",
    "credential_age_months": "int",
    "retry_count": "int",
    "customer_tenure_days": "int",
    "risk_score": "float",
    "hour_of_day": "int",
    "day_of_week": "int",
}

# Covariate drift targets (the mix at full effect): foreign cardholders from new markets, fewer domestic
# payments, high-ticket categories, bigger baskets, app instead of web, more wallets, more new customers.
COVARIATE_COUNTRY_TILT = np.where(country_mask(["US", "BR", "IN"]), 4.0, np.where(country_mask(["CA", "AU"]), 2.0, 0.5))
COVARIATE_DOMESTIC_CUT = 0.6
COVARIATE_LOG_AMOUNT_SHIFT = 0.5
COVARIATE_WEB_TO_APP = 0.6
COVARIATE_WALLET_BOOST = 0.25
COVARIATE_NEW_CUSTOMER_BOOST = 0.15

COUNTRY_BRAND_MIX = np.array([BRAND_MIX[code] for code in COUNTRY_CODES])
WALLET_SHARE = np.array([0.12, 0.35, 0.0, 0.22])  # per device: web, app, moto, pos
RETRY_COUNT_P = {False: (0.92, 0.055, 0.018, 0.007), True: (0.72, 0.16, 0.08, 0.04)}  # by is_recurring
FOREIGN_CURRENCY_SHARE = 0.35


@dataclass(frozen=True)
class ContextSchema:
    """Vocabularies of the categorical features of one world (its BINs and merchants included).

    Parameters
    ----------
    categories
        Categorical feature -> labels; a context column stores the index of its label.
    """

    categories: dict[str, tuple[str, ...]]
    _codes: dict[str, dict[str, int]] = field(init=False, repr=False)
    _labels: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_codes", {k: {v: i for i, v in enumerate(vs)} for k, vs in self.categories.items()})
        object.__setattr__(self, "_labels", {k: np.array(vs, dtype=object) for k, vs in self.categories.items()})

    @classmethod
    def for_world(cls, cards: CardTable, merchants: MerchantTable) -> ContextSchema:
        return cls(
            categories={
                "currency": CURRENCIES,
                "merchant_id": merchants.ids,
                "mcc": MCC_CODES,
                "merchant_country": COUNTRY_CODES,
                "issuer_country": COUNTRY_CODES,
                "card_brand": BRANDS,
                "card_type": CARD_TYPES,
                "bin": cards.bins,
                "device": DEVICES,
                "wallet": WALLETS,
            }
        )

    def decode(self, name: str, codes: np.ndarray) -> np.ndarray:
        """Labels (an object array of strings) of a categorical column."""
        return self._labels[name][codes]

    def encode(self, records: Sequence[Mapping[str, Any]]) -> ContextBatch:
        """Columns from context dicts (as produced by :meth:`ContextBatch.records`); extra keys are ignored.

        Raises ``ValueError`` naming the feature when one is missing or a category is unknown to this world.
        """
        columns: dict[str, np.ndarray] = {}
        for name, kind in FEATURES.items():
            try:
                values = [record[name] for record in records]
            except KeyError:
                raise ValueError(f"context is missing feature {name!r}") from None
            if kind == "category":
                codes = self._codes[name]
                try:
                    columns[name] = np.array([codes[v] for v in values], dtype=np.int64)
                except (KeyError, TypeError) as exc:
                    raise ValueError(f"unknown {name} {exc.args[0]!r} (not in this world's catalogue)") from None
            else:
                columns[name] = np.array(values, dtype={"float": np.float64, "int": np.int64, "bool": bool}[kind])
        return ContextBatch(self, columns)


@dataclass(frozen=True)
class ContextBatch:
    """Many contexts as columns: categorical features hold label indices, the others their values.

    Attributes
    ----------
    schema
        The vocabularies to decode categorical columns.
    columns
        Feature name -> array of length ``len(batch)``.
    """

    schema: ContextSchema
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def labels(self, name: str) -> np.ndarray:
        """Values of a feature as the service sees them (strings for categorical features)."""
        if FEATURES[name] == "category":
            return self.schema.decode(name, self.columns[name])
        return self.columns[name]

    def records(self) -> list[dict[str, Any]]:
        """One flat dict of Python scalars per context, ready to be sent as a decision's ``context``."""
        names = list(FEATURES)
        columns = [self.labels(name).tolist() for name in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]

    def take(self, indices: np.ndarray | slice) -> ContextBatch:
        """The contexts at ``indices``."""
        return ContextBatch(self.schema, {k: v[indices] for k, v in self.columns.items()})

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame of the decoded features (categorical columns as pandas categoricals)."""
        data = {}
        for name, kind in FEATURES.items():
            if kind == "category":
                data[name] = pd.Categorical.from_codes(self.columns[name], self.schema.categories[name])
            else:
                data[name] = self.columns[name]
        return pd.DataFrame(data)


def _categorical(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise inverse-CDF draw from unnormalised non-negative weights (n, k) with uniforms (n,)."""
    cumulative = np.cumsum(weights, axis=1)
    target = u[:, None] * cumulative[:, -1:]
    return np.minimum((cumulative <= target).sum(axis=1), weights.shape[1] - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class ContextSampler:
    """Draws contexts for given local hours, weekdays and covariate-drift effects.

    Parameters
    ----------
    schema, cards, merchants
        The world's vocabularies, BIN table and merchants.
    world_utc_offset
        UTC offset (hours) of the world's time zone, to place foreign cardholders' shopping hours.
    """

    schema: ContextSchema
    cards: CardTable
    merchants: MerchantTable
    world_utc_offset: int = 1
    _country_activity: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        activity = CROSS_BORDER_WEIGHT * country_activity(COUNTRY_UTC_OFFSET, self.world_utc_offset)
        object.__setattr__(self, "_country_activity", activity)

    def sample(
        self, hour: np.ndarray, weekday: np.ndarray, covariate: float | np.ndarray, rng: np.random.Generator
    ) -> ContextBatch:
        """Contexts for transactions at the given local ``hour`` and ``weekday`` (arrays of equal length).

        ``covariate`` is the covariate-drift effect in [0, 1] (a number or one per transaction). Draws exactly
        ``17 * n`` random numbers from ``rng`` whatever the effect.
        """
        hour = np.asarray(hour, dtype=np.int64)
        weekday = np.asarray(weekday, dtype=np.int64)
        n = hour.size
        e = np.broadcast_to(np.asarray(covariate, dtype=np.float64), (n,))[:, None]
        u = rng.random((n, 14))
        z = rng.standard_normal((n, 3))
        rows = np.arange(n)

        # Merchant category (hour/weekday mix, tilted by drift), then merchant and its country.
        mix = MCC_MIX[hour, weekday]
        mcc = _categorical((1.0 - e) * mix + e * _normalised(mix * MCC_TILT), u[:, 0])
        merchant = self.merchants.sample(mcc, u[:, 1])
        merchant_country = self.merchants.country[merchant]

        # Issuer country: domestic, or a foreign country active at this hour.
        domestic = u[:, 2] < DOMESTIC_SHARE[merchant_country] * (1.0 - COVARIATE_DOMESTIC_CUT * e[:, 0])
        foreign = _normalised(self._country_activity[hour])
        foreign = (1.0 - e) * foreign + e * _normalised(foreign * COVARIATE_COUNTRY_TILT)
        foreign[rows, merchant_country] = 0.0
        issuer_country = np.where(domestic, merchant_country, _categorical(foreign, u[:, 3]))
        cross_border = issuer_country != merchant_country

        # Card: brand from the country's mix, then a BIN (which fixes the card type and the issuer).
        brand = _categorical(COUNTRY_BRAND_MIX[issuer_country], u[:, 4])
        bin_index = self.cards.sample(issuer_country, brand, u[:, 5])
        card_type = self.cards.card_type[bin_index]

        # Channel and wallet.
        devices = MCC_DEVICES[mcc]
        moved = COVARIATE_WEB_TO_APP * e[:, 0] * devices[:, DEVICE_INDEX["web"]]
        devices = devices.copy()
        devices[:, DEVICE_INDEX["web"]] -= moved
        devices[:, DEVICE_INDEX["app"]] += moved
        device = _categorical(devices, u[:, 6])
        card_present = device == DEVICE_INDEX["pos"]
        ecommerce = (device == DEVICE_INDEX["web"]) | (device == DEVICE_INDEX["app"])
        wallet_p = np.minimum(1.0, WALLET_SHARE[device] + COVARIATE_WALLET_BOOST * e[:, 0] * ecommerce)
        has_wallet = u[:, 7] < wallet_p
        wallet = np.where(has_wallet, 1 + (u[:, 7] < wallet_p / 2).astype(np.int64), 0)

        # Relationship with the merchant.
        is_recurring = ecommerce & (u[:, 8] < MCC_RECURRING[mcc])
        new_customer = u[:, 9] < np.where(is_recurring, 0.03, 0.30 + COVARIATE_NEW_CUSTOMER_BOOST * e[:, 0])
        tenure_log_median = np.where(is_recurring, np.log(400.0), np.log(200.0))
        tenure = np.clip(np.round(np.exp(tenure_log_median + 1.1 * z[:, 1])), 1, 3650).astype(np.int64)
        tenure = np.where(new_customer, 0, tenure)
        stored = is_recurring | (ecommerce & ~new_customer & (u[:, 10] < 0.5))
        age = np.floor(np.minimum(tenure / 30.44, 72.0) * u[:, 11]).astype(np.int64)
        credential_age = np.where(stored, age, 0)
        retry_cdf = np.where(is_recurring[:, None], np.cumsum(RETRY_COUNT_P[True]), np.cumsum(RETRY_COUNT_P[False]))
        retry_count = np.minimum((retry_cdf <= u[:, 12:13]).sum(axis=1), 3)

        # Amount, presentment currency and its euro value.
        log_amount = MCC_AMOUNT_LOG_MEDIAN[mcc] + COVARIATE_LOG_AMOUNT_SHIFT * e[:, 0] + MCC_AMOUNT_SIGMA[mcc] * z[:, 0]
        raw_eur = np.clip(np.exp(log_amount), 0.5, 20_000.0)
        shopper_currency = cross_border & (u[:, 13] < FOREIGN_CURRENCY_SHARE)
        currency = np.where(shopper_currency, COUNTRY_CURRENCY[issuer_country], COUNTRY_CURRENCY[merchant_country])
        rate = CURRENCY_RATE[currency]
        amount = np.maximum(np.round(raw_eur * rate, 2), 0.01)
        amount_eur = np.maximum(np.round(amount / rate, 2), 0.01)

        # The PSP's own fraud score.
        night = hour < 6
        risk_logit = (
            -3.0
            + 0.9 * cross_border
            + 0.7 * new_customer
            + 0.35 * np.log(amount_eur / 50.0)
            + 0.8 * MCC_FRAUD[mcc]
            + 0.4 * night
            - 1.6 * card_present
            - 0.6 * has_wallet
            + 0.35 * retry_count
            - 0.4 * is_recurring
            + 0.9 * z[:, 2]
        )
        risk_score = np.clip(np.round(_sigmoid(risk_logit), 4), 0.0001, 0.9999)

        columns = {
            "amount": amount,
            "currency": currency,
            "amount_eur": amount_eur,
            "merchant_id": merchant,
            "mcc": mcc,
            "merchant_country": merchant_country,
            "issuer_country": issuer_country,
            "is_cross_border": cross_border,
            "card_brand": brand,
            "card_type": card_type,
            "bin": bin_index,
            "device": device,
            "card_present": card_present,
            "wallet": wallet,
            "is_recurring": is_recurring,
            "stored_credential": stored,
            "credential_age_months": credential_age,
            "retry_count": retry_count.astype(np.int64),
            "customer_tenure_days": tenure,
            "risk_score": risk_score,
            "hour_of_day": hour,
            "day_of_week": weekday,
        }
        return ContextBatch(self.schema, columns)


def _normalised(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum(axis=-1, keepdims=True)
