"""Retention: drop finished batches older than N days, with their records and events.

Only finished batches go (appended, rejected, failed) whose last transition is older than the
cutoff; open ones (ready, sending, retry_wait, held, in_doubt) are never touched, however old. The
work runs in chunks of ``chunk`` batches, one short transaction each, with the chunk's batch rows
locked (SKIP LOCKED: a batch an operator is retrying right now is left for the next run), so the
drain and the auditors are never blocked for long.

When the daily volume makes these deletes heavy (see the growth note in ``bench/audit_scale.py``),
the next step is daily range partitions on records/events and dropping whole partitions instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from appendq.batches.store import BatchStore
from appendq.clock import utcnow
from appendq.db.models import FINISHED_STATUSES, Batch

log = logging.getLogger(__name__)

#: Batches per transaction: at most 50 x 10,000 records deleted while their rows are locked.
CHUNK = 50


@dataclass(frozen=True)
class PruneReport:
    cutoff: datetime
    batches: int = 0
    records: int = 0
    events: int = 0


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
    """Delete finished batches last changed before ``cutoff``, with their records and events,
    ``chunk`` batches per transaction. Returns what was deleted."""
    total = PruneReport(cutoff)
    while True:
        with sessions() as session, session.begin():
            counts = BatchStore(session, "prune").prune(_prunable(cutoff), chunk)
        done = PruneReport(cutoff, *counts)
        if done.batches == 0:
            break
        total = PruneReport(
            cutoff,
            total.batches + done.batches,
            total.records + done.records,
            total.events + done.events,
        )
        log.info(
            "pruned %d batches (%d records, %d events) last changed before %s",
            done.batches,
            done.records,
            done.events,
            cutoff.isoformat(),
            extra={"batches": done.batches, "records": done.records, "events": done.events},
        )
    return total


def _prunable(cutoff: datetime) -> list[ColumnElement[bool]]:
    return [Batch.status.in_(FINISHED_STATUSES), Batch.updated_at < cutoff]
