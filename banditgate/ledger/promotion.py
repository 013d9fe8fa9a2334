"""Promotion and rollback of policy generations, with who, when and why.

A generation is born a *candidate* (the retraining job registers it). :func:`promote` makes a candidate the
*deployed* generation and retires the one it replaces; :func:`rollback` redeploys a *retired* generation and
retires the current one. Both bump the policy's revision, so every serving process switches on its next
refresh, and both record the actor, the reason and the time on the generation and as an
:class:`~banditgate.ledger.models.AuditEvent` (``details``: ``from``, ``to``, ``gate``).

Promotion asks a :class:`PromotionGate` first. There is no sufficiency gate yet: the default,
:class:`NoGate`, allows everything and says so in its report, which is stored in ``Generation.gate_report``
like any gate's. Rollback does not ask the gate: it returns to a generation that has served before, and the
way back must never be blocked by missing evidence.

Functions take a session and run inside the caller's transaction (through the writer, in the service). A
refusal raises before anything is changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from banditgate.ledger.models import AuditEvent, Generation, Policy
from banditgate.ledger.registry import UnknownPolicy, get_generation, get_policy
from banditgate.ledger.types import utcnow


class PromotionError(Exception):
    """A promotion or rollback was refused; nothing was changed."""


class UnknownGeneration(PromotionError, LookupError):
    def __init__(self, policy: str, number: int) -> None:
        super().__init__(f"policy {policy!r} has no generation {number}")
        self.policy = policy
        self.number = number


class TransitionConflict(PromotionError):
    """The generation's status does not allow the change (already deployed, retired, nothing to roll back to)."""


class GateRefused(TransitionConflict):
    """The promotion gate did not allow the promotion; ``report`` says why."""

    def __init__(self, policy: str, number: int, report: dict[str, Any]) -> None:
        super().__init__(f"the promotion gate refused generation {number} of policy {policy!r}")
        self.report = report


class MissingAttribution(PromotionError, ValueError):
    """Promotions and rollbacks must say who made them and why."""


@dataclass(frozen=True)
class GateVerdict:
    """A gate's answer: whether the promotion may go ahead, and the evidence (JSON) it was based on."""

    allowed: bool
    report: dict[str, Any]


class PromotionGate(Protocol):
    """Checked by :func:`promote` before a candidate replaces the deployed generation.

    ``check`` runs inside the promoting transaction (in the service: on the writer, on the event loop), so it
    must be quick: read evidence computed beforehand rather than compute it. Its report must be JSON.
    """

    def check(self, session: Session, policy: Policy, generation: Generation) -> GateVerdict:
        """Decide whether ``generation`` may become the deployed generation of ``policy``."""
        ...


class NoGate:
    """Allows every promotion, and records that no evidence was checked."""

    def check(self, session: Session, policy: Policy, generation: Generation) -> GateVerdict:
        return GateVerdict(
            allowed=True,
            report={
                "gate": "none",
                "allowed": True,
                "message": "no sufficiency gate configured yet: promoted without an evidence check",
            },
        )


NO_GATE = NoGate()


@dataclass(frozen=True)
class Transition:
    """What a promotion or rollback did: the generation now deployed, the one it retired, the audit event."""

    action: Literal["promote", "rollback"]
    deployed: Generation
    replaced: Generation
    event: AuditEvent


def promote(
    session: Session,
    policy: str,
    generation: int,
    actor: str,
    reason: str,
    gate: PromotionGate = NO_GATE,
) -> Transition:
    """Deploy candidate ``generation`` of ``policy`` if ``gate`` allows it; the deployed one is retired.

    Raises :class:`~banditgate.ledger.registry.UnknownPolicy`, :class:`UnknownGeneration`,
    :class:`TransitionConflict` (already deployed; retired: use :func:`rollback`), :class:`GateRefused`
    (carrying the gate's report) or :class:`MissingAttribution`.
    """
    actor, reason = _who_and_why(actor, reason)
    current = _lock_policy(session, policy)
    target = _generation(session, policy, generation)
    if target.status == "deployed":
        raise TransitionConflict(f"generation {generation} of policy {policy!r} is already deployed")
    if target.status == "retired":
        raise TransitionConflict(
            f"generation {generation} of policy {policy!r} is retired: redeploy it with a rollback to {generation}"
        )
    verdict = gate.check(session, current, target)
    if not verdict.allowed:
        raise GateRefused(policy, generation, verdict.report)
    target.gate_report = verdict.report
    return _switch(session, current, target, "promote", actor, reason, verdict.report)


