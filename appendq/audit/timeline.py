"""What happened to a lead, and what the system is doing now: read-only queries for ``status``
and ``audit``.

``find_records`` answers by phone, account (the lead's), record id, batch, campaign, service,
effective status, enqueue time and LiveVox account (``livevox_account``: the one whose queue the
record came through; a caller limited to some accounts gets them forced on it); every filter is
backed by an index (the query is planned in ``appendq.audit.query``; see also
``appendq.db.models`` and ``bench/audit_scale.py``; a LiveVox account narrows what an index
finds). A record's effective status is its own (once it parted from its batch: a duplicate, a
record rejected alone) or else its batch's, mapped by ``RECORD_STATUS_OF_BATCH``. Each record
comes with its timeline: queued, batched, sent, the outcome, operator retries with who and why,
and the events about that record alone.

An operator's reason (or any event's detail) is stored once per event; ``document`` keeps it
once per event in an answer too: the records' timelines refer to batch events by id, and
``events`` holds their reason and detail, so a 1,000-record batch's audit does not repeat a
retry's reason 1,000 times.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from appendq.accounts import check_name
from appendq.audit.cursor import ORDERS, Cursor
from appendq.audit.query import (
    AuditFilter,
    checked_id,
    checked_limit,
    checked_moment,
    checked_phone,
    parse_statuses,
    record_uuid,
    records_query,
)
from appendq.db.models import RECORD_STATUS_OF_BATCH, Batch, BatchStatus, Event, TargetState
from appendq.errors import InvalidValue
from appendq.keys import DEFAULT_ACCOUNT
from appendq.leads import check_text
from appendq.redact import mask_phone

__all__ = [
    "AuditPage",
    "RecordAudit",
    "TimelineEntry",
    "age_s",
    "document",
    "find_page",
    "find_records",
    "history",
    "livevox_accounts",
    "target_states",
    "timeline",
]


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
    event_id: int | None = None  # the events row (None: the "queued" entry)

    def to_dict(self, events: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """With ``events``, a batch event's reason and detail go there (once per event id)
        instead of into this entry."""
        data = {**asdict(self), "at": self.at.isoformat()}
        if events is not None and self.scope == "batch" and self.event_id is not None:
            shared = {"reason": data.pop("reason"), "detail": data.pop("detail")}
            events.setdefault(str(self.event_id), shared)
        return data


@dataclass(frozen=True)
class RecordAudit:
    record_id: str
    target: str
    phone1: str  # masked unless asked for in full
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
    submitted_by: str | None = None  # the API token's name that queued it, if one did
    #: The LiveVox account the record belongs to (``account`` is the lead's account number).
    livevox_account: str = DEFAULT_ACCOUNT

    def to_dict(self, events: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Every field, the timeline in full; with ``events``, batch events' reasons and details
        are collected there instead (see ``document``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "timeline"}
        data["enqueued_at"] = self.enqueued_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        data["timeline"] = [t.to_dict(events) for t in self.timeline]
        return data


def document(found: Sequence[RecordAudit]) -> dict[str, Any]:
    """An audit answer for many records: ``records`` (each with its timeline; a batch event
    there carries ``event_id`` but not its reason or detail) and ``events`` (reason and detail of
    each batch event, once, by id)."""
    events: dict[str, dict[str, Any]] = {}
    records = [r.to_dict(events) for r in found]
    return {"records": records, "events": events}


def find_records(session: Session, **asked: Any) -> list[RecordAudit]:
    """``find_page``'s records alone (the first page, or the one after ``after``)."""
    return find_page(session, **asked).records


@dataclass(frozen=True)
class AuditPage:
    records: list[RecordAudit]
    #: the cursor of the next page (``after``); None when this page was the last
    next: str | None


def find_page(
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
    full_phones: bool = False,
    livevox_account: str | Sequence[str] | None = None,
    after: str | None = None,
) -> AuditPage:
    """The records matching every filter, oldest first, at most ``limit`` after the cursor
    ``after`` (the page before's ``next``), with timelines, phones masked unless
    ``full_phones``. ``status``: effective status (one or several); ``since``/``until``: the
    enqueue time (``until`` excluded); ``account``: the lead's; ``livevox_account``: one LiveVox
    account or several, configured or not. ``InvalidValue`` (naming the filter) on a bad filter
    or none, before any query (an id outside BIGINT, a bad UUID or cursor, ...)."""
    where = AuditFilter(
        phone=checked_phone(phone, region),
        account=check_text(account, "account", max_len=ACCOUNT_MAX),
        batch_id=checked_id(batch_id, "batch"),
        record_id=record_uuid(record_id) if record_id is not None else None,
        campaign_id=checked_id(campaign_id, "campaign"),
        service_id=checked_id(service_id, "service"),
        statuses=parse_statuses(status),
        since=checked_moment(since, "since"),
        until=checked_moment(until, "until"),
        livevox_accounts=livevox_accounts(livevox_account, "livevox_account"),
        after=None if after is None else Cursor.decode(after),
    )
    if replace(where, after=None) == AuditFilter():
        raise InvalidValue("filter", "give at least one filter (phone, account, record, ...)")
    return _read_page(session, where, checked_limit(limit), full_phones)


