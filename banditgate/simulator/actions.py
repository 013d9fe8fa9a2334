"""The action catalogue (interventions and combinations of them) and the per-transaction eligibility rules.

Every action is a bundle of interventions; its features describe the bundle, so an oracle can generalise
across actions that share an intervention. The rules that make an action eligible mirror what limits a PSP
in practice:

- ``route_secondary``: the secondary acquirer does not acquire Amex or Discover.
- ``route_local_acquirer``: only for cross-border Visa / Mastercard / Maestro cards issued in a country where
  the PSP has a local acquirer (GB, US, BR, IN, AU), making the payment domestic for the issuer.
- ``3ds_force``: e-commerce only (web or app), not for merchant-initiated recurring charges, and not for
  merchants that opt out (commuter transport, ride-hailing).
- ``3ds_exempt`` (request an SCA exemption): only for SCA-region issuers (EEA and UK), e-commerce, not
  recurring, and at most 500 EUR (the highest transaction-risk-analysis band).
- ``retry_instant``: only when the payment is already a retry (``retry_count`` 1-2) or recurring, at most
  four attempts in all, and never for gambling merchants.
- ``account_updater``: only for a stored credential on Visa, Mastercard or Maestro (VAU / ABU).
- ``none`` and ``iso_reformat`` are always eligible, so every transaction has at least two actions.

A combination is eligible when all its parts are.

References
----------
Commission Delegated Regulation (EU) 2018/389 (PSD2 RTS on strong customer authentication), articles 16
(low-value) and 18 (transaction risk analysis, up to 500 EUR); Visa Account Updater and Mastercard Automatic
Billing Updater product documentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from banditgate.policies.actions import Action
from banditgate.simulator.cards import BRAND_INDEX
from banditgate.simulator.contexts import ContextBatch
from banditgate.simulator.markets import COUNTRY_LOCAL_ACQUIRER, COUNTRY_SCA
from banditgate.simulator.merchants import DEVICE_INDEX, MCC_FORCE_3DS_OPT_OUT, MCC_RETRY_OPT_OUT

ACQUIRERS = ("primary", "secondary", "local")
THREE_DS_MODES = ("default", "force", "exempt")

#: Largest amount (EUR) for which an SCA exemption may be requested.
EXEMPTION_LIMIT_EUR = 500.0
#: Most attempts a payment may have (earlier attempts + this one + the instant retry).
MAX_ATTEMPTS = 4

_ACQUIRER_FEE_BPS = {"primary": 20.0, "secondary": 16.0, "local": 24.0}
_ACQUIRER_LATENCY_MS = {"primary": 320.0, "secondary": 380.0, "local": 450.0}


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action: an acquirer plus optional interventions.

    Parameters
    ----------
    id
        The action id sent to the service.
    acquirer
        ``primary``, ``secondary`` or ``local`` (an acquirer in the issuer's country).
    three_ds
        ``default`` (the issuer decides), ``force`` (always authenticate) or ``exempt`` (request an exemption).
    retry
        Retry instantly on a soft decline.
    reformat
        Rewrite the ISO 8583 message for the issuer's quirks (field formats, MIT indicators).
    account_updater
        Refresh a stored card through the scheme's account updater before authorising.
    description
        One line for reports.

    Examples
    --------
    >>> ActionSpec("route_secondary+3ds_force", acquirer="secondary", three_ds="force").features()
    {'acquirer': 'secondary', 'fee_bps': 17.5, 'latency_ms': 1780.0, 'is_3ds': True, 'requests_exemption': False, \
'is_retry': False, 'iso_reformat': False, 'account_updater': False, 'n_interventions': 2}
    """

    id: str
    acquirer: str = "primary"
    three_ds: str = "default"
    retry: bool = False
    reformat: bool = False
    account_updater: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.acquirer not in ACQUIRERS:
            raise ValueError(f"acquirer must be one of {ACQUIRERS}, got {self.acquirer!r}")
        if self.three_ds not in THREE_DS_MODES:
            raise ValueError(f"three_ds must be one of {THREE_DS_MODES}, got {self.three_ds!r}")

    @property
    def n_interventions(self) -> int:
        return (
            (self.acquirer != "primary")
            + (self.three_ds != "default")
            + self.retry
            + self.reformat
            + self.account_updater
        )

    @property
    def fee_bps(self) -> float:
        """Processing cost in basis points of the amount."""
        return (
            _ACQUIRER_FEE_BPS[self.acquirer]
            + 1.5 * (self.three_ds == "force")
            + 2.0 * self.retry
            + 4.0 * self.account_updater
        )

    @property
    def latency_ms(self) -> float:
        """Typical time to an authorisation answer (3-D Secure includes the authentication round trip)."""
        return (
            _ACQUIRER_LATENCY_MS[self.acquirer]
            + 1400.0 * (self.three_ds == "force")
            + 60.0 * (self.three_ds == "exempt")
            + 350.0 * self.retry
            + 15.0 * self.reformat
            + 220.0 * self.account_updater
        )

    def features(self) -> dict[str, Any]:
        """The action features sent with the action (9 of them)."""
        return {
            "acquirer": self.acquirer,
            "fee_bps": self.fee_bps,
            "latency_ms": self.latency_ms,
            "is_3ds": self.three_ds == "force",
            "requests_exemption": self.three_ds == "exempt",
            "is_retry": self.retry,
            "iso_reformat": self.reformat,
            "account_updater": self.account_updater,
            "n_interventions": self.n_interventions,
        }

    def to_action(self) -> Action:
        """The action as the policies package models it."""
        return Action(self.id, self.features())


