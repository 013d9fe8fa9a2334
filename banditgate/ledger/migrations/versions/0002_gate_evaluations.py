"""gate evaluations

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 05:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from banditgate.ledger.types import JSONDocument, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("as_of", UTCDateTime(timezone=True), nullable=False),
        sa.Column("computed_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("score_proxy", sa.Float(), nullable=False),
        sa.Column("report", JSONDocument, nullable=False),
        sa.ForeignKeyConstraint(["policy"], ["policies.name"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gate_evaluations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_gate_evaluations_policy_generation", ["policy", "generation", "computed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gate_evaluations", schema=None) as batch_op:
        batch_op.drop_index("ix_gate_evaluations_policy_generation")
    op.drop_table("gate_evaluations")
