"""What happened to a lead, and what the system is doing now: read-only queries for ``status``
and ``audit``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appendq.db.models import RECORD_STATUS_OF_BATCH, Batch, Event, Record, TargetState
from appendq.operator import BatchSummary, RetryFilter, retry_batches
from appendq.records import mask_phone, normalise_phone


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    status: str
    actor: str
    reason: str | None


@dataclass(frozen=True)
class RecordAudit:
    record_id: str
    target: str
    phone1: str  # masked
    account: str | None
    status: str
    reason: str | None
    batch_id: int
    position: int
    campaign_id: int | None
    enqueued_at: datetime
    timeline: list[TimelineEntry]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["enqueued_at"] = self.enqueued_at.isoformat()
        data["timeline"] = [{**asdict(t), "at": t.at.isoformat()} for t in self.timeline]
        return data


def find_records(
    session: Session,
    *,
    phone: str | None = None,
    account: str | None = None,
    batch_id: int | None = None,
    record_id: str | None = None,
    region: str = "US",
    limit: int = 1000,
) -> list[RecordAudit]:
    query = select(Record, Batch).join(Batch, Batch.id == Record.batch_id)
    if phone is not None:
        query = query.where(Record.phone1 == normalise_phone(phone, region))
    if account is not None:
        query = query.where(Record.account == account)
    if batch_id is not None:
        query = query.where(Record.batch_id == batch_id)
    if record_id is not None:
        query = query.where(Record.id == uuid.UUID(record_id))
    rows = session.execute(query.order_by(Record.enqueued_at, Record.id).limit(limit)).all()
    events = _events(session, {b.id for _, b in rows}, [r.id for r, _ in rows])
    return [_audit(rec, batch, events) for rec, batch in rows]


def _events(session: Session, batch_ids: set[int], record_ids: Sequence[uuid.UUID]) -> list[Event]:
    if not batch_ids:
        return []
    return list(
        session.scalars(
            select(Event).where(Event.batch_id.in_(batch_ids)).order_by(Event.at, Event.id)
        )
    )


def _audit(rec: Record, batch: Batch, events: list[Event]) -> RecordAudit:
    status = rec.status or RECORD_STATUS_OF_BATCH[batch.status]
    timeline = [TimelineEntry(rec.enqueued_at, "queued", "producer", None)]
    timeline += [
        TimelineEntry(e.at, e.to_status, e.actor, e.reason)
        for e in events
        if e.batch_id == batch.id and (e.record_id is None or e.record_id == rec.id)
    ]
    return RecordAudit(
        str(rec.id),
        rec.target,
        mask_phone(rec.phone1),
        rec.account,
        str(status),
        rec.reason or batch.error_message,
        batch.id,
        rec.position,
        batch.campaign_id,
        rec.enqueued_at,
        timeline,
    )


def retry_batch(
    session: Session, batch_id: int, *, reason: str, actor: str | None = None
) -> BatchSummary | None:
    """An operator sends one batch again (see ``appendq.operator``)."""
    moved = retry_batches(session, RetryFilter(batch_id=batch_id), reason=reason, actor=actor)
    return moved[0] if moved else None


def target_states(session: Session) -> dict[str, TargetState]:
    return {t.target: t for t in session.scalars(select(TargetState))}


def age_s(enqueued_at: float) -> float:
    return max(time.time() - enqueued_at, 0.0)
