"""What happened to a lead, and what the system is doing now: read-only queries for ``status``
and ``audit``.

``find_records`` answers by phone, account, record id, batch, campaign, service, effective status
and enqueue time; every filter is backed by an index (see ``appendq.db.models`` and
``bench/audit_scale.py``). A record's effective status is its own (once it parted from its batch:
a duplicate, a record rejected alone) or else its batch's, mapped by ``RECORD_STATUS_OF_BATCH``.
Each record comes with its timeline: queued, batched, sent, the outcome, operator retries with who
and why, and the events about that record alone.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, select, union_all
from sqlalchemy.orm import Session

from appendq.db.models import (
    RECORD_STATUS_OF_BATCH,
    Batch,
    BatchStatus,
    Event,
    Record,
    RecordStatus,
    TargetState,
)
from appendq.operator import BatchSummary, RetryFilter, retry_batches
from appendq.records import mask_phone, normalise_phone

#: The record columns an audit needs (the LiveVox payload stays in the table).
_COLUMNS = (
    Record.id,
    Record.batch_id,
    Record.position,
    Record.target,
    Record.phone1,
    Record.account,
    Record.status,
    Record.reason,
    Record.enqueued_at,
    Record.updated_at,
)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    status: str  # the state reached: "queued", then the event's to_status
    actor: str
    reason: str | None
    step: str = ""  # in words: queued, batched, sent, appended, retried, requeued, duplicate...
    scope: str = "batch"  # "record" when the entry is about this record alone
    from_status: str | None = None
    detail: dict[str, Any] | None = None
    batch_id: int | None = None  # the batch the event is about (None: before batching)


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
    batch_status: str = ""
    attempts: int = 0
    http_status: int | None = None
    error_kind: str | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["enqueued_at"] = self.enqueued_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        data["timeline"] = [{**asdict(t), "at": t.at.isoformat()} for t in self.timeline]
        return data


@dataclass(frozen=True)
class AuditFilter:
    """The auditor's question; every field narrows it (AND)."""

    phone: str | None = None  # normalised phone1
    account: str | None = None
    batch_id: int | None = None
    record_id: uuid.UUID | None = None
    campaign_id: int | None = None
    service_id: int | None = None
    statuses: tuple[RecordStatus, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        checks = {
            Record.phone1: self.phone,
            Record.account: self.account,
            Record.batch_id: self.batch_id,
            Record.id: self.record_id,
            Record.target: None if self.service_id is None else f"service:{self.service_id}",
        }
        where = [column == value for column, value in checks.items() if value is not None]
        if self.campaign_id is not None:
            where.append(Batch.campaign_id == self.campaign_id)
        if self.since is not None:
            where.append(Record.enqueued_at >= self.since)
        if self.until is not None:
            where.append(Record.enqueued_at < self.until)
        return where


def find_records(
    session: Session,
    *,
    phone: str | None = None,
    account: str | None = None,
    batch_id: int | None = None,
    record_id: str | None = None,
    campaign_id: int | None = None,
    service_id: int | None = None,
    status: str | Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    region: str = "US",
    limit: int = 1000,
) -> list[RecordAudit]:
    """The records matching every given filter, oldest first, at most ``limit``, each with its
    timeline. ``status`` is the effective status (one or several); ``since``/``until`` bound the
    enqueue time (``until`` excluded). Raises ValueError on a bad filter or on none at all."""
    where = AuditFilter(
        phone=normalise_phone(phone, region) if phone is not None else None,
        account=account,
        batch_id=batch_id,
        record_id=_record_uuid(record_id) if record_id is not None else None,
        campaign_id=campaign_id,
        service_id=service_id,
        statuses=_statuses(status),
        since=since,
        until=until,
    )
    if where == AuditFilter():
        raise ValueError("give at least one filter (phone, account, record, batch, campaign, ...)")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    rows = session.execute(_query(where, limit)).all()
    batches = {
        b.id: b
        for b in session.scalars(select(Batch).where(Batch.id.in_({r.batch_id for r in rows})))
    }
    by_batch, by_record = _events(session, set(batches), [r.id for r in rows])
    return [_audit(r, batches[r.batch_id], by_batch, by_record[r.id]) for r in rows]


def _record_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a record id (a UUID from a receipt)") from None


def _statuses(status: str | Sequence[str] | None) -> tuple[RecordStatus, ...]:
    names = [status] if isinstance(status, str) else list(status or ())
    known = {s.value for s in RecordStatus}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown status {', '.join(unknown)}: one of {', '.join(sorted(known))}")
    return tuple(RecordStatus(n) for n in dict.fromkeys(names))


def _query(where: AuditFilter, limit: int) -> Select[*tuple[Any, ...]]:
    """One SELECT, or, with a status filter, the union of two that each have an index to walk:
    records that parted from their batch with that status (few), and records following a batch
    whose status maps to it (pushed down to the small batches table)."""
    order = (Record.enqueued_at, Record.id)
    base = select(*_COLUMNS).where(*where.conditions())
    if where.campaign_id is not None or where.statuses:
        base = base.join(Batch, Batch.id == Record.batch_id)
    if not where.statuses:
        return base.order_by(*order).limit(limit)
    followed = [b for b, r in RECORD_STATUS_OF_BATCH.items() if r in where.statuses]
    branches = [
        base.where(Record.status.in_(where.statuses)).order_by(*order).limit(limit).subquery()
    ]
    if followed:
        follows = and_(Record.status.is_(None), Batch.status.in_(followed))
        branches.append(base.where(follows).order_by(*order).limit(limit).subquery())
    both = union_all(*(select(b) for b in branches)).subquery()
    return select(both).order_by(both.c.enqueued_at, both.c.id).limit(limit)


def _events(
    session: Session, batch_ids: set[int], record_ids: Sequence[uuid.UUID]
) -> tuple[dict[int, list[Event]], dict[uuid.UUID, list[Event]]]:
    """The batch-level events of these batches and of the batches they were split from, and the
    events about these records alone."""
    by_batch: dict[int, list[Event]] = defaultdict(list)
    by_record: dict[uuid.UUID, list[Event]] = defaultdict(list)
    pending = set(batch_ids)
    for _ in range(_MAX_SPLITS):
        if not pending:
            break
        for event in session.scalars(
            select(Event)
            .where(Event.batch_id.in_(pending), Event.record_id.is_(None))
            .order_by(Event.at, Event.id)
        ):
            by_batch[event.batch_id].append(event)
        parents = {_parent(by_batch[b]) for b in pending}
        pending = {p for p in parents if p is not None and p not in by_batch}
    if record_ids:
        for event in session.scalars(
            select(Event)
            .where(Event.record_id.is_not(None), Event.record_id.in_(record_ids))
            .order_by(Event.at, Event.id)
        ):
            assert event.record_id is not None
            by_record[event.record_id].append(event)
    return by_batch, by_record


#: Bisection of a 10,000-record batch splits at most ~14 times; a bound against a cycle anyway.
_MAX_SPLITS = 32


def _parent(events: list[Event]) -> int | None:
    """The batch this one was split from (its creation event says so), if any."""
    created = next((e for e in events if e.from_status is None), None)
    parent = (created.detail or {}).get("from_batch") if created else None
    return int(parent) if parent is not None else None


def history(batch_id: int, by_batch: dict[int, list[Event]], depth: int = 0) -> list[Event]:
    """A batch's events, preceded by those of the batches it was split from, up to the split."""
    events = by_batch.get(batch_id, [])
    parent = _parent(events)
    if parent is None or depth >= _MAX_SPLITS:
        return events
    before = history(parent, by_batch, depth + 1)
    split = next(
        (i for i, e in enumerate(before) if (e.detail or {}).get("to_batch") == batch_id), None
    )
    return (before if split is None else before[: split + 1]) + events


def _audit(
    rec: Row[Any], batch: Batch, by_batch: dict[int, list[Event]], record_events: list[Event]
) -> RecordAudit:
    status = rec.status or RECORD_STATUS_OF_BATCH[batch.status]
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
        timeline(rec, history(batch.id, by_batch), record_events),
        batch_status=str(batch.status),
        attempts=batch.attempts,
        http_status=batch.http_status,
        error_kind=batch.error_kind,
        updated_at=rec.updated_at,
    )


