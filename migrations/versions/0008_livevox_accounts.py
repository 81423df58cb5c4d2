"""Many LiveVox accounts: every batch, record, target state and target event belongs to one.

What was there before belongs to the account ``default`` (the APPENDQ_LIVEVOX_* settings, which
is what a deployment without APPENDQ_ACCOUNTS_FILE runs as): nothing is lost or moved. Adding a
NOT NULL column with a constant default is a catalogue change in PostgreSQL 11+ (no table
rewrite, fast on a large audit); the default is dropped afterwards so that every writer must
name the account.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 20:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("batches", "records", "target_states", "target_events")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(
            table,
            sa.Column(
                "livevox_account", sa.String(length=32), nullable=False, server_default="default"
            ),
        )
        op.alter_column(table, "livevox_account", server_default=None)
    op.drop_constraint("pk_target_states", "target_states", type_="primary")
    op.create_primary_key("pk_target_states", "target_states", ["livevox_account", "target"])
    op.drop_index("ix_batches_target_created", table_name="batches")
    op.create_index(
        "ix_batches_account_target_created", "batches", ["livevox_account", "target", "created_at"]
    )
    op.drop_index("ix_target_events_target_at", table_name="target_events")
    op.create_index(
        "ix_target_events_account_target_at",
        "target_events",
        ["livevox_account", "target", "at"],
    )


def downgrade() -> None:
    """Only a single-account database goes back: batches or target events of other accounts
    would lose their account, so they are refused; other accounts' target states (why a target
    waits, rewritten each tick) are dropped."""
    for table in ("batches", "target_events"):
        others = op.get_bind().execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE livevox_account <> 'default'")
        )
        if others.scalar_one():
            raise RuntimeError(f"{table} of accounts other than 'default' exist: cannot downgrade")
    op.drop_index("ix_target_events_account_target_at", table_name="target_events")
    op.create_index("ix_target_events_target_at", "target_events", ["target", "at"])
    op.drop_index("ix_batches_account_target_created", table_name="batches")
    op.create_index("ix_batches_target_created", "batches", ["target", "created_at"])
    op.execute("DELETE FROM target_states WHERE livevox_account <> 'default'")
    op.drop_constraint("pk_target_states", "target_states", type_="primary")
    op.create_primary_key("pk_target_states", "target_states", ["target"])
    for table in reversed(_TABLES):
        op.drop_column(table, "livevox_account")