def _read_page(session: Session, where: AuditFilter, limit: int, full_phones: bool) -> AuditPage:
    """One page; a full one has the cursor of its last record (its sort keys, ``k0``..)."""
    query, order = records_query(session, where, limit)
    rows = session.execute(query).all()
    last = rows[-1]._mapping if len(rows) == limit else None
    keys = range(len(ORDERS[order]))
    cursor = Cursor(order, tuple(last[f"k{i}"] for i in keys)).encode() if last else None
    return AuditPage(_audits(session, rows, full_phones), cursor)


#: The account column's length.
ACCOUNT_MAX = 50


def livevox_accounts(names: str | Sequence[str] | None, field: str = "account") -> tuple[str, ...]:
    """One LiveVox account name or several, checked (``InvalidValue`` naming ``field``),
    deduplicated in order; () for None."""
    given = [names] if isinstance(names, str) else list(names or ())
    return tuple(dict.fromkeys(check_name(n, field) for n in given))


def _audits(session: Session, rows: Sequence[Row[Any]], full_phones: bool) -> list[RecordAudit]:
    """Each record row with its batch and its timeline (events read for all rows at once)."""
    batches = {
        b.id: b
        for b in session.scalars(select(Batch).where(Batch.id.in_({r.batch_id for r in rows})))
    }
    by_batch, by_record = _events(session, set(batches), [r.id for r in rows])
    histories = {b: _History(history(b, by_batch)) for b in batches}
    return [
        _audit(r, batches[r.batch_id], histories[r.batch_id], by_record[r.id], full_phones)
        for r in rows
    ]


class _History:
    """A batch's events and their timeline entries, built once for all its records."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.entries = [_entry(e) for e in events]


def _events(
    session: Session, batch_ids: set[int], record_ids: Sequence[uuid.UUID]
) -> tuple[dict[int, list[Event]], dict[uuid.UUID, list[Event]]]:
    """The batch-level events of these batches and of the batches they were split from, and the
    events about these records alone (found through their batches: ix_events_batch_at)."""
    by_batch: dict[int, list[Event]] = defaultdict(list)
    by_record: dict[uuid.UUID, list[Event]] = defaultdict(list)
    wanted = set(record_ids)
    pending = set(batch_ids)
    for _ in range(_MAX_SPLITS):
        if not pending:
            break
        for event in session.scalars(
            select(Event).where(Event.batch_id.in_(pending)).order_by(Event.at, Event.id)
        ):
            if event.record_id is None:
                by_batch[event.batch_id].append(event)
            elif event.record_id in wanted:
                by_record[event.record_id].append(event)
        parents = {_parent(by_batch[b]) for b in pending}
        pending = {p for p in parents if p is not None and p not in by_batch}
    for events in by_record.values():
        events.sort(key=lambda e: (e.at, e.id))
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
    rec: Row[Any], batch: Batch, past: _History, record_events: list[Event], full_phones: bool
) -> RecordAudit:
    status = rec.status or RECORD_STATUS_OF_BATCH[batch.status]
    return RecordAudit(
        str(rec.id),
        rec.target,
        rec.phone1 if full_phones else mask_phone(rec.phone1),
        rec.account,
        str(status),
        rec.reason or batch.error_message,
        batch.id,
        rec.position,
        batch.campaign_id,
        rec.enqueued_at,
        timeline(rec, past.events, record_events, past.entries),
        batch_status=str(batch.status),
        attempts=batch.attempts,
        http_status=batch.http_status,
        error_kind=batch.error_kind,
        updated_at=rec.updated_at,
        submitted_by=rec.submitted_by,
        livevox_account=rec.livevox_account,
    )


def timeline(
    rec: Row[Any],
    batch_events: list[Event],
    record_events: list[Event],
    batch_entries: list[TimelineEntry] | None = None,
) -> list[TimelineEntry]:
    """Queued, then the batch's events and the record's own, in time order. Once a record parted
    from its batch, the batch's later events are not about it: they are left out. A record that
    parted when it was batched (a duplicate) has no event of its own: its status is shown there.
    ``batch_entries`` are the batch events' entries when already built (shared, not copied)."""
    entries = [
        TimelineEntry(
            rec.enqueued_at, "queued", "producer", "received and validated", "queued", "record"
        )
    ]
    if rec.status is None and not record_events:  # follows its batch: the common case
        return entries + (batch_entries or [_entry(e) for e in batch_events])
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
        event.id,
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


def target_states(session: Session, account: str) -> dict[str, TargetState]:
    """Why each of ``account``'s targets waits, by target. One account at a time: two accounts
    may have a target of the same name (``service:1001`` at two LiveVox clients)."""
    query = select(TargetState).where(TargetState.livevox_account == account)
    return {t.target: t for t in session.scalars(query)}


def age_s(enqueued_at: float) -> float:
    return max(time.time() - enqueued_at, 0.0)
