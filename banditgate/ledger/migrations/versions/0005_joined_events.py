"""joiner bookkeeping: every reward event a joiner read, and events an operator skipped

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 14:00:00

``reward_events`` keeps one row per reward event (by its ``event_id``) that a joiner read from Kafka: what
became of it (recorded, revised, duplicate, refused), or that it waits for its decision (held) or waited
longer than the hold time (orphaned). A redelivered event is recognised by it, so it never becomes a second
revision. ``skipped_events`` keeps the raw bytes of every event an operator told a stopped joiner to skip.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from banditgate.ledger.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reward_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=256), nullable=False),
        sa.Column("instance", sa.String(length=128), nullable=False),
        sa.Column("decision_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("arrived_at", UTCDateTime(), nullable=False),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_reward_events_status", "reward_events", ["status", "decision_id"], unique=False)
    op.create_table(
        "skipped_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("skipped_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("topic", "partition", "offset"),
    )


def downgrade() -> None:
    op.drop_table("skipped_events")
    op.drop_index("ix_reward_events_status", table_name="reward_events")
    op.drop_table("reward_events")