def rollback(session: Session, policy: str, actor: str, reason: str, to: int | None = None) -> Transition:
    """Redeploy a retired generation of ``policy`` (by default :func:`rollback_target`); the current one retires.

    Raises :class:`~banditgate.ledger.registry.UnknownPolicy`, :class:`UnknownGeneration`,
    :class:`TransitionConflict` (``to`` is deployed or a candidate, or nothing was ever retired) or
    :class:`MissingAttribution`.
    """
    actor, reason = _who_and_why(actor, reason)
    current = _lock_policy(session, policy)
    target = rollback_target(session, policy, to)
    return _switch(session, current, target, "rollback", actor, reason, None)


def rollback_target(session: Session, policy: str, to: int | None = None) -> Generation:
    """The generation a rollback of ``policy`` would redeploy; refuses like :func:`rollback`.

    By default: the generation that the deployed one replaced (the most recently retired one), so two
    rollbacks in a row go back and forth. ``to`` names any retired generation instead, generation 0 included.
    """
    get_policy(session, policy)
    if to is None:
        target = session.scalars(
            select(Generation)
            .where(Generation.policy == policy, Generation.status == "retired", Generation.promoted_at.is_not(None))
            .order_by(Generation.promoted_at.desc(), Generation.number.desc())
            .limit(1)
        ).first()
        if target is None:
            raise TransitionConflict(f"policy {policy!r} has no retired generation: nothing to roll back to")
        return target
    target = _generation(session, policy, to)
    if target.status == "deployed":
        raise TransitionConflict(f"generation {to} of policy {policy!r} is already deployed")
    if target.status == "candidate":
        raise TransitionConflict(
            f"generation {to} of policy {policy!r} is a candidate that never served: promote it instead"
        )
    return target


def _who_and_why(actor: str, reason: str) -> tuple[str, str]:
    if not actor.strip():
        raise MissingAttribution("say who is making the change (actor)")
    if not reason.strip():
        raise MissingAttribution("say why (reason): it is kept in the audit trail")
    return actor.strip(), reason.strip()


def _lock_policy(session: Session, name: str) -> Policy:
    """The policy, read only once its write lock is held, so that concurrent promotions and rollbacks (from
    other serving processes too) queue up instead of both retiring the same generation.

    The lock is taken by a no-op UPDATE as the transaction's first statement: a row lock on PostgreSQL, the
    database's write lock on SQLite (where a transaction otherwise begins at its first write, after the reads).
    """
    session.execute(
        update(Policy).where(Policy.name == name).values(revision=Policy.revision),
        execution_options={"synchronize_session": False},
    )
    policy = session.get(Policy, name, populate_existing=True)
    if policy is None:
        raise UnknownPolicy(name)
    return policy


def _generation(session: Session, policy: str, number: int) -> Generation:
    generation = get_generation(session, policy, number)
    if generation is None:
        raise UnknownGeneration(policy, number)
    return generation


def _switch(
    session: Session,
    policy: Policy,
    target: Generation,
    action: Literal["promote", "rollback"],
    actor: str,
    reason: str,
    gate_report: dict[str, Any] | None,
) -> Transition:
    now = utcnow()
    replaced = _generation(session, policy.name, policy.deployed_generation)
    replaced.status = "retired"
    target.status = "deployed"
    target.promoted_by = actor
    target.promoted_reason = reason
    target.promoted_at = now
    policy.deployed_generation = target.number
    policy.revision += 1
    policy.updated_at = now
    event = AuditEvent(
        policy=policy.name,
        action=action,
        actor=actor,
        reason=reason,
        details={"from": replaced.number, "to": target.number, "gate": gate_report},
        at=now,
    )
    session.add(event)
    session.flush()
    return Transition(action, target, replaced, event)
