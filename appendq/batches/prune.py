"""Retention: drop finished batches older than N days, with their records and events; and, after
APPENDQ_PII_RETENTION_DAYS (never longer), the payloads (the personal data) of finished batches,
while their metadata (batch, lookup columns, events) is kept for the longer retention.

Only finished batches go (appended, rejected, failed) whose last transition is older than the
cutoff; open ones (ready, sending, retry_wait, held, in_doubt) are never touched, however old. The
work runs in chunks of ``chunk`` batches, one short transaction each, with the chunk's batch rows
locked (SKIP LOCKED: a batch an operator is retrying right now is left for the next run), so the
drain and the auditors are never blocked for long.

Whole days go first (``drop_days``): records and events are partitioned by UTC day
(``appendq.db.partitions``), and a day that ended before the cutoff is dropped as a partition in
one short transaction, after the rows of the batches that must stay (open, or changed since the
cutoff, or locked by an operator's retry right now) move to the DEFAULT partition. What is left
of old batches (rows in days that end after the cutoff) then goes by deletes, in chunks.

Payloads are dropped in chunks of ``DROP_CHUNK`` batches (at most 50,000 records a transaction).
Open batches, and those held for an operator, keep theirs however old: they may still be sent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from appendq.batches import reads
from appendq.batches.store import BatchStore
from appendq.clock import utcnow
from appendq.db import partitions
from appendq.db.models import FINISHED_STATUSES, Batch, Record

log = logging.getLogger(__name__)

#: PostgreSQL's lock_not_available (lock_timeout passed).
LOCK_NOT_AVAILABLE = "55P03"

#: Batches per transaction: at most 50 x 10,000 records deleted while their rows are locked.
CHUNK = 50
#: Batches per transaction when dropping payloads: at most 5 x 10,000 records rewritten.
DROP_CHUNK = 5


@dataclass(frozen=True)
class PruneReport:
    cutoff: datetime
    batches: int = 0
    records: int = 0
    events: int = 0
    #: partitions dropped (a day of records or of events each)
    partitions: int = 0

    def __add__(self, other: PruneReport) -> PruneReport:
        return PruneReport(
            self.cutoff,
            self.batches + other.batches,
            self.records + other.records,
            self.events + other.events,
            self.partitions + other.partitions,
        )


def cutoff_for(older_than_days: int, now: datetime | None = None) -> datetime:
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1 (0 keeps everything)")
    return (now or utcnow()) - timedelta(days=older_than_days)


def preview_prune(session: Session, cutoff: datetime) -> PruneReport:
    """What ``prune`` would delete (batches and their records; events are counted when deleted)."""
    batches, records = session.execute(
        select(func.count(), func.coalesce(func.sum(Batch.size), 0)).where(*_prunable(cutoff))
    ).one()
    return PruneReport(cutoff, int(batches), int(records))


def prune(sessions: sessionmaker[Session], cutoff: datetime, *, chunk: int = CHUNK) -> PruneReport:
    """Delete finished batches last changed before ``cutoff``, with their records and events:
    the whole days first (``drop_days``), then the rest ``chunk`` batches per transaction.
    Returns what was deleted."""
    total = drop_days(sessions, cutoff)
    while True:
        with sessions() as session, session.begin():
            counts = BatchStore(session, "prune").prune(_prunable(cutoff), chunk)
        done = PruneReport(cutoff, *counts)
        if done.batches == 0:
            break
        total += done
        _logged(done, "")
    return total


def drop_days(sessions: sessionmaker[Session], cutoff: datetime) -> PruneReport:
    """Drop the partitions of the days that ended before ``cutoff``, one day per transaction."""
    total = PruneReport(cutoff)
    with sessions() as session:
        conn = session.connection()
        old = {d for t in partitions.TABLES for d in partitions.whole_days_before(conn, t, cutoff)}
    for day in sorted(old):
        done = _drop_day_when_free(sessions, cutoff, day)
        total += done
        _logged(done, f" with the partitions of {day.isoformat()}")
    return total


class PartitionBusy(Exception):
    """A day's partition stayed locked (a long query reading it) through every try."""


#: Tries per day when its partition is locked (each waits ``partitions.LOCK_TIMEOUT``).
BUSY_TRIES = 3
BUSY_PAUSE_S = 1.0