def timeline(
    rec: Row[Any], batch_events: list[Event], record_events: list[Event]
) -> list[TimelineEntry]:
    """Queued, then the batch's events and the record's own, in time order. Once a record parted
    from its batch, the batch's later events are not about it: they are left out. A record that
    parted when it was batched (a duplicate) has no event of its own: its status is shown there."""
    entries = [
        TimelineEntry(
            rec.enqueued_at, "queued", "producer", "received and validated", "queued", "record"
        )
    ]
    events = list(heapq.merge(batch_events, record_events, key=lambda e: (e.at, e.id)))
    if rec.status is not None and record_events:
        last = (record_events[-1].at, record_events[-1].id)
        events = [e for e in events if e.record_id is not None or (e.at, e.id) <= last]
    for event in events:
        entries.append(_entry(event))
        if rec.status is not None and not record_events and entries[-1].step == "batched":
            entries.append(
                TimelineEntry(
                    event.at,
                    str(rec.status),
                    event.actor,
                    rec.reason,
                    str(rec.status),
                    "record",
                    batch_id=event.batch_id,
                )
            )
            break
    return entries


def _entry(event: Event) -> TimelineEntry:
    return TimelineEntry(
        event.at,
        event.to_status,
        event.actor,
        event.reason,
        _step(event),
        "batch" if event.record_id is None else "record",
        event.from_status,
        event.detail,
        event.batch_id,
    )


def _step(event: Event) -> str:
    """The event in the auditor's words."""
    detail = event.detail or {}
    if event.record_id is not None:
        return event.to_status
    if detail.get("operator_retry"):
        return "retried"
    if "to_batch" in detail:
        return "split"
    if event.from_status is None:
        return "rebatched" if "from_batch" in detail else "batched"
    if event.to_status == BatchStatus.READY:
        return "requeued"
    if event.to_status == BatchStatus.SENDING:
        return "sent"
    return event.to_status


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
