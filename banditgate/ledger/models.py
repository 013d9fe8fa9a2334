"""SQLAlchemy 2 models: policies, their generations, decisions, rewards and the audit trail.

The schema is owned by the Alembic migrations in ``migrations/``; these models must match them
(``tests/ledger/test_migrations.py`` checks that autogenerate finds no difference).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from banditgate.ledger.types import JSONDocument, UTCDateTime, utcnow


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSONDocument,
        list[Any]: JSONDocument,
        datetime: UTCDateTime,
    }


class Policy(Base):
    """A named decision policy: its exploration rule and oracle configuration, and which generation serves.

    The policy's exploration rule and floor apply to every generation with a trained oracle (a generation
    may refine the rule's parameters, e.g. its own SquareCB gamma, when it was trained for the same rule);
    generation 0 has no oracle and is always uniform. ``revision`` increases on every change so serving
    processes notice within seconds.
    """

    __tablename__ = "policies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    exploration: Mapped[str] = mapped_column(String(32))
    exploration_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    floor: Mapped[float] = mapped_column(Float, default=0.0)
    oracle: Mapped[str] = mapped_column(String(32))
    oracle_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # How each context key is used ({key: treatment}, see banditgate.policies.oracles.features.parse_features).
    features: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    deployed_generation: Mapped[int] = mapped_column(Integer, default=0)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Generation(Base):
    """One trained (or, for number 0, uniform) version of a policy and everything needed to audit it."""

    __tablename__ = "generations"
    __table_args__ = (UniqueConstraint("policy", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy: Mapped[str] = mapped_column(ForeignKey("policies.name"))
    number: Mapped[int] = mapped_column(Integer)
    parent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # candidate | deployed | retired
    training_window_start: Mapped[datetime | None] = mapped_column(nullable=True)
    training_window_end: Mapped[datetime | None] = mapped_column(nullable=True)
    row_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    oracle: Mapped[str | None] = mapped_column(String(32), nullable=True)
    oracle_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    exploration: Mapped[str] = mapped_column(String(32))
    exploration_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ope_report: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    gate_report: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    promoted_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    promoted_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    promoted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Decision(Base):
    """One logged decision: everything needed to replay the draw and to learn from it off-policy."""

    __tablename__ = "decisions"
    # Covering for the sufficiency gate's read of a window: a million decisions are read from this index
    # alone, without touching the rows and their JSON documents.
    __table_args__ = (
        Index("ix_decisions_window", "policy", "decided_at", "decision_id", "action_id", "segment_values"),
    )

    decision_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    policy: Mapped[str] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(Integer)
    context: Mapped[dict[str, Any]] = mapped_column()
    actions: Mapped[list[Any]] = mapped_column()  # [{"id": ..., "features": {...}}, ...] in request order
    probabilities: Mapped[list[Any]] = mapped_column()  # aligned with ``actions``
    action_id: Mapped[str] = mapped_column(String(128))
    propensity: Mapped[float] = mapped_column(Float)
    exploration: Mapped[str] = mapped_column(String(32))
    exploration_params: Mapped[dict[str, Any]] = mapped_column()
    # The context values the policy's gate segments by (e.g. {"issuer_country": "FR"}), copied out of the
    # context when the decision is logged, so that the gate's window read stays within the index above.
    segment_values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    draw: Mapped[float] = mapped_column(Float)
    request_sha256: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column()
    logged_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reward(Base):
    """One observed reward value. A different value for the same (decision, kind) is a new revision."""

    __tablename__ = "rewards"
    # The index answers "when did this decision's label of this kind first arrive" without reading rows.
    __table_args__ = (
        UniqueConstraint("decision_id", "kind", "revision"),
        Index("ix_rewards_arrival", "decision_id", "kind", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.decision_id"))
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    revision: Mapped[int] = mapped_column(Integer)
    observed_at: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who changed what, when and why: policy configuration, promotions, rollbacks, overrides."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class GateEvaluation(Base):
    """One evaluation of the sufficiency gate for a generation, as of a point in time, with its full report.

    A promotion refers to the evaluation it relied on (``AuditEvent.details["gate"]["evaluation_id"]``), so
    the evidence behind every deployment stays readable as it was when the decision was made.
    """

    __tablename__ = "gate_evaluations"
    __table_args__ = (Index("ix_gate_evaluations_policy_generation", "policy", "generation", "computed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy: Mapped[str] = mapped_column(ForeignKey("policies.name"))
    generation: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[datetime] = mapped_column()
    computed_at: Mapped[datetime] = mapped_column()
    level: Mapped[str] = mapped_column(String(16))  # SUFFICIENT | DEGRADED | INSUFFICIENT
    score: Mapped[float] = mapped_column(Float)
    score_proxy: Mapped[float] = mapped_column(Float)
    report: Mapped[dict[str, Any]] = mapped_column()


class RewardEventRow(Base):
    """A reward event a joiner read from Kafka (by ``event_id``) and what became of it.

    ``status`` is a :class:`~banditgate.ledger.records.RewardStatus` once the reward was applied, ``refused``
    when the reward rules refused it (``detail`` says why), ``held`` while its decision has not arrived, and
    ``orphaned`` once it was held longer than the joiner's hold time (it is still joined if the decision comes).
    A redelivered event finds its row here and is not applied again.
    """

    __tablename__ = "reward_events"
    # Held and orphaned rewards by decision: the joiner looks up the waiting rewards of every decision it writes.
    __table_args__ = (Index("ix_reward_events_status", "status", "decision_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(256), unique=True)
    instance: Mapped[str] = mapped_column(String(128))
    decision_id: Mapped[str] = mapped_column(String(128))  # no foreign key: the decision may not have arrived
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    observed_at: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    arrived_at: Mapped[datetime] = mapped_column()
    settled_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SkippedEvent(Base):
    """An event a joiner could not read and an operator told it to skip (``banditgate joiner --skip-offset``):
    its raw bytes are kept here rather than dropped."""

    __tablename__ = "skipped_events"
    __table_args__ = (UniqueConstraint("topic", "partition", "offset"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(249))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    value: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    skipped_at: Mapped[datetime] = mapped_column()
