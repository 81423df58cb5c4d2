"""FIFO order of split batches: batches.origin_id and batches.first_position.

A batch split off another (poison bisection) sorts by its root batch's id and the claim position of
its first record, so the records go out where they stood in the queue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 23:40:07.116838
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("origin_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "batches", sa.Column("first_position", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("batches", "first_position")
    op.drop_column("batches", "origin_id")
