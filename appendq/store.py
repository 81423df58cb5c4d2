"""The PostgreSQL side of a drain: persist a claim as a batch, move batches between states, and
record every transition as an event. PostgreSQL is the source of truth once a batch is committed.

Batch transitions (each one an ``events`` row with actor and reason):

    ready ──► sending ──► appended
      ▲  ▲       ├──────► retry_wait ──► ready (when due)      ├──► failed (attempts exhausted)
      │  │       ├──────► in_doubt ──► appended | ready | held (reconciliation)
      │  │       ├──────► rejected
      │  └───────┴──────► held ──► ready (campaign found, operator retry)
      └─────────────────── operator retry (failed, held, in_doubt, rejected)
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appendq.db.models import (
    FINISHED_STATUSES,
    Batch,
    BatchStatus,
    Event,
    Record,
    RecordStatus,
)
from appendq.queue import Claim
from appendq.records import QueuedRecord, Target

log = logging.getLogger(__name__)

_COPY_RECORDS = (
    "COPY records (id, batch_id, position, target, phone1, account, payload, enqueued_at, "
    "status, reason) FROM STDIN"
)


@dataclass(frozen=True)
class BatchView:
    """What the drain needs of a batch, detached from the session."""

    id: int
    target: str
    status: BatchStatus
    attempts: int
    size: int
    campaign_id: int | None
    created_at: datetime
    #: The fence: the batch's version when this view was read (see ``transition``).
    version: int = 0
    #: The LiveVox records to send, when the caller already holds them (a batch just claimed);
    #: None means "read them from PostgreSQL".
    payloads: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)


def _view(batch: Batch) -> BatchView:
    return BatchView(
        batch.id,
        batch.target,
        batch.status,
        batch.attempts,
        batch.size,
        batch.campaign_id,
        batch.created_at,
        batch.version,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


class ClaimConflict(Exception):
    """Another drainer inserted some of these records concurrently: leave the claim in flight and
    let the next tick's recovery persist what is left."""


def persist_claim(session: Session, claim: Claim, *, actor: str) -> BatchView | None:
    """Write a claimed set of records as one ``ready`` batch, in one transaction.

    Records already in PostgreSQL (a crash came between commit and ack) are left out of a
    recovered claim; in a fresh claim the records' primary key catches them (a producer's retried
    push queued a chunk twice): the claim then conflicts, stays in flight and is recovered next
    tick. Either way no record is ever in two batches. Returns None when nothing new was left (the
    claim can be acked); raises ``ClaimConflict`` when a concurrent drainer won the race or a
    record is already persisted (the claim must not be acked).
    """
    first: dict[str, QueuedRecord] = {}
    for rec in claim.records:
        first.setdefault(rec.id, rec)  # a retried push may have queued a record twice
    unique = list(first.values())
    fresh = unique
    if claim.recovered:
        # Handed out before: some may be in PostgreSQL already (crash between commit and ack).
        # One array parameter, not 10,000 bind parameters (whose parsing alone costs 0.25 s).
        known = set(
            session.scalars(
                text("SELECT id FROM records WHERE id = ANY(:ids)"),
                {"ids": [uuid.UUID(r.id) for r in unique]},
            )
        )
        fresh = [r for r in unique if uuid.UUID(r.id) not in known]
        session.rollback()
    if not fresh:
        return None
    target = Target.parse(claim.target)
    batch = Batch(
        target=claim.target,
        size=len(fresh),
        status=BatchStatus.READY,
        service_id=target.id if target.kind == "service" else None,
        campaign_id=target.id if target.kind == "campaign" else None,
    )
    reason = "claimed from the queue" + (" (recovered after a crash)" if claim.recovered else "")
    try:
        _insert_batch(session, batch, claim, fresh, actor, reason)
    except (IntegrityError, psycopg.errors.IntegrityError) as exc:
        session.rollback()
        raise ClaimConflict(str(getattr(exc, "orig", exc))) from None
    _log_transition(batch, None, actor, reason)
    return replace(_view(batch), payloads=[r.payload for r in fresh if not r.duplicate_of])


def _insert_batch(
    session: Session, batch: Batch, claim: Claim, fresh: list[QueuedRecord], actor: str, reason: str
) -> None:
    """Batch row, records (COPY), first event, commit. A record already persisted raises an
    IntegrityError: from SQLAlchemy at commit, or from psycopg inside the COPY."""
    session.add(batch)
    session.flush()
    _copy_records(session, batch.id, claim.target, fresh)
    session.add(
        Event(
            batch_id=batch.id,
            from_status=None,
            to_status=BatchStatus.READY,
            actor=actor,
            reason=reason,
            detail={
                "records": len(fresh),
                "recovered": claim.recovered,
                "skipped_known": len(claim.records) - len(fresh),
            },
        )
    )
    session.commit()


def _copy_records(
    session: Session, batch_id: int, target: str, records: Sequence[QueuedRecord]
) -> None:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(_COPY_RECORDS) as copy:
        for position, rec in enumerate(records):
            payload = rec.payload
            copy.write_row(
                (
                    rec.id,
                    batch_id,
                    position,
                    target,
                    payload["phone1"],
                    payload.get("account"),
                    json.dumps(payload, separators=(",", ":")),
                    datetime.fromtimestamp(rec.enqueued_at, UTC),
                    RecordStatus.DUPLICATE.value if rec.duplicate_of else None,
                    f"duplicate of {rec.duplicate_of}" if rec.duplicate_of else None,
                )
            )


