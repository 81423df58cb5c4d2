"""Daily range partitions of the two tables that grow with every record (migration 0010).

- ``records`` by ``id``: a record id is a version-7 UUID whose first 48 bits are the millisecond
  it was accepted, so a UTC day is the id range [day's first ms << 80, next day's). The primary
  key stays the id alone (a record queued twice is still caught by it) and a lookup by id reads
  one partition.
- ``events`` by ``at`` (the transition time), so its key is (id, at).

Each has a ``DEFAULT`` partition for what no day holds: ids of another layout (none are made
today), days not created yet, and the rows ``drop_day`` keeps. A partition is created ahead for
every day up to ``AHEAD_DAYS`` from today by ``appendq migrate`` and, at most once an hour, by the
worker (``ensure_ahead``); a row of a day not created yet lands in ``DEFAULT`` and moves into its
day when the day is created. Nothing is ever refused for want of a partition.

Retention drops whole days (``drop_day``, called by ``appendq.batches.prune``): the rows of batches
that must stay move to ``DEFAULT`` first, the partition is dropped, in one short transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, text

log = logging.getLogger(__name__)

#: Days created ahead of today (UTC), so a worker that stops for a week still finds its days.
AHEAD_DAYS = 7
#: The oldest day a partition is made for when rows of older days are found (migration 0010):
#: older ones stay in DEFAULT rather than make thousands of partitions of a bad clock.
BEHIND_DAYS_MAX = 400
#: How long partition DDL waits for a lock before giving up (and trying again later): it must
#: never hold the drain or an audit behind a long query.
LOCK_TIMEOUT = "2s"
#: pg_advisory_xact_lock key: one partition maintainer at a time (worker, migrate, prune).
_ADVISORY_KEY = 0x61707071_70617274  # "apq" "part"


@dataclass(frozen=True)
class Daily:
    """A table range-partitioned by UTC day on ``column``."""

    table: str
    column: str

    def name(self, day: date) -> str:
        return f"{self.table}_{day:%Y%m%d}"

    @property
    def default(self) -> str:
        return f"{self.table}_default"

    def bound(self, day: date) -> str:
        """The SQL literal of the first value of ``day``."""
        start = day_start(day)
        if self.column == "id":
            return f"'{uuid_floor(start)}'::uuid"
        return f"'{start.isoformat()}'::timestamptz"

    def in_day(self, day: date) -> str:
        """SQL: the rows of ``day``."""
        nxt = day + timedelta(days=1)
        return f"{self.column} >= {self.bound(day)} AND {self.column} < {self.bound(nxt)}"


RECORDS = Daily("records", "id")
EVENTS = Daily("events", "at")
TABLES: tuple[Daily, ...] = (RECORDS, EVENTS)


def is_partition_name(name: str) -> bool:
    """Whether ``name`` is one of the partitions made here (a day or DEFAULT)."""
    for table in TABLES:
        rest = name.removeprefix(f"{table.table}_")
        if rest != name and (rest == "default" or (rest.isdigit() and len(rest) == 8)):
            return True
    return False


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def uuid_floor(moment: datetime) -> uuid.UUID:
    """The smallest version-7 id made at ``moment`` or later (its milliseconds, then zeros)."""
    return uuid.UUID(int=int(moment.timestamp() * 1000) << 80)


def today() -> date:
    return datetime.now(UTC).date()


def days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def is_partitioned(conn: Connection) -> bool:
    """Whether the schema is at migration 0010 or later (records partitioned)."""
    kind = conn.scalar(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('records')::oid"))
    return bool(kind == "p")


def existing(conn: Connection, table: Daily) -> list[date]:
    """The days that have a partition of ``table``, oldest first (none if not partitioned)."""
    names = conn.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table.table},
    )
    found = []
    for name in names:
        stamp = name.removeprefix(f"{table.table}_")
        if stamp.isdigit() and len(stamp) == 8:
            found.append(datetime.strptime(stamp, "%Y%m%d").date())
    return sorted(found)


def _serialise(conn: Connection) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
    conn.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": LOCK_TIMEOUT})


def ensure(conn: Connection, wanted: Sequence[date]) -> list[str]:
    """Create the partitions of ``wanted`` days that do not exist yet, for both tables, in the
    caller's transaction; rows of those days found in DEFAULT move in. Returns the names made."""
    _serialise(conn)
    made = []
    for table in TABLES:
        have = set(existing(conn, table))
        for day in sorted(set(wanted) - have):
            _create(conn, table, day)
            made.append(table.name(day))
    if made:
        log.info("created partitions %s", ", ".join(made), extra={"partitions": made})
    return made


