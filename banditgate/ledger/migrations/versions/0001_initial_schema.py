"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 15:06:35.320684
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from banditgate.ledger.types import JSONDocument, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", JSONDocument, nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_policy"), ["policy"], unique=False)

    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(length=128), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("context", JSONDocument, nullable=False),
        sa.Column("actions", JSONDocument, nullable=False),
        sa.Column("probabilities", JSONDocument, nullable=False),
        sa.Column("action_id", sa.String(length=128), nullable=False),
        sa.Column("propensity", sa.Float(), nullable=False),
        sa.Column("exploration", sa.String(length=32), nullable=False),
        sa.Column("exploration_params", JSONDocument, nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=True),
        sa.Column("draw", sa.Float(), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("decided_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("logged_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index("ix_decisions_policy_decided_at", ["policy", "decided_at"], unique=False)

    op.create_table(
        "policies",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("exploration", sa.String(length=32), nullable=False),
        sa.Column("exploration_params", JSONDocument, nullable=False),
        sa.Column("floor", sa.Float(), nullable=False),
        sa.Column("oracle", sa.String(length=32), nullable=False),
        sa.Column("oracle_params", JSONDocument, nullable=False),
        sa.Column("deployed_generation", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("training_window_start", UTCDateTime(timezone=True), nullable=True),
        sa.Column("training_window_end", UTCDateTime(timezone=True), nullable=True),
        sa.Column("row_counts", JSONDocument, nullable=False),
        sa.Column("oracle", sa.String(length=32), nullable=True),
        sa.Column("oracle_params", JSONDocument, nullable=False),
        sa.Column("exploration", sa.String(length=32), nullable=False),
        sa.Column("exploration_params", JSONDocument, nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=True),
        sa.Column("ope_report", JSONDocument, nullable=True),
        sa.Column("gate_report", JSONDocument, nullable=True),
        sa.Column("promoted_by", sa.String(length=128), nullable=True),
        sa.Column("promoted_reason", sa.Text(), nullable=True),
        sa.Column("promoted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy"],
            ["policies.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("policy", "number"),
    )
    op.create_table(
        "rewards",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("decision_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("observed_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.decision_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("decision_id", "kind", "revision"),
    )
    with op.batch_alter_table("rewards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rewards_decision_id"), ["decision_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rewards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rewards_decision_id"))

    op.drop_table("rewards")
    op.drop_table("generations")
    op.drop_table("policies")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_policy_decided_at")

    op.drop_table("decisions")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_policy"))

    op.drop_table("audit_events")
