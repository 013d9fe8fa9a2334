"""Countries and currencies: where cards are issued, where merchants sit, exchange rates.

The numbers are plausible for a European payment service provider with some US presence, not measured
facts: they give the simulator realistic shapes (most traffic domestic and European, a cross-border tail
with its own time zones, a few markets where domestic acquiring matters a lot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Units of each currency per euro (a fixed book rate; the simulator does not move exchange rates).
EUR_RATES: dict[str, float] = {
    "EUR": 1.0,
    "USD": 1.08,
    "GBP": 0.85,
    "SEK": 11.2,
    "PLN": 4.3,
    "CAD": 1.47,
    "BRL": 5.9,
    "INR": 90.0,
    "AUD": 1.65,
}


@dataclass(frozen=True, slots=True)
class Country:
    """A card-issuing country (and possibly a merchant country).

    Parameters
    ----------
    code
        ISO 3166-1 alpha-2 code.
    currency
        ISO 4217 code of the local currency.
    sca
        Whether PSD2 strong customer authentication applies to its issuers (EEA and UK), which is what
        makes a 3-D Secure exemption request meaningful.
    utc_offset
        Representative UTC offset in hours, used for when its cardholders shop.
    cross_border_weight
        Relative share among foreign cardholders paying a merchant in another country.
    merchant_weight
        Relative share of merchants based there (0: no merchants).
    domestic_share
        For a merchant country: the share of its payments made with domestic cards.
    local_acquirer
        Whether the PSP has a local acquirer there (routing a cross-border payment through it makes it
        domestic for the issuer).
    """

    code: str
    currency: str
    sca: bool
    utc_offset: int
    cross_border_weight: float
    merchant_weight: float = 0.0
    domestic_share: float = 0.0
    local_acquirer: bool = False


COUNTRIES: tuple[Country, ...] = (
    Country("NL", "EUR", True, 1, 0.06, merchant_weight=0.24, domestic_share=0.60),
    Country("DE", "EUR", True, 1, 0.13, merchant_weight=0.20, domestic_share=0.70),
    Country("FR", "EUR", True, 1, 0.10, merchant_weight=0.12, domestic_share=0.70),
    Country("GB", "GBP", True, 0, 0.13, merchant_weight=0.15, domestic_share=0.72, local_acquirer=True),
    Country("ES", "EUR", True, 1, 0.06, merchant_weight=0.07, domestic_share=0.65),
    Country("IT", "EUR", True, 1, 0.06, merchant_weight=0.06, domestic_share=0.70),
    Country("BE", "EUR", True, 1, 0.05),
    Country("SE", "SEK", True, 1, 0.04, merchant_weight=0.05, domestic_share=0.75),
    Country("PL", "PLN", True, 1, 0.05),
    Country("US", "USD", False, -5, 0.15, merchant_weight=0.11, domestic_share=0.85, local_acquirer=True),
    Country("CA", "CAD", False, -5, 0.04),
    Country("BR", "BRL", False, -3, 0.05, local_acquirer=True),
    Country("IN", "INR", False, 5, 0.05, local_acquirer=True),
    Country("AU", "AUD", False, 10, 0.03, local_acquirer=True),
)

COUNTRY_CODES: tuple[str, ...] = tuple(c.code for c in COUNTRIES)
COUNTRY_INDEX: dict[str, int] = {code: i for i, code in enumerate(COUNTRY_CODES)}
CURRENCIES: tuple[str, ...] = tuple(EUR_RATES)
CURRENCY_INDEX: dict[str, int] = {code: i for i, code in enumerate(CURRENCIES)}

#: Per country (in :data:`COUNTRY_CODES` order): index of its currency, SCA flag, local-acquirer flag, ...
COUNTRY_CURRENCY = np.array([CURRENCY_INDEX[c.currency] for c in COUNTRIES])
COUNTRY_SCA = np.array([c.sca for c in COUNTRIES])
COUNTRY_LOCAL_ACQUIRER = np.array([c.local_acquirer for c in COUNTRIES])
COUNTRY_UTC_OFFSET = np.array([c.utc_offset for c in COUNTRIES])
CROSS_BORDER_WEIGHT = np.array([c.cross_border_weight for c in COUNTRIES])
MERCHANT_WEIGHT = np.array([c.merchant_weight for c in COUNTRIES])
DOMESTIC_SHARE = np.array([c.domestic_share for c in COUNTRIES])
#: Units per euro of each currency, in :data:`CURRENCIES` order.
CURRENCY_RATE = np.array([EUR_RATES[c] for c in CURRENCIES])


def per_country(values: dict[str, float], default: float = 0.0) -> np.ndarray:
    """An array over :data:`COUNTRY_CODES` from a partial mapping (missing countries get ``default``).

    >>> per_country({"BR": 1.0, "IN": 1.1})[[COUNTRY_CODES.index("NL"), COUNTRY_CODES.index("IN")]].tolist()
    [0.0, 1.1]
    """
    unknown = set(values) - set(COUNTRY_CODES)
    if unknown:
        raise ValueError(f"unknown country codes {sorted(unknown)}")
    return np.array([values.get(code, default) for code in COUNTRY_CODES], dtype=np.float64)


def country_mask(codes: tuple[str, ...] | list[str]) -> np.ndarray:
    """Boolean mask over :data:`COUNTRY_CODES` selecting ``codes``.

    >>> [COUNTRY_CODES[i] for i in np.flatnonzero(country_mask(["US", "BR"]))]
    ['US', 'BR']
    """
    unknown = set(codes) - set(COUNTRY_CODES)
    if unknown:
        raise ValueError(f"unknown country codes {sorted(unknown)}")
    return np.isin(np.array(COUNTRY_CODES), list(codes))
