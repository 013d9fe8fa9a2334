"""Card brands, card types and a table of plausible BINs, each tied to an issuer, a brand and a country.

A BIN (the first six digits of the card number) is what a gateway knows about the issuer. The table is
drawn once per world from its seed: a few hundred BINs whose prefixes follow each scheme's ranges (Visa 4,
Mastercard 51-55, Amex 34/37, Maestro 50/56-67, Discover 6011/65), with country-specific brand and
debit/credit mixes, grouped under a handful of issuers per country. Issuers carry latent traits (see
:mod:`banditgate.simulator.authorisation`) that only show through their BINs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditgate.simulator.markets import COUNTRY_CODES

BRANDS: tuple[str, ...] = ("visa", "mastercard", "amex", "maestro", "discover")
CARD_TYPES: tuple[str, ...] = ("credit", "debit", "prepaid")
BRAND_INDEX = {b: i for i, b in enumerate(BRANDS)}
CARD_TYPE_INDEX = {t: i for i, t in enumerate(CARD_TYPES)}

#: Brand mix of the cards issued in each country (visa, mastercard, amex, maestro, discover).
BRAND_MIX: dict[str, tuple[float, float, float, float, float]] = {
    "NL": (0.36, 0.34, 0.04, 0.26, 0.0),
    "DE": (0.30, 0.40, 0.08, 0.22, 0.0),
    "FR": (0.55, 0.40, 0.05, 0.0, 0.0),
    "GB": (0.62, 0.30, 0.08, 0.0, 0.0),
    "ES": (0.55, 0.38, 0.04, 0.03, 0.0),
    "IT": (0.48, 0.40, 0.06, 0.06, 0.0),
    "BE": (0.40, 0.35, 0.03, 0.22, 0.0),
    "SE": (0.55, 0.42, 0.03, 0.0, 0.0),
    "PL": (0.55, 0.40, 0.02, 0.03, 0.0),
    "US": (0.52, 0.26, 0.15, 0.0, 0.07),
    "CA": (0.55, 0.33, 0.12, 0.0, 0.0),
    "BR": (0.45, 0.50, 0.05, 0.0, 0.0),
    "IN": (0.50, 0.40, 0.02, 0.08, 0.0),
    "AU": (0.55, 0.35, 0.10, 0.0, 0.0),
}

#: Share of debit among Visa / Mastercard BINs per country (prepaid is a further 8%).
DEBIT_SHARE: dict[str, float] = {"NL": 0.6, "DE": 0.55, "GB": 0.5, "SE": 0.6, "US": 0.45, "BR": 0.4}
DEFAULT_DEBIT_SHARE = 0.45
PREPAID_SHARE = 0.08

#: BIN prefixes per brand (the remaining digits are random).
BIN_PREFIXES: dict[str, tuple[str, ...]] = {
    "visa": ("4",),
    "mastercard": ("51", "52", "53", "54", "55"),
    "amex": ("34", "37"),
    "maestro": ("5018", "5020", "5038", "6304", "6759", "6761"),
    "discover": ("6011", "65"),
}

#: Banks per country issuing Visa, Mastercard and Maestro; Amex and Discover are their own issuer.
BANKS_PER_COUNTRY = 5


@dataclass(frozen=True)
class CardTable:
    """The BINs of a world, as parallel arrays (index = BIN number in :attr:`bins`).

    Attributes
    ----------
    bins
        Six-digit BIN strings, unique, grouped by (country, brand).
    country, brand, card_type, issuer
        Per BIN: indices into ``COUNTRY_CODES``, ``BRANDS``, ``CARD_TYPES`` and :attr:`issuers`.
    cumulative
        Sampling helper: within the group ``g = country * len(BRANDS) + brand`` the values rise from ``g`` to
        ``g + 1`` following the BINs' popularity, so ``searchsorted(cumulative, g + u)`` picks a BIN.
    issuers
        Issuer names, e.g. ``"NL-bank2"`` or ``"US-amex"``.
    issuer_country
        Per issuer, index into ``COUNTRY_CODES``.
    """

    bins: tuple[str, ...]
    country: np.ndarray
    brand: np.ndarray
    card_type: np.ndarray
    issuer: np.ndarray
    cumulative: np.ndarray
    issuers: tuple[str, ...]
    issuer_country: np.ndarray

    def __len__(self) -> int:
        return len(self.bins)

    @classmethod
    def generate(cls, rng: np.random.Generator) -> CardTable:
        """Draw a BIN table: ``2 + round(16 * brand share)`` BINs per (country, brand) with a non-zero share.

        >>> table = CardTable.generate(np.random.default_rng(0))
        >>> 200 < len(table) < 500, len(set(table.bins)) == len(table)
        (True, True)
        """
        seen: set[str] = set()
        issuers: list[str] = []
        issuer_country: list[int] = []
        issuer_ids: dict[str, int] = {}
        rows: list[tuple[str, int, int, int, int, float]] = []  # bin, country, brand, type, issuer, weight

        def issuer_id(name: str, country: int) -> int:
            if name not in issuer_ids:
                issuer_ids[name] = len(issuers)
                issuers.append(name)
                issuer_country.append(country)
            return issuer_ids[name]

        bank_popularity = 1.0 / np.arange(1, BANKS_PER_COUNTRY + 1)
        bank_popularity /= bank_popularity.sum()
        for c, code in enumerate(COUNTRY_CODES):
            debit = DEBIT_SHARE.get(code, DEFAULT_DEBIT_SHARE)
            for b, brand in enumerate(BRANDS):
                share = BRAND_MIX[code][b]
                if share <= 0.0:
                    continue
                count = 2 + round(16 * share)
                popularity = 1.0 / rng.permutation(np.arange(1, count + 1))  # Zipf, in random order
                for k in range(count):
                    number = _draw_bin(rng, BIN_PREFIXES[brand], seen)
                    if brand in ("amex", "discover"):
                        issuer = issuer_id(f"{code}-{brand}", c)
                        card_type = CARD_TYPE_INDEX["credit"]
                    else:
                        bank = int(rng.choice(BANKS_PER_COUNTRY, p=bank_popularity))
                        issuer = issuer_id(f"{code}-bank{bank}", c)
                        if brand == "maestro":
                            card_type = CARD_TYPE_INDEX["debit"]
                        else:
                            u = rng.random()
                            card_type = int(u >= debit) + int(u >= 1.0 - PREPAID_SHARE)
                    rows.append((number, c, b, card_type, issuer, float(popularity[k])))

        group = np.array([r[1] * len(BRANDS) + r[2] for r in rows])
        weight = np.array([r[5] for r in rows])
        cumulative = np.empty(len(rows))
        for g in np.unique(group):
            members = np.flatnonzero(group == g)
            cumulative[members] = g + np.cumsum(weight[members]) / weight[members].sum()
            cumulative[members[-1]] = g + 1.0  # exact group boundary
        return cls(
            bins=tuple(r[0] for r in rows),
            country=np.array([r[1] for r in rows]),
            brand=np.array([r[2] for r in rows]),
            card_type=np.array([r[3] for r in rows]),
            issuer=np.array([r[4] for r in rows]),
            cumulative=cumulative,
            issuers=tuple(issuers),
            issuer_country=np.array(issuer_country),
        )

    def sample(self, country: np.ndarray, brand: np.ndarray, u: np.ndarray) -> np.ndarray:
        """BIN indices for cards of the given country and brand indices, by inverse CDF of uniforms ``u``."""
        group = country * len(BRANDS) + brand
        idx = np.searchsorted(self.cumulative, group + np.minimum(u, 1.0 - 1e-9), side="right")
        return np.minimum(idx, len(self.bins) - 1)


def _draw_bin(rng: np.random.Generator, prefixes: tuple[str, ...], seen: set[str]) -> str:
    while True:
        prefix = prefixes[int(rng.integers(len(prefixes)))]
        digits = "".join(str(d) for d in rng.integers(0, 10, size=6 - len(prefix)))
        number = prefix + digits
        if number not in seen:
            seen.add(number)
            return number
