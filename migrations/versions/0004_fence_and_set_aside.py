"""The batch fence (batches.version) and the audit of set-aside targets (target_events).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 15:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("version", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "target_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32)),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_target_events")),
    )
    op.create_index("ix_target_events_target_at", "target_events", ["target", "at"])


def downgrade() -> None:
    op.drop_index("ix_target_events_target_at", table_name="target_events")
    op.drop_table("target_events")
    op.drop_column("batches", "version")
