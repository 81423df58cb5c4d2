"""Query planning for ``appendq.audit.timeline.find_records``: the auditor's filter
(``AuditFilter``) and
the SQL that answers it, shaped so that an index delivers the rows in order (see ``_query`` for
the strategies: a record index, one batch, a few scoped batches, the enqueue-time index, or the
matching batches oldest first). ``bench/audit_scale.py`` measures each one at scale.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, true, tuple_, union_all
from sqlalchemy.orm import Session

from appendq.audit.cursor import Cursor
from appendq.db.models import RECORD_STATUS_OF_BATCH, Batch, BatchStatus, Record, RecordStatus
from appendq.errors import InvalidValue
from appendq.leads import normalise_phone
from appendq.target import check_id

#: The record columns an audit needs (the LiveVox payload stays in the table).
_COLUMNS = (
    Record.id,
    Record.batch_id,
    Record.position,
    Record.livevox_account,
    Record.target,
    Record.phone1,
    Record.account,
    Record.status,
    Record.reason,
    Record.enqueued_at,
    Record.updated_at,
    Record.submitted_by,
)


@dataclass(frozen=True)
class AuditFilter:
    """The auditor's question; every field narrows it (AND). ``account`` is the lead's account
    number (a LiveVox record field); ``livevox_accounts`` the LiveVox accounts the records may
    belong to (empty: every one), asked for or forced on a caller limited to some."""

    phone: str | None = None  # normalised phone1
    account: str | None = None
    livevox_accounts: tuple[str, ...] = ()
    batch_id: int | None = None
    record_id: uuid.UUID | None = None
    campaign_id: int | None = None
    service_id: int | None = None
    statuses: tuple[RecordStatus, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    #: where the previous page ended (not a filter: the same question, read further)
    after: Cursor | None = None

    @property
    def target(self) -> str | None:
        return None if self.service_id is None else f"service:{self.service_id}"

    @property
    def by_record(self) -> bool:
        """A filter that a record index answers in a few rows."""
        keys = (self.phone, self.account, self.record_id, self.batch_id)
        return any(v is not None for v in keys)

    @property
    def followed(self) -> list[BatchStatus]:
        """Batch statuses whose records (those following their batch) have a wanted status."""
        return [b for b, r in RECORD_STATUS_OF_BATCH.items() if r in self.statuses]

    def conditions(self) -> list[ColumnElement[bool]]:
        """On records (and, for a campaign, on their batch joined in)."""
        checks = {
            Record.phone1: self.phone,
            Record.account: self.account,
            Record.batch_id: self.batch_id,
            Record.id: self.record_id,
            Record.target: self.target,
        }
        where = [column == value for column, value in checks.items() if value is not None]
        if self.livevox_accounts:
            where.append(Record.livevox_account.in_(self.livevox_accounts))
        if self.campaign_id is not None:
            where.append(Batch.campaign_id == self.campaign_id)
        if self.since is not None:
            where.append(Record.enqueued_at >= self.since)
        if self.until is not None:
            where.append(Record.enqueued_at < self.until)
        return where

    def batch_conditions(self, statuses: Sequence[BatchStatus] = ()) -> list[ColumnElement[bool]]:
        """On batches alone: LiveVox accounts, campaign, service, and the batch statuses given."""
        where: list[ColumnElement[bool]] = [Batch.status.in_(statuses)] if statuses else []
        if self.livevox_accounts:
            where.append(Batch.livevox_account.in_(self.livevox_accounts))
        if self.campaign_id is not None:
            where.append(Batch.campaign_id == self.campaign_id)
        if self.target is not None:
            where.append(Batch.target == self.target)
        return where


def record_uuid(value: str) -> uuid.UUID:
    """A record id as given by a user; ``InvalidValue`` (a ValueError) when it is not a UUID."""
    try:
        return uuid.UUID(str(value).strip()[:100])
    except ValueError:
        raise InvalidValue(
            "record", f"{str(value)[:60]!r} is not a record id (a UUID from a receipt)"
        ) from None


def parse_statuses(status: str | Sequence[str] | None) -> tuple[RecordStatus, ...]:
    """One or several effective status names, deduplicated in order; ``InvalidValue`` on an
    unknown one."""
    names = [status] if isinstance(status, str) else list(status or ())
    known = {s.value for s in RecordStatus}
    unknown = [str(n)[:40] for n in names if n not in known]
    if unknown:
        raise InvalidValue(
            "status", f"unknown {', '.join(map(repr, unknown))}: one of {', '.join(sorted(known))}"
        )
    return tuple(RecordStatus(n) for n in dict.fromkeys(names))


#: The most records one audit question answers.
LIMIT_MAX = 100_000


def checked_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
        raise InvalidValue("limit", f"must be a whole number in 1..{LIMIT_MAX:,}")
    return limit


def checked_phone(phone: str | None, region: str) -> str | None:
    if phone is None:
        return None
    try:
        return normalise_phone(phone, region)
    except ValueError as exc:
        raise InvalidValue("phone", str(exc)) from None


def checked_id(value: int | None, field: str) -> int | None:
    return None if value is None else check_id(value, field)


def checked_moment(value: datetime | None, field: str) -> datetime | None:
    if value is not None and not isinstance(value, datetime):
        raise InvalidValue(field, "must be a date and time")
    return value


def records_query(
    session: Session, where: AuditFilter, limit: int
) -> tuple[Select[*tuple[Any, ...]], str]:
    """The query for the records matching ``where``, oldest first, at most ``limit``, after
    ``where.after`` (one round trip first when the matching batches may be few: see
    ``_scope``); and the order its rows come in (``appendq.audit.cursor``), whose keys are the
    rows' ``k0``.. columns. A campaign or status over many batches, without a time window, is
    read batch by batch (``batches``); everything else in enqueue time, or a batch in claim
    order."""
    possible = _orders(where)
    if where.after is not None and where.after.order not in possible:
        raise InvalidValue("after", "a cursor from another question (filters changed?)")
    scope = _scope(session, where)
    if where.after is not None:
        order = where.after.order
    else:
        order = possible[0] if scope is None or len(possible) == 1 else "time"
    if order == "batches":
        return _by_batches(where, limit), order
    return _query(_narrowed(session, where), limit, scope), order


def _narrowed(session: Session, where: AuditFilter) -> AuditFilter:
    """A campaign in a time window: the window cut to when its batches' records were enqueued
    (``Batch.enqueued_from``/``enqueued_to``, one small read of the campaign's batches), so that
    the walk in enqueue time skips the hours of other campaigns (a window across midnight, when
    the day's campaign changes). Unchanged when a batch of it has no range recorded."""
    given = [m for m in (where.since, where.until) if m is not None]
    if where.campaign_id is None or not given or any(m.tzinfo is None for m in given):
        return where
    overlap = [Batch.campaign_id == where.campaign_id, *_overlapping(where)]
    unknown = Batch.enqueued_from.is_(None) | Batch.enqueued_to.is_(None)
    first, last, blind = session.execute(
        select(
            func.min(Batch.enqueued_from), func.max(Batch.enqueued_to), func.bool_or(unknown)
        ).where(*overlap)
    ).one()
    if blind:
        return where
    if first is None:  # no batch of the campaign has a record in the window
        moment = where.since or where.until
        return replace(where, since=moment, until=moment)
    since = first if where.since is None else max(where.since, first)
    after_last = last + timedelta(microseconds=1)
    until = after_last if where.until is None else min(where.until, after_last)
    return replace(where, since=since, until=until)


def _orders(where: AuditFilter) -> tuple[str, ...]:
    """The orders the question can be read in, the one it is read in first."""
    if where.batch_id is not None:
        return ("position",)
    windowed = where.since is not None or where.until is not None
    batch_led = where.campaign_id is not None or bool(where.followed)
    if batch_led and not windowed and not where.by_record:
        return ("batches", "time")
    return ("time",)


#: When the batch-level filters (a campaign, a status records share with their batch) leave at
#: most this many records, they are read from those batches (batch index) and sorted.
SCOPE_MAX_RECORDS = 100_000
SCOPE_MAX_BATCHES = 1_000
#: The same with a time window (the batches overlapping it): a walk of the window in enqueue
#: time, stopping at the limit, costs less than reading more records than this.
SCOPE_WINDOWED = 20_000


def _scope(session: Session, where: AuditFilter) -> list[int] | None:
    """The ids of the batches the records must come from, when they are few (else None)."""
    if where.by_record or (where.statuses and not where.followed):
        return None  # a record index, or ix_records_parted, answers it directly
    if where.campaign_id is None and not where.statuses:
        return None
    query = select(Batch.id, Batch.size).where(
        *where.batch_conditions(where.followed), *_overlapping(where)
    )
    rows = session.execute(query.limit(SCOPE_MAX_BATCHES + 1)).all()
    # In a window the walk in enqueue time stops at the limit: read the batches whole only
    # when they hold fewer records than that walk may pass over.
    most = SCOPE_MAX_RECORDS if where.since is None and where.until is None else SCOPE_WINDOWED
    if len(rows) > SCOPE_MAX_BATCHES or sum(size for _, size in rows) > most:
        return None
    return [batch_id for batch_id, _ in rows]


def _overlapping(where: AuditFilter) -> list[ColumnElement[bool]]:
    """Batches whose records may have been enqueued in the window (all without one; a batch
    with no range recorded always may)."""
    overlap: list[ColumnElement[bool]] = []
    if where.until is not None:
        overlap.append(Batch.enqueued_from.is_(None) | (Batch.enqueued_from < where.until))
    if where.since is not None:
        overlap.append(Batch.enqueued_to.is_(None) | (Batch.enqueued_to >= where.since))
    return overlap


def _query(where: AuditFilter, limit: int, scope: list[int] | None) -> Select[*tuple[Any, ...]]:
    """The records query, oldest first, shaped so that an index delivers the rows in order:

    - phone, account, record id: their index; the few rows sorted by enqueue time;
    - one batch: the batch index, in claim order (position);
    - a campaign or status whose batches hold few records (``scope``): those batches' records,
      sorted by enqueue time;
    - with a time window (and/or a service): ix_records_enqueued / ix_records_target_enqueued,
      walked in enqueue time, batch filters checked on the way;
    - a campaign or status matching many batches, no window: the batches oldest first, each one's
      records in claim order (a LATERAL read per batch), stopping at the limit.

    A status filter is the union of records that parted from their batch with that status (few:
    ix_records_parted) and records following a batch whose status maps to it.
    """
    keys = [Record.position] if where.batch_id is not None else [Record.enqueued_at, Record.id]
    base = select(*_COLUMNS, *(k.label(f"k{i}") for i, k in enumerate(keys)))
    base = base.where(*where.conditions(), *_after(keys, where.after))
    if where.campaign_id is not None or where.statuses:
        base = base.join(Batch, Batch.id == Record.batch_id)

    def first(query: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
        if scope is None:
            return query.order_by(*keys).limit(limit)
        scoped = query.where(Record.batch_id.in_(scope)).cte().prefix_with("MATERIALIZED")
        return select(scoped).order_by(*_keys(scoped, len(keys))).limit(limit)

    if not where.statuses:
        return first(base)
    branches = [base.where(Record.status.in_(where.statuses)).order_by(*keys).limit(limit)]
    if where.followed:
        follows = base.where(Record.status.is_(None), Batch.status.in_(where.followed))
        branches.append(first(follows))
    return _merged(branches, len(keys), limit)


def _by_batches(where: AuditFilter, limit: int) -> Select[*tuple[Any, ...]]:
    """Matching batches oldest first, each one's records in claim order, up to ``limit``."""
    branches: list[Select[*tuple[Any, ...]]] = []
    if where.statuses:
        keys = (Batch.created_at, Record.batch_id, Record.position)
        parted = (
            select(*_COLUMNS, *(k.label(f"k{i}") for i, k in enumerate(keys)))
            .join(Batch, Batch.id == Record.batch_id)
            .where(Record.status.in_(where.statuses), *where.batch_conditions())
            .where(*_after(keys, where.after))
        )
        branches.append(parted.order_by(*keys).limit(limit))
    if where.followed or not where.statuses:
        batches = select(Batch.id, Batch.created_at).where(*where.batch_conditions(where.followed))
        after = where.after.keys if where.after is not None else None
        if after is not None:  # the batch the last page ended in, and those after it
            batches = batches.where(*_past((Batch.created_at, Batch.id), after[:2], inclusive=True))
        b = batches.order_by(Batch.created_at, Batch.id).subquery()
        own: list[ColumnElement[bool]] = [Record.status.is_(None)] if where.statuses else []
        if after is not None:  # of the batch the last page ended in, the records after it
            own.append(or_(b.c.id != after[1], Record.position > after[2]))
        per_batch = (
            select(*_COLUMNS)
            .where(Record.batch_id == b.c.id, *own)
            .order_by(Record.position)
            .limit(limit)
            .lateral()
        )
        keys_b = (b.c.created_at, b.c.id, per_batch.c.position)
        branches.append(
            select(*per_batch.c, *(k.label(f"k{i}") for i, k in enumerate(keys_b)))
            .select_from(b.join(per_batch, true()))
            .order_by(*keys_b)
            .limit(limit)
        )
    return branches[0] if len(branches) == 1 else _merged(branches, 3, limit)


def _after(keys: Sequence[Any], cursor: Cursor | None) -> list[Any]:
    """Rows past ``cursor`` in the order of ``keys``: the row comparison, and the first key's
    bound alone, which the index on it can use."""
    return [] if cursor is None else _past(keys, cursor.keys)


def _past(keys: Sequence[Any], values: Sequence[Any], *, inclusive: bool = False) -> list[Any]:
    row = tuple_(*keys) >= tuple_(*values) if inclusive else tuple_(*keys) > tuple_(*values)
    return [keys[0] >= values[0], row]


def _merged(
    branches: list[Select[*tuple[Any, ...]]], nkeys: int, limit: int
) -> Select[*tuple[Any, ...]]:
    both = union_all(*(select(b.subquery()) for b in branches)).subquery()
    return select(both).order_by(*_keys(both, nkeys)).limit(limit)


def _keys(source: Any, n: int) -> list[Any]:
    """The sort keys k0..kn-1 as columns of a subquery or CTE built from the branches."""
    return [source.c[f"k{i}"] for i in range(n)]