CATALOGUE: tuple[ActionSpec, ...] = (
    ActionSpec("none", description="primary acquirer, no intervention"),
    ActionSpec("route_secondary", acquirer="secondary", description="route to the secondary acquirer"),
    ActionSpec("route_local_acquirer", acquirer="local", description="route to an acquirer in the issuer's country"),
    ActionSpec("3ds_force", three_ds="force", description="force 3-D Secure authentication"),
    ActionSpec("3ds_exempt", three_ds="exempt", description="request an SCA exemption (TRA / low value)"),
    ActionSpec("retry_instant", retry=True, description="retry instantly on a soft decline"),
    ActionSpec("iso_reformat", reformat=True, description="reformat the ISO 8583 message for the issuer"),
    ActionSpec("account_updater", account_updater=True, description="refresh the stored card first"),
    ActionSpec(
        "route_secondary+3ds_force", acquirer="secondary", three_ds="force", description="secondary acquirer with 3DS"
    ),
    ActionSpec(
        "retry_instant+account_updater", retry=True, account_updater=True, description="refresh the card, then retry"
    ),
)


class ActionCatalogue:
    """The actions of a world, their features and the eligibility rules.

    Parameters
    ----------
    specs
        The actions; ``none`` and ``iso_reformat`` must be among them (they guarantee two eligible actions).

    Examples
    --------
    >>> catalogue = ActionCatalogue()
    >>> len(catalogue), catalogue.ids[:3]
    (10, ('none', 'route_secondary', 'route_local_acquirer'))
    >>> catalogue.features("3ds_force")["latency_ms"]
    1720.0
    """

    def __init__(self, specs: tuple[ActionSpec, ...] = CATALOGUE) -> None:
        ids = [spec.id for spec in specs]
        if len(set(ids)) != len(ids):
            raise ValueError("action ids must be unique")
        if not {"none", "iso_reformat"} <= set(ids):
            raise ValueError("the catalogue needs 'none' and 'iso_reformat' (always eligible)")
        self.specs = tuple(specs)
        self.ids: tuple[str, ...] = tuple(ids)
        self.index: dict[str, int] = {action_id: i for i, action_id in enumerate(ids)}
        self._features = {spec.id: spec.features() for spec in specs}
        self._actions = {spec.id: spec.to_action() for spec in specs}

    def __len__(self) -> int:
        return len(self.specs)

    def spec(self, action_id: str) -> ActionSpec:
        """The action's definition."""
        return self.specs[self.position(action_id)]

    def position(self, action_id: str) -> int:
        """Index of an action in the catalogue (``ValueError`` for an unknown id)."""
        try:
            return self.index[action_id]
        except KeyError:
            raise ValueError(f"unknown action {action_id!r}; known: {', '.join(self.ids)}") from None

    def features(self, action_id: str) -> dict[str, Any]:
        """A copy of the action's features."""
        return dict(self._features[self.ids[self.position(action_id)]])

    def actions(self, action_ids: tuple[str, ...] | list[str]) -> list[Action]:
        """:class:`~banditgate.policies.actions.Action` objects for the ids (shared, immutable)."""
        return [self._actions[self.ids[self.position(a)]] for a in action_ids]

    def eligibility(self, contexts: ContextBatch) -> np.ndarray:
        """Boolean matrix (n contexts, n actions): which actions each transaction may use."""
        brand = contexts["card_brand"]
        device = contexts["device"]
        issuer = contexts["issuer_country"]
        mcc = contexts["mcc"]
        recurring = contexts["is_recurring"]
        retries = contexts["retry_count"]
        ecommerce = (device == DEVICE_INDEX["web"]) | (device == DEVICE_INDEX["app"])
        scheme = (brand == BRAND_INDEX["visa"]) | (brand == BRAND_INDEX["mastercard"])
        scheme_or_maestro = scheme | (brand == BRAND_INDEX["maestro"])
        acquirer_ok = {
            "primary": np.ones(len(contexts), dtype=bool),
            "secondary": scheme_or_maestro,
            "local": scheme_or_maestro & COUNTRY_LOCAL_ACQUIRER[issuer] & contexts["is_cross_border"],
        }
        three_ds_ok = {
            "default": np.ones(len(contexts), dtype=bool),
            "force": ecommerce & ~recurring & ~MCC_FORCE_3DS_OPT_OUT[mcc],
            "exempt": ecommerce & ~recurring & COUNTRY_SCA[issuer] & (contexts["amount_eur"] <= EXEMPTION_LIMIT_EUR),
        }
        retry_ok = ((retries > 0) | recurring) & (retries + 2 <= MAX_ATTEMPTS) & ~MCC_RETRY_OPT_OUT[mcc]
        updater_ok = contexts["stored_credential"] & scheme_or_maestro
        mask = np.empty((len(contexts), len(self.specs)), dtype=bool)
        for j, spec in enumerate(self.specs):
            ok = acquirer_ok[spec.acquirer] & three_ds_ok[spec.three_ds]
            if spec.retry:
                ok = ok & retry_ok
            if spec.account_updater:
                ok = ok & updater_ok
            mask[:, j] = ok
        return mask

    def eligible_ids(self, mask: np.ndarray) -> list[tuple[str, ...]]:
        """Per row of an eligibility matrix, the eligible action ids in catalogue order."""
        keys = mask.astype(np.int64) @ (1 << np.arange(mask.shape[1], dtype=np.int64))
        unique, inverse = np.unique(keys, return_inverse=True)
        sets = [tuple(a for j, a in enumerate(self.ids) if (key >> j) & 1) for key in unique.tolist()]
        return [sets[i] for i in inverse.tolist()]
