"""policy features: how each context key is used by the policy's oracle

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 10:30:00

Policies created before this revision declare nothing (``{}``): every key is treated automatically.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from banditgate.ledger.types import JSONDocument

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("policies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("features", JSONDocument, nullable=False, server_default="{}"))


def downgrade() -> None:
    # Not in batch mode: on SQLite that copies the table, which the foreign keys of the generations refuse.
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later) drops it in place.
    op.drop_column("policies", "features")
