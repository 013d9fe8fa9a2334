"""Reward kinds: which values a reward of each kind may take.

A *binary* kind (``authorisation``: authorised 1, declined 0; ``chargeback``: charged back 1, else 0) takes
0 or 1 only; a kind may instead declare a closed range ``[minimum, maximum]`` (a margin in euros, say).
The decision log refuses a value outside its kind's rule, and a kind nobody declared
(:func:`~banditgate.ledger.decision_log.check_reward`). Whatever is already stored (a value an older version
accepted) is skipped and counted by every reader instead of failing it: :meth:`RewardKind.valid` is the
filter they share.

>>> authorisation = RewardKind("authorisation")
>>> authorisation.accepts(1.0), authorisation.accepts(0.5), authorisation.rule
(True, False, 'authorisation rewards are 0 or 1')
>>> RewardKind("margin_eur", minimum=-50.0, maximum=500.0, binary=False).rule
'margin_eur rewards lie in [-50, 500]'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_
from sqlalchemy.orm import InstrumentedAttribute


@dataclass(frozen=True)
class RewardKind:
    """The values a reward kind takes: 0 or 1 (``binary``), or any number in ``[minimum, maximum]``."""

    name: str
    minimum: float = 0.0
    maximum: float = 1.0
    binary: bool = True

    def __post_init__(self) -> None:
        if self.binary and (self.minimum, self.maximum) != (0.0, 1.0):
            raise ValueError(f"reward kind {self.name!r}: a binary kind takes 0 or 1, it has no range of its own")
        if not (math.isfinite(self.minimum) and math.isfinite(self.maximum) and self.minimum < self.maximum):
            raise ValueError(
                f"reward kind {self.name!r}: the range must be two finite numbers, the first smaller, "
                f"got [{self.minimum}, {self.maximum}]"
            )

    @property
    def rule(self) -> str:
        """The rule in words, for error messages."""
        if self.binary:
            return f"{self.name} rewards are 0 or 1"
        return f"{self.name} rewards lie in [{self.minimum:g}, {self.maximum:g}]"

    def accepts(self, value: float) -> bool:
        if self.binary:
            return value == 0.0 or value == 1.0
        return self.minimum <= value <= self.maximum  # False for NaN

    def valid(self, column: InstrumentedAttribute[float] | ColumnElement[float]) -> ColumnElement[bool]:
        """SQL: the stored value obeys the rule (NULL, which SQLite makes of NaN, and PostgreSQL's NaN do not)."""
        if self.binary:
            return column.in_([0.0, 1.0])
        return column.between(self.minimum, self.maximum)

    def invalid(self, column: InstrumentedAttribute[float] | ColumnElement[float]) -> ColumnElement[bool]:
        """SQL: the complement of :meth:`valid`, NULL included."""
        return or_(~self.valid(column), column.is_(None))


#: The kinds the service knows unless the ``reward_kinds`` setting says otherwise.
DEFAULT_REWARD_KINDS: Mapping[str, RewardKind] = {
    "authorisation": RewardKind("authorisation"),
    "chargeback": RewardKind("chargeback"),
}


def kind_rule(kind: str, kinds: Mapping[str, RewardKind] | None = None) -> RewardKind:
    """The rule of ``kind`` in ``kinds`` (default: :data:`DEFAULT_REWARD_KINDS`); a kind not declared there is
    read as a range [0, 1], which every oracle and estimator of this package can learn from."""
    declared = (DEFAULT_REWARD_KINDS if kinds is None else kinds).get(kind)
    return declared if declared is not None else RewardKind(kind, binary=False)
