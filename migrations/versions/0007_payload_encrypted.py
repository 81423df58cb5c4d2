"""Personal data encrypted at rest: records.payload_enc (the LiveVox record, encrypted by
appendq.crypto) and records.payload_key (the id of the key it is under); the clear payload column
becomes nullable and stays only for rows written before this revision, until `appendq rotate-keys`
encrypts them (a migration does not see the application's keys, so it leaves that to the command).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 19:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("records", sa.Column("payload_enc", sa.LargeBinary(), nullable=True))
    op.add_column("records", sa.Column("payload_key", sa.String(length=16), nullable=True))
    op.alter_column(
        "records", "payload", existing_type=postgresql.JSONB(astext_type=sa.Text()), nullable=True
    )


def downgrade() -> None:
    # The clear column cannot be rebuilt without the keys: refuse rather than lose payloads.
    left = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM records WHERE payload IS NULL OR payload_enc IS NOT NULL")
    )
    if left:
        raise RuntimeError(
            f"{left} records hold an encrypted or dropped payload: downgrading below 0007 "
            "would lose them"
        )
    op.alter_column(
        "records", "payload", existing_type=postgresql.JSONB(astext_type=sa.Text()), nullable=False
    )
    op.drop_column("records", "payload_key")
    op.drop_column("records", "payload_enc")
