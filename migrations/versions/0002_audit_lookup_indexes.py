"""Indexes for the audit lookups at scale: records by service and time, by time alone, records
that parted from their batch by status, batches by campaign.

Built with CREATE INDEX CONCURRENTLY (outside the migration's transaction) so that upgrading a
database that already holds millions of records does not block the drain's inserts meanwhile.
A concurrent build that fails leaves an INVALID index behind: drop it and run the upgrade again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, table, columns, partial-index predicate)
INDEXES: list[tuple[str, str, list[str], str | None]] = [
    ("ix_records_target_enqueued", "records", ["target", "enqueued_at"], None),
    ("ix_records_enqueued", "records", ["enqueued_at"], None),
    ("ix_records_parted", "records", ["status", "enqueued_at"], "status IS NOT NULL"),
    ("ix_batches_campaign", "batches", ["campaign_id"], "campaign_id IS NOT NULL"),
]


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, columns, where in INDEXES:
            extra: dict[str, Any] = {"postgresql_where": where} if where else {}
            op.create_index(
                name,
                table,
                columns,
                unique=False,
                postgresql_concurrently=True,
                if_not_exists=True,
                **extra,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _, _ in reversed(INDEXES):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