def ensure_ahead(conn: Connection, *, ahead: int = AHEAD_DAYS) -> list[str]:
    """Today's partitions, yesterday's (a clock a little behind) and ``ahead`` days more; none
    before migration 0010 (the tables are not partitioned yet)."""
    if not is_partitioned(conn):
        return []
    now = today()
    return ensure(conn, list(days(now - timedelta(days=1), now + timedelta(days=ahead))))


def _create(conn: Connection, table: Daily, day: date) -> None:
    nxt = day + timedelta(days=1)
    name, default, rows = table.name(day), table.default, table.in_day(day)
    waiting = conn.scalar(text(f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {rows})"))
    if waiting:
        # PostgreSQL refuses a new partition while DEFAULT holds rows of its range: take them
        # out, create the day, put them back (they route to the new day).
        conn.execute(text(f"CREATE TEMP TABLE appendq_moving (LIKE {table.table})"))
        conn.execute(
            text(
                f"WITH moved AS (DELETE FROM {default} WHERE {rows} RETURNING *) "
                "INSERT INTO appendq_moving SELECT * FROM moved"
            )
        )
    conn.execute(
        text(
            f"CREATE TABLE {name} PARTITION OF {table.table} "
            f"FOR VALUES FROM ({table.bound(day)}) TO ({table.bound(nxt)})"
        )
    )
    if waiting:
        conn.execute(text(f"INSERT INTO {table.table} SELECT * FROM appendq_moving"))
        conn.execute(text("DROP TABLE appendq_moving"))


def whole_days_before(conn: Connection, table: Daily, cutoff: datetime) -> list[date]:
    """The days of ``table`` that end at or before ``cutoff``, oldest first."""
    return [d for d in existing(conn, table) if day_start(d + timedelta(days=1)) <= cutoff]


def batch_range(conn: Connection, table: Daily, day: date) -> tuple[int, int] | None:
    """The lowest and highest batch id with rows in ``table``'s partition of ``day`` (each read
    from the batch index); None when it is empty."""
    lo, hi = conn.execute(text(f"SELECT min(batch_id), max(batch_id) FROM {table.name(day)}")).one()
    return None if lo is None else (int(lo), int(hi))


def rows_of(conn: Connection, table: Daily, day: date, batches: Sequence[int]) -> int:
    """How many rows of ``batches`` ``table``'s partition of ``day`` holds (0 without one)."""
    if not batches or day not in existing(conn, table):
        return 0
    found = conn.scalar(
        text(f"SELECT count(*) FROM {table.name(day)} WHERE batch_id = ANY(:ids)"),
        {"ids": list(batches)},
    )
    return int(found or 0)


def lock_day(conn: Connection, tables: Sequence[Daily], day: date) -> None:
    """Hold ``tables``' partitions of ``day`` alone until the caller's transaction ends (no row
    of them read or changed meanwhile), waiting ``LOCK_TIMEOUT`` at most."""
    _serialise(conn)
    if tables:
        names = ", ".join(t.name(day) for t in tables)
        conn.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))


def drop_day(conn: Connection, table: Daily, day: date, kept: Sequence[int]) -> int:
    """Drop ``table``'s partition of ``day``, in the caller's transaction, after moving the rows
    of the ``kept`` batches to DEFAULT. The partition is locked first, so no row of it changes
    between the copy and the drop. Returns how many rows were kept."""
    lock_day(conn, [table], day)
    name = table.name(day)
    moved = 0
    if kept:
        conn.execute(text(f"CREATE TEMP TABLE appendq_kept (LIKE {table.table})"))
        moved = conn.execute(
            text(f"INSERT INTO appendq_kept SELECT * FROM {name} WHERE batch_id = ANY(:kept)"),
            {"kept": list(kept)},
        ).rowcount
    conn.execute(text(f"DROP TABLE {name}"))
    if kept:
        conn.execute(text(f"INSERT INTO {table.table} SELECT * FROM appendq_kept"))
        conn.execute(text("DROP TABLE appendq_kept"))
    log.info("dropped partition %s (%d rows kept in DEFAULT)", name, moved)
    return moved
