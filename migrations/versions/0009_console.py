"""The operator's console: who halted and resumed an account's Append calls; an index of batches
by account and status (the status's counts, index only: one pass instead of a scan per account);
two small partial indexes over appended batches (records appended per minute; an account's last
append per target), which the console's overview reads on every refresh.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 00:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("livevox_account", sa.String(length=32), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_account_events"),
    )
    op.create_index(
        "ix_account_events_account_at", "account_events", ["livevox_account", "at"]
    )
    op.create_index("ix_batches_account_status", "batches", ["livevox_account", "status"])
    appended = sa.text("status = 'appended'")
    op.create_index(
        "ix_batches_appended_at",
        "batches",
        ["livevox_account", "finished_at"],
        postgresql_where=appended,
    )
    op.create_index(
        "ix_batches_appended_target_at",
        "batches",
        ["livevox_account", "target", "finished_at"],
        postgresql_where=appended,
    )


def downgrade() -> None:
    op.drop_index("ix_batches_appended_target_at", table_name="batches")
    op.drop_index("ix_batches_appended_at", table_name="batches")
    op.drop_index("ix_batches_account_status", table_name="batches")
    op.drop_index("ix_account_events_account_at", table_name="account_events")
    op.drop_table("account_events")
