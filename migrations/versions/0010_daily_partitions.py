"""Daily range partitions: records by id (a version-7 id starts with its millisecond), events by
``at``; a DEFAULT partition each for ids of another layout and days not created yet. Batches
get the first and last enqueue time of their records (filled in from them), which narrow an
audit of a campaign in a time window. Every row is kept: the tables are rebuilt as partitioned tables and the rows copied in, routed to their
day. A day gets a partition if it holds rows (within BEHIND_DAYS_MAX of today) or is yesterday,
today or one of the next AHEAD_DAYS; ``appendq.db.partitions`` creates the later ones.

The copy takes the table's time to rewrite (minutes at tens of millions of rows) while it holds
its locks: run it while the workers and intake are stopped. The downgrade copies them back.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 02:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The indexes of the partitioned tables: each serves a documented lookup (README, "The audit at
#: scale"; ``appendq.audit.query``).
_INDEXES = {
    "records": [
        'CREATE INDEX ix_records_batch_position ON records (batch_id, "position")',
        "CREATE INDEX ix_records_phone1 ON records (phone1)",
        "CREATE INDEX ix_records_account ON records (account) WHERE account IS NOT NULL",
        "CREATE INDEX ix_records_target_enqueued ON records (target, enqueued_at)",
        "CREATE INDEX ix_records_enqueued ON records (enqueued_at)",
        "CREATE INDEX ix_records_parted ON records (status, enqueued_at) "
        "WHERE status IS NOT NULL",
    ],
    "events": ["CREATE INDEX ix_events_batch_at ON events (batch_id, at)"],
}
#: Dropped here: no query reads events by record id (a record's events are found through its
#: batch, ix_events_batch_at). The downgrade builds it again.
_UNUSED = {"events": ["CREATE INDEX ix_events_record ON events (record_id) WHERE record_id IS NOT NULL"]}
_KEYS = {"records": ("id", "id"), "events": ("at", "id, at")}

#: The UTC day of a version-7 id (NULL for another layout): its first 48 bits are milliseconds.
_V7_DAY = (
    "CASE WHEN substr(id::text, 15, 1) = '7' THEN "
    "(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint / 86400000) END"
)
_DAYS = {
    "records": f"SELECT DISTINCT {_V7_DAY} AS d FROM records_unpartitioned",
    "events": "SELECT DISTINCT (extract(epoch FROM at)::bigint / 86400) AS d "
    "FROM events_unpartitioned",
}


def upgrade() -> None:
    from appendq.db import partitions

    conn = op.get_bind()
    op.add_column("batches", sa.Column("enqueued_from", sa.DateTime(timezone=True)))
    op.add_column("batches", sa.Column("enqueued_to", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE batches b SET enqueued_from = m.lo, enqueued_to = m.hi FROM ("
        "SELECT batch_id, min(enqueued_at) AS lo, max(enqueued_at) AS hi FROM records "
        "GROUP BY batch_id) m WHERE m.batch_id = b.id"
    )
    for table in ("records", "events"):
        _set_aside(table)
        column, key = _KEYS[table]
        op.execute(
            f"CREATE TABLE {table} (LIKE {table}_unpartitioned INCLUDING DEFAULTS) "
            f"PARTITION BY RANGE ({column})"
        )
        _constraints(table, key)
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    epoch, now = date(1970, 1, 1), partitions.today()
    oldest = now - timedelta(days=partitions.BEHIND_DAYS_MAX)
    wanted = set(partitions.days(now - timedelta(days=1), now + timedelta(days=partitions.AHEAD_DAYS)))
    for table, query in _DAYS.items():
        for (n,) in conn.execute(sa.text(f"SELECT d FROM ({query}) s WHERE d IS NOT NULL")):
            day = epoch + timedelta(days=int(n))
            if oldest <= day <= now + timedelta(days=partitions.AHEAD_DAYS):
                wanted.add(day)
    partitions.ensure(conn, sorted(wanted))
    for table in ("records", "events"):
        op.execute(f"INSERT INTO {table} SELECT * FROM {table}_unpartitioned")
        op.execute(f"DROP TABLE {table}_unpartitioned")
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY events.id")
    op.execute("ANALYZE records")
    op.execute("ANALYZE events")


def downgrade() -> None:
    for table in ("records", "events"):
        _set_aside(table)
        op.execute(f"CREATE TABLE {table} (LIKE {table}_unpartitioned INCLUDING DEFAULTS)")
        _constraints(table, "id")
        for statement in _UNUSED.get(table, []):
            op.execute(statement)
        op.execute(f"INSERT INTO {table} SELECT * FROM {table}_unpartitioned")
        op.execute(f"DROP TABLE {table}_unpartitioned")  # and its partitions
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY events.id")
    op.drop_column("batches", "enqueued_to")
    op.drop_column("batches", "enqueued_from")


def _set_aside(table: str) -> None:
    """Rename ``table`` out of the way and free its constraint and index names."""
    op.execute(f"ALTER TABLE {table} RENAME TO {table}_unpartitioned")
    op.execute(f"ALTER TABLE {table}_unpartitioned DROP CONSTRAINT pk_{table}")
    op.execute(f"ALTER TABLE {table}_unpartitioned DROP CONSTRAINT fk_{table}_batch_id_batches")
    for statement in _INDEXES[table] + _UNUSED.get(table, []):
        op.execute(f"DROP INDEX IF EXISTS {statement.split()[2]}")
    if table == "events":
        # The sequence belongs to the old table's column: keep it when that table goes.
        op.execute("ALTER SEQUENCE events_id_seq OWNED BY NONE")


def _constraints(table: str, key: str) -> None:
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({key})")
    op.execute(
        f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_batch_id_batches "
        "FOREIGN KEY (batch_id) REFERENCES batches (id)"
    )
    for statement in _INDEXES[table]:
        op.execute(statement)
