"""The generation registry: policies, their generations, and the audit trail of changes to them.

Functions take a session and run inside the caller's transaction; writers call them through the
:class:`~banditgate.ledger.writer.BatchingWriter` so that all writes of a process are serialised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from banditgate.ledger.models import AuditEvent, Generation, Policy
from banditgate.ledger.types import utcnow
from banditgate.policies.exploration import make_rule
from banditgate.policies.oracles import make_oracle, sha256_hex
from banditgate.policies.oracles.features import features_to_json, parse_features

#: Policy names: they name directories of the artifact directory and report files, so no separators.
POLICY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def check_policy_name(name: str) -> str:
    """``name`` if it is a valid policy name, else a ValueError saying what one is.

    >>> check_policy_name("../etc")
    Traceback (most recent call last):
    ...
    ValueError: invalid policy name '../etc': a letter or digit, then letters, digits, '_', '.', '-' (at most 64)
    """
    if not isinstance(name, str) or re.fullmatch(POLICY_NAME_PATTERN, name) is None:
        raise ValueError(
            f"invalid policy name {name!r}: a letter or digit, then letters, digits, '_', '.', '-' (at most 64)"
        )
    return name


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
    #: How each context key is used, ``{key: treatment}`` (see
    #: :func:`~banditgate.policies.oracles.features.parse_features`); stored in canonical form.
    features: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "floor" in self.exploration_params:
            raise ValueError("set the probability floor with the 'floor' field, not in exploration_params")
        if "features" in self.oracle_params:
            raise ValueError("declare how context keys are used with the 'features' field, not in oracle_params")
        make_rule(self.exploration, {**self.exploration_params, "floor": self.floor})
        self.features = features_to_json(parse_features(self.features))
        make_oracle(self.oracle, oracle_config(self.oracle_params, self.features))


def oracle_config(oracle_params: dict[str, Any], features: dict[str, Any]) -> dict[str, Any]:
    """The parameters an oracle is built with: the policy's ``oracle_params`` and its ``features`` (every oracle
    takes the declaration of the context keys, and records it in its hyper-parameters)."""
    return {**oracle_params, "features": features}


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


def newest_candidate(session: Session, policy: str) -> int | None:
    """The number of ``policy``'s newest candidate generation (trained, not deployed yet), or None."""
    return session.scalars(
        select(Generation.number)
        .where(Generation.policy == policy, Generation.status == "candidate")
        .order_by(Generation.number.desc())
        .limit(1)
    ).first()


def list_audit_events(session: Session, policy: str, limit: int = 100) -> list[AuditEvent]:
    """The audit trail of ``policy``, newest first."""
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.policy == policy).order_by(AuditEvent.id.desc()).limit(limit)
        )
    )


def policy_revisions(session: Session) -> dict[str, int]:
    """Revision counter of every policy: serving processes poll this to notice changes."""
    return {name: revision for name, revision in session.execute(select(Policy.name, Policy.revision))}


def put_policy(session: Session, name: str, spec: PolicySpec, actor: str, reason: str = "") -> tuple[Policy, bool]:
    """Create the policy (with its uniform generation 0, deployed) or change its configuration.

    Returns the policy and whether it was created. Every change is recorded as an audit event.
    """
    check_policy_name(name)
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


def store_artifact(artifact_dir: Path, policy: str, number: int, data: bytes) -> tuple[str, str]:
    """Write a generation's oracle artifact; return its path relative to ``artifact_dir`` and its sha256.

    Written to a temporary name and renamed, so a serving process never reads a half-written file.
    """
    relative = Path(check_policy_name(policy)) / f"generation-{number:05d}.oracle"
    path = artifact_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return str(relative), sha256_hex(data)


def register_generation(
    session: Session,
    policy: str,
    *,
    artifact_path: str,
    artifact_sha256: str,
    oracle: str,
    oracle_params: dict[str, Any],
    exploration: str,
    exploration_params: dict[str, Any],
    row_counts: dict[str, Any] | None = None,
    training_window: tuple[datetime, datetime] | None = None,
    parent: int | None = None,
) -> Generation:
    """Register the next generation of ``policy`` as a candidate (it serves nothing until deployed)."""
    current = get_policy(session, policy)
    last = session.scalar(select(func.max(Generation.number)).where(Generation.policy == policy))
    generation = Generation(
        policy=policy,
        number=(last or 0) + 1,
        parent=current.deployed_generation if parent is None else parent,
        status="candidate",
        training_window_start=training_window[0] if training_window else None,
        training_window_end=training_window[1] if training_window else None,
        row_counts=row_counts or {},
        oracle=oracle,
        oracle_params=oracle_params,
        exploration=exploration,
        exploration_params=exploration_params,
        artifact_path=artifact_path,
        artifact_sha256=artifact_sha256,
        created_at=utcnow(),
    )
    session.add(generation)
    session.flush()
    return generation


def deploy_generation(session: Session, policy: str, number: int, actor: str, reason: str) -> Generation:
    """Make generation ``number`` the one that serves; the previously deployed one is retired.

    Serving processes pick it up on their next refresh (the policy's revision changes).
    """
    current = get_policy(session, policy)
    generation = get_generation(session, policy, number)
    if generation is None:
        raise LookupError(f"policy {policy!r} has no generation {number}")
    now = utcnow()
    previous = get_generation(session, policy, current.deployed_generation)
    if previous is not None and previous.number != number:
        previous.status = "retired"
    generation.status = "deployed"
    generation.promoted_by = actor
    generation.promoted_reason = reason
    generation.promoted_at = now
    current.deployed_generation = number
    current.revision += 1
    current.updated_at = now
    session.add(
        AuditEvent(
            policy=policy,
            action="deploy",
            actor=actor,
            reason=reason,
            details={"from": previous.number if previous else None, "to": number},
            at=now,
        )
    )
    session.flush()
    return generation


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
    policy.features = dict(spec.features)
    policy.updated_at = now


def _config(policy: Policy) -> dict[str, Any]:
    return {
        "exploration": policy.exploration,
        "exploration_params": policy.exploration_params,
        "floor": policy.floor,
        "oracle": policy.oracle,
        "oracle_params": policy.oracle_params,
        "features": policy.features,
        "description": policy.description,
    }
