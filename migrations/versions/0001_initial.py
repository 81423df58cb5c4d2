"""Initial schema: batches, records, events and target_states (the audit tables).

Revision ID: 0001
Revises:
Create Date: 2026-11-28 22:55:30.786578
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("service_id", sa.BigInteger(), nullable=True),
        sa.Column("campaign_id", sa.BigInteger(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "ready",
                "sending",
                "appended",
                "retry_wait",
                "in_doubt",
                "held",
                "rejected",
                "failed",
                name="batch_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_kind", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("call_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(
        "ix_batches_open",
        "batches",
        ["status", "created_at"],
        unique=False,
        postgresql_where="status IN ('ready', 'retry_wait', 'held', 'sending', 'in_doubt')",
    )
    op.create_index("ix_batches_target_created", "batches", ["target", "created_at"], unique=False)
    op.create_table(
        "target_states",
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=True),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_target_states")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.UUID(), nullable=True),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_events_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_batch_at", "events", ["batch_id", "at"], unique=False)
    op.create_index(
        "ix_events_record",
        "events",
        ["record_id"],
        unique=False,
        postgresql_where="record_id IS NOT NULL",
    )
    op.create_table(
        "records",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("phone1", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=50), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "batched",
                "appended",
                "rejected",
                "held",
                "in_doubt",
                "failed",
                "duplicate",
                name="record_status",
                native_enum=False,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_records_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
    )
    op.create_index(
        "ix_records_account",
        "records",
        ["account"],
        unique=False,
        postgresql_where="account IS NOT NULL",
    )
    op.create_index("ix_records_batch_position", "records", ["batch_id", "position"], unique=False)
    op.create_index("ix_records_phone1", "records", ["phone1"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_records_phone1", table_name="records")
    op.drop_index("ix_records_batch_position", table_name="records")
    op.drop_index(
        "ix_records_account", table_name="records", postgresql_where="account IS NOT NULL"
    )
    op.drop_table("records")
    op.drop_index("ix_events_record", table_name="events", postgresql_where="record_id IS NOT NULL")
    op.drop_index("ix_events_batch_at", table_name="events")
    op.drop_table("events")
    op.drop_table("target_states")
    op.drop_index("ix_batches_target_created", table_name="batches")
    op.drop_index(
        "ix_batches_open",
        table_name="batches",
        postgresql_where="status IN ('ready', 'retry_wait', 'held', 'sending', 'in_doubt')",
    )
    op.drop_table("batches")
