"""The generation registry: policies, their generations, and the audit trail of changes to them.

Functions take a session and run inside the caller's transaction; writers call them through the
:class:`~banditgate.ledger.writer.BatchingWriter` so that all writes of a process are serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from banditgate.ledger.models import AuditEvent, Generation, Policy
from banditgate.ledger.types import utcnow
from banditgate.policies.exploration import make_rule
from banditgate.policies.oracles import make_oracle

GENERATION_STATUSES = ("candidate", "deployed", "retired")


class UnknownPolicy(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown policy {name!r}")
        self.name = name


@dataclass
class PolicySpec:
    """What an operator configures for a policy. Validated on construction, so a bad rule or oracle
    is refused before anything is written."""

    exploration: str = "squarecb"
    exploration_params: dict[str, Any] = field(default_factory=lambda: {"gamma": 100.0})
    floor: float = 0.01
    oracle: str = "lightgbm"
    oracle_params: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if "floor" in self.exploration_params:
            raise ValueError("set the probability floor with the 'floor' field, not in exploration_params")
        make_rule(self.exploration, {**self.exploration_params, "floor": self.floor})
        make_oracle(self.oracle, self.oracle_params)


def get_policy(session: Session, name: str) -> Policy:
    policy = session.get(Policy, name)
    if policy is None:
        raise UnknownPolicy(name)
    return policy


def list_policies(session: Session) -> list[Policy]:
    return list(session.scalars(select(Policy).order_by(Policy.name)))


def list_generations(session: Session, policy: str) -> list[Generation]:
    return list(session.scalars(select(Generation).where(Generation.policy == policy).order_by(Generation.number)))


def get_generation(session: Session, policy: str, number: int) -> Generation | None:
    return session.scalars(select(Generation).where(Generation.policy == policy, Generation.number == number)).first()


def policy_revisions(session: Session) -> dict[str, int]:
    """Revision counter of every policy: serving processes poll this to notice changes."""
    return dict(session.execute(select(Policy.name, Policy.revision)).tuples().all())


def put_policy(session: Session, name: str, spec: PolicySpec, actor: str, reason: str = "") -> tuple[Policy, bool]:
    """Create the policy (with its uniform generation 0, deployed) or change its configuration.

    Returns the policy and whether it was created. Every change is recorded as an audit event.
    """
    now = utcnow()
    policy = session.get(Policy, name)
    created = policy is None
    if policy is None:
        policy = Policy(name=name, deployed_generation=0, revision=1, created_at=now)
        _apply(policy, spec, now)
        session.add(policy)
        session.flush()  # the generation's foreign key needs the policy row first
        session.add(
            Generation(
                policy=name,
                number=0,
                parent=None,
                status="deployed",
                row_counts={},
                oracle=None,
                oracle_params={},
                exploration="uniform",
                exploration_params={"floor": 0.0},
                promoted_by=actor,
                promoted_reason="cold start: generation 0 is uniform random",
                promoted_at=now,
                created_at=now,
            )
        )
        before: dict[str, Any] = {}
    else:
        before = _config(policy)
        policy.revision += 1
        _apply(policy, spec, now)
    session.add(
        AuditEvent(
            policy=name,
            action="create" if created else "configure",
            actor=actor,
            reason=reason,
            details={"before": before, "after": _config(policy)},
            at=now,
        )
    )
    session.flush()
    return policy, created


def ensure_policy(session: Session, name: str, spec: PolicySpec, actor: str) -> bool:
    """Create the policy if it does not exist yet (configuration in the database wins). Returns created."""
    if session.get(Policy, name) is not None:
        return False
    put_policy(session, name, spec, actor=actor, reason="created at start-up from settings")
    return True


def _apply(policy: Policy, spec: PolicySpec, now: datetime) -> None:
    policy.description = spec.description
    policy.exploration = spec.exploration
    policy.exploration_params = dict(spec.exploration_params)
    policy.floor = spec.floor
    policy.oracle = spec.oracle
    policy.oracle_params = dict(spec.oracle_params)
    policy.updated_at = now


def _config(policy: Policy) -> dict[str, Any]:
    return {
        "exploration": policy.exploration,
        "exploration_params": policy.exploration_params,
        "floor": policy.floor,
        "oracle": policy.oracle,
        "oracle_params": policy.oracle_params,
        "description": policy.description,
    }