def transition(
    session: Session,
    batch_id: int,
    to: BatchStatus,
    *,
    actor: str,
    reason: str | None = None,
    expect: Sequence[BatchStatus] | None = None,
    version: int | None = None,
    detail: dict[str, Any] | None = None,
    **columns: Any,
) -> BatchView | None:
    """Move a batch to ``to`` and record the event, in the caller's transaction.

    With ``expect``, the move only happens from one of those states (row locked), else None.
    With ``version`` (the fence), it only happens while the batch is still at the version the
    caller read it at: every transition adds 1, so a batch that left a state and came back (a
    second drainer re-sent it meanwhile) refuses a stale verdict or a late outcome. Returns None
    when refused; the caller's knowledge is stale and it must not act on it.
    """
    batch = _movable(session, batch_id, expect, version, actor)
    if batch is None:
        return None
    previous = batch.status
    batch.status = to
    batch.version = batch.version + 1
    batch.updated_at = func.now()  # PostgreSQL's clock: workers' clocks may be off
    for name, value in columns.items():
        if name not in Batch.__table__.columns:  # a misspelt column must never pass silently
            raise TypeError(f"batches has no column {name!r}")
        setattr(batch, name, value)
    if to in FINISHED_STATUSES:
        batch.finished_at = func.now()
    event = Event(batch_id=batch_id, from_status=previous, to_status=to, actor=actor)
    event.reason, event.detail = reason, detail
    session.add(event)
    session.flush()
    _log_transition(batch, previous, actor, reason)
    return _view(batch)


def _movable(
    session: Session,
    batch_id: int,
    expect: Sequence[BatchStatus] | None,
    version: int | None,
    actor: str,
) -> Batch | None:
    """The batch, row locked, when it is in an expected status at the expected version."""
    batch = session.get(Batch, batch_id, with_for_update=True)
    if batch is None or (expect is not None and batch.status not in expect):
        return None
    if version is not None and batch.version != version:
        log.warning(
            "batch %s: fenced off a stale writer (read at version %s, now %s, %s)",
            batch_id,
            version,
            batch.version,
            batch.status,
            extra={"batch": batch_id, "actor": actor},
        )
        return None
    return batch


_QUIET = (BatchStatus.READY, BatchStatus.SENDING, BatchStatus.APPENDED)


def _log_transition(
    batch: Batch, previous: BatchStatus | None, actor: str, reason: str | None
) -> None:
    """One structured log event per batch transition (phone numbers never appear here)."""
    level = logging.INFO if batch.status in _QUIET else logging.WARNING
    log.log(
        level,
        "batch %s %s -> %s%s",
        batch.id,
        previous,
        batch.status,
        f": {reason}" if reason else "",
        extra={
            "event": "batch_transition",
            "batch": batch.id,
            "target": batch.target,
            "campaign": batch.campaign_id,
            "records": batch.size,
            "from_status": str(previous) if previous else None,
            "status": str(batch.status),
            "http_status": batch.http_status,
            "attempts": batch.attempts,
            "actor": actor,
        },
    )


#: error_kind of a batch held for an operator's decision (partly landed): it no longer blocks its
#: target, and only ``appendq retry`` sends it again.
OPERATOR_HOLD = "operator"

_OPEN = (
    BatchStatus.READY,
    BatchStatus.RETRY_WAIT,
    BatchStatus.HELD,
    BatchStatus.SENDING,
    BatchStatus.IN_DOUBT,
)


def _open_clause() -> Any:
    set_aside = (Batch.status == BatchStatus.HELD) & (Batch.error_kind == OPERATOR_HOLD)
    return Batch.status.in_(_OPEN) & ~set_aside


def next_open_batch(session: Session, target: str) -> BatchView | None:
    """The oldest batch of the target that still has to go out (FIFO per target)."""
    batch = session.scalars(
        select(Batch)
        .where(Batch.target == target, _open_clause())
        .order_by(func.coalesce(Batch.origin_id, Batch.id), Batch.first_position)
        .limit(1)
    ).first()
    return _view(batch) if batch else None


def open_targets(session: Session) -> dict[str, datetime]:
    """Targets with unfinished batches, and the creation time of the oldest."""
    rows = session.execute(
        select(Batch.target, func.min(Batch.created_at))
        .where(_open_clause())
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


def set_target_state(
    session: Session, target: str, *, campaign_id: int | None, hold_reason: str | None
) -> None:
    session.execute(
        text(
            "INSERT INTO target_states (target, campaign_id, hold_reason, updated_at) "
            "VALUES (:t, :c, :r, now()) ON CONFLICT (target) DO UPDATE SET "
            "campaign_id = EXCLUDED.campaign_id, hold_reason = EXCLUDED.hold_reason, "
            "updated_at = now()"
        ),
        {"t": target, "c": campaign_id, "r": hold_reason},
    )


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


@dataclass(frozen=True)
class RecordRef:
    id: uuid.UUID
    position: int
    phone1: str
    account: str | None


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
    return [_view(b) for b in rows]


# -- reconciliation and isolation queries (appended; see appendq.reconcile, appendq.poison) ----


def batch_view(session: Session, batch_id: int) -> BatchView | None:
    """The batch as it is now, in the caller's transaction (its version for the fence)."""
    batch = session.get(Batch, batch_id)
    return _view(batch) if batch is not None else None


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
