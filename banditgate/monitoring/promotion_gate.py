"""The sufficiency gate as the promotion gate: SUFFICIENT evidence, or a named override that expires.

:class:`SufficiencyGate` implements :class:`~banditgate.ledger.promotion.PromotionGate`. It runs inside the
promoting transaction, so it computes nothing: it reads the stored gate evaluations of the candidate
(:mod:`banditgate.ledger.gate_evaluations`) and relies on the latest *usable* one. An evaluation is usable when

- it judged the evidence as of a recent time: its ``as_of`` is within ``max_age`` of now;
- it judged it as of when it was computed (``as_of`` = ``computed_at``, give or take
  :data:`AS_OF_TOLERANCE`): an evaluation as of a chosen time (``banditgate gate --as-of``) is a look at the
  past or a projection, not the evidence of today;
- its options (window, preset and parameters, reward kinds, segment keys, sample sizes, seed) are the
  policy's configured ones, compared in their canonical JSON form: a shorter window or a looser threshold
  cannot stand in for the configured gate.

It allows the promotion when that evaluation is SUFFICIENT, or when an :class:`Override` names who takes the
responsibility, why, and until when (in the future). Its report, stored on the generation and in the audit
event, carries the evaluation's id and full report (and why the newer ones were not usable), so the evidence
behind the deployment stays readable as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from banditgate.ledger.gate_evaluations import gate_evaluations_since
from banditgate.ledger.models import GateEvaluation, Generation, Policy
from banditgate.ledger.promotion import GateVerdict
from banditgate.ledger.types import utcnow
from banditgate.monitoring.sufficiency import Level

if TYPE_CHECKING:
    from banditgate.monitoring.options import GateOptions

#: How far an evaluation's ``as_of`` may be from its ``computed_at`` and still count as "as of its computation".
AS_OF_TOLERANCE = timedelta(minutes=1)


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
    """Allows a promotion on the latest usable SUFFICIENT evaluation, or on a valid override.

    Parameters
    ----------
    options
        The policy's configured gate options: only an evaluation computed with these counts.
    max_age
        How long ago an evaluation's ``as_of`` may be for it to count.
    override
        The override the promotion request carries, if any.
    now
        The time of the check (default: the wall clock).
    """

    name = "sufficiency"

    def __init__(
        self,
        options: GateOptions,
        max_age: timedelta = timedelta(hours=24),
        override: Override | None = None,
        now: datetime | None = None,
    ) -> None:
        self.options = _canonical(options.to_dict())
        self.max_age = max_age
        self.override = override
        self.now = now

    def check(self, session: Session, policy: Policy, generation: Generation) -> GateVerdict:
        now = self.now or utcnow()
        report: dict[str, Any] = {"gate": self.name, "checked_at": now.isoformat()}
        unusable: list[str] = []
        for evaluation in gate_evaluations_since(session, policy.name, generation.number, now - self.max_age):
            reason = self.unusable(evaluation, now)
            if reason is None:
                break
            unusable.append(f"evaluation {evaluation.id} (as of {evaluation.as_of.isoformat()}) {reason}")
        else:
            report.update({"evaluation_id": None, "unusable": unusable})
            report["message"] = (
                f"no usable gate evaluation of generation {generation.number}: none as of the last "
                f"{_hours(self.max_age)} with the policy's gate options"
                + (f" ({'; '.join(unusable[:3])})" if unusable else "")
                + f"; compute one with `banditgate gate --policy {policy.name} --generation {generation.number}` "
                f"(or POST /v1/policies/{policy.name}/generations/{generation.number}/gate with the admin key), "
                "then promote again"
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
        if unusable:
            report["unusable"] = unusable
        sufficient = evaluation.level == Level.SUFFICIENT.value
        report["message"] = f"evidence is {evaluation.level} (S = {evaluation.score:.3f})" + (
            "" if sufficient else f": {evaluation.report.get('summary', '')}"
        )
        return self._decide(report, now, sufficient=sufficient)

    def unusable(self, evaluation: GateEvaluation, now: datetime) -> str | None:
        """Why ``evaluation`` cannot be what a promotion at ``now`` relies on, or ``None`` if it can."""
        if now - evaluation.as_of > self.max_age:
            return f"is older than {_hours(self.max_age)}"
        if abs(evaluation.computed_at - evaluation.as_of) > AS_OF_TOLERANCE:
            return f"was computed at {evaluation.computed_at.isoformat()}, not as of then"
        if evaluation.computed_at > now + AS_OF_TOLERANCE:
            return f"was computed in the future ({evaluation.computed_at.isoformat()})"
        stored = evaluation.report.get("options") if isinstance(evaluation.report, dict) else None
        differences = _differences(_canonical(stored), self.options) if isinstance(stored, dict) else ["no options"]
        if differences:
            return "was computed with other options than the policy's gate: " + ", ".join(differences)
        return None

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


def _canonical(options: Any) -> Any:
    """The JSON form of gate options, as stored in a report (lists for tuples, plain numbers)."""
    return json.loads(json.dumps(options, sort_keys=True, default=str))


def _differences(stored: dict[str, Any], configured: dict[str, Any], prefix: str = "") -> list[str]:
    """``key stored (configured: value)`` for every option that differs, nested parameters included."""
    found = []
    for key in sorted(set(stored) | set(configured)):
        mine, theirs = stored.get(key), configured.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            found.extend(_differences(mine, theirs, f"{prefix}{key}."))
        elif mine != theirs:
            found.append(f"{prefix}{key} {json.dumps(mine)} (configured: {json.dumps(theirs)})")
    return found
