"""What the console's pages read, as plain functions of a session (or the Runtime): the overview
(``appendq.ops.status.collect`` plus each target's last successful append), the charts' series,
a page of batches, one batch's page, and the halts' history.

Every query is kept to the LiveVox accounts the signed-in token may use (``accounts``: None for
every account) and is backed by an index (``ix_batches_appended_*`` for the overview and the
charts, the primary key for the batches' pages and a batch's records, ``ix_events_batch_at``):
``bench/console.py`` times the overview and a lead search with 1 M record rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appendq.clock import utcnow
from appendq.db.models import (
    RECORD_STATUS_OF_BATCH,
    AccountEvent,
    Batch,
    BatchStatus,
    Event,
    Record,
)
from appendq.ops.status import collect
from appendq.queue import depths
from appendq.redact import mask_phone
from appendq.runtime import Runtime

#: Batches on one page of the batches list; records on one page of a batch.
BATCHES_PAGE = 50
RECORDS_PAGE = 100
#: The charts' span.
CHART_S = 24 * 3600


def overview(rt: Runtime, accounts: Collection[str] | None) -> dict[str, Any]:
    """The status of every account shown (``collect``), each target with its last successful
    append and each account with its latest."""
    data = collect(rt, among=accounts)
    with rt.sessions() as session:
        for section in data["accounts"]:
            name = section["account"]
            last = {
                t["target"]: last_append(session, name, t["target"]) for t in section["targets"]
            }
            for row in section["targets"]:
                row["last_append"] = last[row["target"]]
            section["last_append"] = max((v for v in last.values() if v), default=None)
    return data


def last_append(session: Session, account: str, target: str) -> datetime | None:
    """When ``account``'s last batch for ``target`` was appended (the partial index's last
    entry)."""
    query = select(func.max(Batch.finished_at)).where(
        Batch.livevox_account == account,
        Batch.target == target,
        Batch.status == BatchStatus.APPENDED,
    )
    return session.scalar(query)


def charts(rt: Runtime, accounts: Collection[str] | None) -> dict[str, Any]:
    """Per account shown: records appended per minute and queue depth, over the last 24 h, as
    uPlot wants them (``[[x...], [y...]]``, x in epoch seconds). Appended: one point a minute,
    0 where nothing was appended; depth: the samples the tick task wrote (none: no tick ran)."""
    now = utcnow()
    since = now - timedelta(seconds=CHART_S)
    first = int(since.timestamp()) // 60 * 60 + 60
    minutes = list(range(first, int(now.timestamp()) // 60 * 60 + 60, 60))
    shown = [n for n in rt.accounts if accounts is None or n in accounts]
    out = []
    with rt.sessions() as session:
        for name in shown:
            per_minute = appended_per_minute(session, name, since)
            samples = depths.series(rt.redis, rt.lane(name).keys, first)
            out.append(
                {
                    "account": name,
                    "appended": [minutes, [per_minute.get(m, 0) for m in minutes]],
                    "depth": [[s.minute for s in samples], [s.depth for s in samples]],
                }
            )
    return {"since": first, "until": minutes[-1], "accounts": out}


def appended_per_minute(session: Session, account: str, since: datetime) -> dict[int, int]:
    """Minute (epoch s) -> records in the batches appended in that minute."""
    minute = func.date_trunc("minute", Batch.finished_at)
    query = (
        select(func.extract("epoch", minute), func.sum(Batch.size))
        .where(
            Batch.livevox_account == account,
            Batch.status == BatchStatus.APPENDED,
            Batch.finished_at >= since,
        )
        .group_by(minute)
    )
    return {int(at): int(n) for at, n in session.execute(query)}


@dataclass(frozen=True)
class BatchFilter:
    """The batches list's filters, checked (``appendq.console.forms.batch_filter``)."""

    statuses: tuple[BatchStatus, ...] = ()
    account: str | None = None
    target: str | None = None
    campaign_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None  # the page's cursor: batches with a smaller id
    accounts: tuple[str, ...] | None = field(default=None)  # the caller's; None: every one


def batches(session: Session, where: BatchFilter) -> tuple[list[Batch], int | None]:
    """A page of batches matching ``where``, newest first, and the cursor of the next page."""
    query = select(Batch).order_by(Batch.id.desc()).limit(BATCHES_PAGE + 1)
    for condition in _conditions(where):
        query = query.where(condition)
    found = list(session.scalars(query))
    more = len(found) > BATCHES_PAGE
    page = found[:BATCHES_PAGE]
    return page, (page[-1].id if more and page else None)


def _conditions(where: BatchFilter) -> list[Any]:
    conditions: list[Any] = []
    if where.statuses:
        conditions.append(Batch.status.in_(where.statuses))
    if where.account is not None:
        conditions.append(Batch.livevox_account == where.account)
    if where.accounts is not None:
        conditions.append(Batch.livevox_account.in_(where.accounts))
    if where.target is not None:
        conditions.append(Batch.target == where.target)
    if where.campaign_id is not None:
        conditions.append(Batch.campaign_id == where.campaign_id)
    if where.since is not None:
        conditions.append(Batch.created_at >= where.since)
    if where.until is not None:
        conditions.append(Batch.created_at < where.until)
    if where.before is not None:
        conditions.append(Batch.id < where.before)
    return conditions


@dataclass(frozen=True)
class RecordRow:
    """One record as a batch's page shows it: phone masked, no other personal data."""

    id: str
    position: int
    phone: str
    lead_account: str | None
    status: str
    reason: str | None
    enqueued_at: datetime
    submitted_by: str | None


@dataclass(frozen=True)
class BatchPage:
    batch: Batch
    events: list[Event]
    records: list[RecordRow]
    next_position: int | None  # the next page of records starts here; None: the last page


def batch_page(
    session: Session, batch_id: int, accounts: Sequence[str] | None, after: int = -1
) -> BatchPage | None:
    """One batch (None if it does not exist or is of an account the caller may not see), its
    events (batch and record events, oldest first) and a page of its records from position
    ``after + 1``."""
    batch = session.get(Batch, batch_id)
    if batch is None or (accounts is not None and batch.livevox_account not in accounts):
        return None
    events = list(
        session.scalars(
            select(Event).where(Event.batch_id == batch_id).order_by(Event.at, Event.id)
        )
    )
    query = (
        select(Record)
        .where(Record.batch_id == batch_id, Record.position > after)
        .order_by(Record.position)
        .limit(RECORDS_PAGE + 1)
    )
    found = list(session.scalars(query))
    rows = [_row(r, batch.status) for r in found[:RECORDS_PAGE]]
    more = len(found) > RECORDS_PAGE
    return BatchPage(batch, events, rows, rows[-1].position if more else None)


def _row(record: Record, batch_status: BatchStatus) -> RecordRow:
    status: str = record.status or RECORD_STATUS_OF_BATCH.get(batch_status) or batch_status
    return RecordRow(
        str(record.id),
        record.position,
        mask_phone(record.phone1),
        record.account,
        str(status),
        record.reason,
        record.enqueued_at,
        record.submitted_by,
    )


def halts(
    session: Session, accounts: Collection[str] | None, limit: int = 10
) -> list[AccountEvent]:
    """The latest halts and resumes of the accounts shown, newest first."""
    query = select(AccountEvent).order_by(AccountEvent.id.desc()).limit(limit)
    if accounts is not None:
        query = query.where(AccountEvent.livevox_account.in_(list(accounts)))
    return list(session.scalars(query))
