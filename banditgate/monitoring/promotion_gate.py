"""The sufficiency gate as the promotion gate: SUFFICIENT evidence, or a named override that expires.

:class:`SufficiencyGate` implements :class:`~banditgate.ledger.promotion.PromotionGate`. It runs inside the
promoting transaction, so it computes nothing: it reads the latest stored gate evaluation of the candidate
(:mod:`banditgate.ledger.gate_evaluations`), which must be recent (``max_age``). It allows the promotion
when that evaluation is SUFFICIENT, or when an :class:`Override` names who takes the responsibility, why, and
until when (in the future). Its report, stored on the generation and in the audit event, carries the
evaluation's id and full report, so the evidence behind the deployment stays readable as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from banditgate.ledger.gate_evaluations import latest_gate_evaluation
from banditgate.ledger.models import Generation, Policy
from banditgate.ledger.promotion import GateVerdict
from banditgate.ledger.types import utcnow
from banditgate.monitoring.sufficiency import Level


@dataclass(frozen=True)
class Override:
    """Permission to promote without SUFFICIENT evidence: who takes it, why, and until when it holds.

    Raises ``ValueError`` when a field is blank or ``until`` is naive.
    """

    by: str
    reason: str
    until: datetime

    def __post_init__(self) -> None:
        if not self.by.strip():
            raise ValueError("an override must name who takes the responsibility (by)")
        if not self.reason.strip():
            raise ValueError("an override must say why (reason)")
        if self.until.tzinfo is None:
            raise ValueError("an override's expiry (until) needs a time zone, e.g. 2026-12-31T00:00:00Z")

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "reason": self.reason, "until": self.until.isoformat()}


class SufficiencyGate:
    """Allows a promotion on a recent SUFFICIENT evaluation, or on a valid override.

    Parameters
    ----------
    max_age
        How old the latest stored evaluation may be (by when it was computed) to count.
    override
        The override the promotion request carries, if any.
    now
        The time of the check (default: the wall clock).
    """

    name = "sufficiency"

    def __init__(
        self, max_age: timedelta = timedelta(hours=24), override: Override | None = None, now: datetime | None = None
    ) -> None:
        self.max_age = max_age
        self.override = override
        self.now = now

    def check(self, session: Session, policy: Policy, generation: Generation) -> GateVerdict:
        now = self.now or utcnow()
        evaluation = latest_gate_evaluation(session, policy.name, generation.number)
        report: dict[str, Any] = {"gate": self.name, "checked_at": now.isoformat()}
        if evaluation is None or now - evaluation.computed_at > self.max_age:
            report["evaluation_id"] = None if evaluation is None else evaluation.id
            report["message"] = (
                f"no gate evaluation of generation {generation.number} computed in the last {_hours(self.max_age)}: "
                f"run `banditgate gate --policy {policy.name} --generation {generation.number}` first"
            )
            return self._decide(report, now, sufficient=False)
        report.update(
            {
                "evaluation_id": evaluation.id,
                "level": evaluation.level,
                "S": evaluation.score,
                "S_proxy": evaluation.score_proxy,
                "as_of": evaluation.as_of.isoformat(),
                "report": evaluation.report,
            }
        )
        sufficient = evaluation.level == Level.SUFFICIENT.value
        report["message"] = f"evidence is {evaluation.level} (S = {evaluation.score:.3f})" + (
            "" if sufficient else f": {evaluation.report.get('summary', '')}"
        )
        return self._decide(report, now, sufficient=sufficient)

    def _decide(self, report: dict[str, Any], now: datetime, *, sufficient: bool) -> GateVerdict:
        if sufficient:
            report["allowed"] = True
            return GateVerdict(True, report)
        if self.override is not None:
            report["override"] = self.override.to_dict()
            if self.override.until > now:
                report["allowed"] = True
                report["message"] += f"; promoted under an override by {self.override.by} until {self.override.until}"
                return GateVerdict(True, report)
            report["message"] += f"; the override expired at {self.override.until.isoformat()}"
        report["allowed"] = False
        return GateVerdict(False, report)


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} hours"