def _drop_day_when_free(
    sessions: sessionmaker[Session], cutoff: datetime, day: date
) -> PruneReport:
    """``_drop_day`` in a transaction of its own, tried again while the partition is locked
    (the drain's and the auditors' own work goes first: DROP waits for no query long)."""
    for attempt in range(1, BUSY_TRIES + 1):
        try:
            with sessions() as session, session.begin():
                return _drop_day(session, cutoff, day)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            log.warning("the partitions of %s are busy (try %d of %d)", day, attempt, BUSY_TRIES)
            time.sleep(BUSY_PAUSE_S)
    raise PartitionBusy(
        f"the partitions of {day.isoformat()} stayed locked by other queries through "
        f"{BUSY_TRIES} tries of {partitions.LOCK_TIMEOUT}: run prune again later (nothing of "
        "that day was deleted)"
    )


def _drop_day(session: Session, cutoff: datetime, day: date) -> PruneReport:
    """One day: its prunable batches row locked, the others' rows kept, its partitions dropped,
    then what is left of the prunable batches elsewhere deleted with them."""
    conn = session.connection()
    tables = [t for t in partitions.TABLES if day in partitions.existing(conn, t)]
    # First: from here no row of the day moves to another batch (a split) unseen by ``kept``.
    partitions.lock_day(conn, tables, day)
    ranges = [r for t in tables if (r := partitions.batch_range(conn, t, day)) is not None]
    gone: list[int] = []
    kept: list[int] = []
    if ranges:
        lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        span = [Batch.id.between(lo, hi)]
        gone = reads.lock_chunk(session, [*span, *_prunable(cutoff)], hi - lo + 1)
        kept = list(session.scalars(select(Batch.id).where(*span, Batch.id.not_in(gone))))
    # Counted before the drop: the day's events of the batches going (few: a handful a batch);
    # their records are their batches' sizes (a count of a day of records would take seconds).
    dropped_events = partitions.rows_of(conn, partitions.EVENTS, day, gone)
    for table in tables:
        partitions.drop_day(conn, table, day, kept)
    sizes = select(func.coalesce(func.sum(Batch.size), 0)).where(Batch.id.in_(gone))
    records = int(session.scalar(sizes) or 0)
    batches, _, events = BatchStore(session, "prune").delete(gone)
    return PruneReport(cutoff, batches, records, events + dropped_events, len(tables))


def _logged(done: PruneReport, how: str) -> None:
    log.info(
        "pruned %d batches (%d records, %d events) last changed before %s%s",
        done.batches,
        done.records,
        done.events,
        done.cutoff.isoformat(),
        how,
        extra={"batches": done.batches, "records": done.records, "events": done.events},
    )


def _prunable(cutoff: datetime) -> list[ColumnElement[bool]]:
    return [Batch.status.in_(FINISHED_STATUSES), Batch.updated_at < cutoff]


@dataclass(frozen=True)
class DropReport:
    """Finished batches whose payloads were dropped, and how many records lost theirs."""

    cutoff: datetime
    batches: int = 0
    records: int = 0


def preview_drop(session: Session, cutoff: datetime) -> DropReport:
    """What ``drop_personal_data`` would do (records counted by batch size)."""
    batches, records = session.execute(
        select(func.count(), func.coalesce(func.sum(Batch.size), 0)).where(*_droppable(cutoff))
    ).one()
    return DropReport(cutoff, int(batches), int(records))


def drop_personal_data(
    sessions: sessionmaker[Session], cutoff: datetime, *, chunk: int = DROP_CHUNK
) -> DropReport:
    """Set to NULL the payloads of finished batches last changed before ``cutoff`` (the
    personal-data retention), ``chunk`` batches per transaction; everything else stays."""
    total = DropReport(cutoff)
    while True:
        with sessions() as session, session.begin():
            batches, records = BatchStore(session, "prune").drop_payloads(_droppable(cutoff), chunk)
        if batches == 0:
            return total
        total = DropReport(cutoff, total.batches + batches, total.records + records)
        log.info(
            "dropped the payloads of %d records in %d finished batches last changed before %s",
            records,
            batches,
            cutoff.isoformat(),
            extra={"batches": batches, "records": records},
        )


def _droppable(cutoff: datetime) -> list[ColumnElement[bool]]:
    """Finished before ``cutoff``, with a payload left (a batch already done is not chosen
    again, so the loop ends)."""
    kept = exists().where(
        Record.batch_id == Batch.id,
        Record.payload_enc.is_not(None) | Record.legacy_payload.is_not(None),
    )
    return [*_prunable(cutoff), kept]
