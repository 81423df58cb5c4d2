"""What the drain and the reconciliation read of batches and records (no writes: see
``appendq.batches.store``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appendq.batches.views import BatchView, RecordRef, view_of
from appendq.db.models import OPEN_STATUSES, Batch, BatchStatus, Record, RecordStatus


def next_open_batch(session: Session, target: str) -> BatchView | None:
    """The oldest batch of the target that still has to go out (FIFO per target)."""
    batch = session.scalars(
        select(Batch)
        .where(Batch.target == target, Batch.status.in_(OPEN_STATUSES))
        .order_by(func.coalesce(Batch.origin_id, Batch.id), Batch.first_position)
        .limit(1)
    ).first()
    return view_of(batch) if batch else None


def open_targets(session: Session) -> dict[str, datetime]:
    """Targets with unfinished batches, and the creation time of the oldest."""
    rows = session.execute(
        select(Batch.target, func.min(Batch.created_at))
        .where(Batch.status.in_(OPEN_STATUSES))
        .group_by(Batch.target)
    ).all()
    return {target: created for target, created in rows}


def batch_payloads(session: Session, batch_id: int) -> list[dict[str, Any]]:
    """The LiveVox records of a batch, in claim order, without those that parted from it."""
    return list(
        session.scalars(
            select(Record.payload)
            .where(Record.batch_id == batch_id, Record.status.is_(None))
            .order_by(Record.position)
        )
    )


def stale_sending(session: Session, older_than: timedelta) -> list[tuple[int, int]]:
    """(id, version) of batches left ``sending`` longer than a call can last: their process
    died mid-call."""
    cutoff = func.now() - older_than
    rows = session.execute(
        select(Batch.id, Batch.version).where(
            Batch.status == BatchStatus.SENDING, Batch.sent_at < cutoff
        )
    )
    return [(int(batch_id), int(version)) for batch_id, version in rows]


def is_due(session: Session, batch: BatchView) -> bool:
    """A retry_wait batch is sendable once its next_attempt_at has passed (PostgreSQL's clock)."""
    if batch.status != BatchStatus.RETRY_WAIT:
        return True
    due = session.scalar(
        select(func.coalesce(Batch.next_attempt_at <= func.now(), True)).where(Batch.id == batch.id)
    )
    return bool(due)


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Batch.status, func.count()).group_by(Batch.status)).all()
    return {str(status): int(n) for status, n in rows}


def batch_records(session: Session, batch_id: int) -> list[RecordRef]:
    """The records still riding with the batch, in order (those set apart are left out)."""
    rows = session.execute(
        select(Record.id, Record.position, Record.phone1, Record.account)
        .where(Record.batch_id == batch_id, Record.status.is_(None))
        .order_by(Record.position)
    ).all()
    return [RecordRef(*row) for row in rows]


def in_doubt_due(session: Session, older_than: timedelta) -> list[BatchView]:
    """in_doubt batches whose call is over, oldest due first (PostgreSQL's clock).

    Due at ``next_attempt_at`` when the move to in_doubt (or a "look again later") set it: a
    short settle after LiveVox *answered* 500/503, the call deadline after a lost answer. Else
    (set by an older state, so earlier than ``updated_at``; or never set: a batch reaped after its
    process died mid-call) due ``older_than`` (the call deadline) after ``updated_at``.
    """
    fresh = Batch.next_attempt_at >= Batch.updated_at
    stale = Batch.next_attempt_at.is_(None) | (Batch.next_attempt_at < Batch.updated_at)
    due = (fresh & (Batch.next_attempt_at <= func.now())) | (
        stale & (Batch.updated_at < func.now() - older_than)
    )
    rows = session.scalars(
        select(Batch)
        .where(Batch.status == BatchStatus.IN_DOUBT, due)
        .order_by(Batch.updated_at, Batch.id)
    )
    return [view_of(b) for b in rows]


def batch_view(session: Session, batch_id: int) -> BatchView | None:
    """The batch as it is now, in the caller's transaction (its version for the fence)."""
    batch = session.get(Batch, batch_id)
    return view_of(batch) if batch is not None else None


def rejected_records(session: Session, batch_id: int) -> list[Record]:
    """The records of a batch that ended rejected: set apart alone, or with the whole batch."""
    batch_rejected = select(Batch.id).where(
        Batch.id == batch_id, Batch.status == BatchStatus.REJECTED
    )
    return list(
        session.scalars(
            select(Record).where(
                Record.batch_id == batch_id,
                (Record.status == RecordStatus.REJECTED)
                | (Record.status.is_(None) & Record.batch_id.in_(batch_rejected)),
            )
        )
    )
