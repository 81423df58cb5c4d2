"""Operator actions on batches: preview and retry, one batch or every batch matching a filter.

Every action is an ``events`` row with who (``operator:NAME``), when, why and what, like every
transition the worker makes. Re-sending an ``in_doubt`` batch may make LiveVox receive its records
twice: that is the operator's explicit decision, and the event says so.
"""

from __future__ import annotations

import getpass
from collections.abc import Collection
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from appendq import store
from appendq.db.models import Batch, BatchStatus
from appendq.store import OPERATOR_HOLD

RETRYABLE = (
    BatchStatus.FAILED,
    BatchStatus.HELD,
    BatchStatus.IN_DOUBT,
    BatchStatus.REJECTED,
    BatchStatus.RETRY_WAIT,
)
MAX_BATCHES = 10_000


@dataclass(frozen=True)
class RetryFilter:
    """Which batches to retry. Empty ``statuses`` means every retryable status; ``since`` and
    ``until`` bound the batch's creation time (``until`` excluded)."""

    batch_id: int | None = None
    statuses: tuple[BatchStatus, ...] = ()
    target: str | None = None
    service_id: int | None = None
    campaign_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def empty(self) -> bool:
        """True when nothing narrows the choice: "retry everything" is never done by accident."""
        return all(getattr(self, f.name) in (None, ()) for f in fields(self))

    def query(self) -> Select[Batch]:
        statuses = [s for s in (self.statuses or RETRYABLE) if s in RETRYABLE]
        query = select(Batch).where(Batch.status.in_(statuses))
        if self.batch_id is not None:
            query = query.where(Batch.id == self.batch_id)
        if self.target is not None:
            query = query.where(Batch.target == self.target)
        if self.service_id is not None:
            query = query.where(Batch.target == f"service:{self.service_id}")
        if self.campaign_id is not None:
            query = query.where(Batch.campaign_id == self.campaign_id)
        if self.since is not None:
            query = query.where(Batch.created_at >= self.since)
        if self.until is not None:
            query = query.where(Batch.created_at < self.until)
        return query.order_by(Batch.created_at, Batch.id).limit(MAX_BATCHES)


@dataclass(frozen=True)
class BatchSummary:
    id: int
    target: str
    status: str
    size: int
    attempts: int
    campaign_id: int | None
    created_at: datetime
    error: str | None
    may_duplicate: bool  # in_doubt or partly landed: the records may already be at LiveVox

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat()}


def _summary(batch: Batch) -> BatchSummary:
    return BatchSummary(
        batch.id,
        batch.target,
        str(batch.status),
        batch.size,
        batch.attempts,
        batch.campaign_id,
        batch.created_at,
        batch.error_message,
        _may_duplicate(batch),
    )


def _may_duplicate(batch: Batch) -> bool:
    """in_doubt, or held after a reconciliation found some of its records at LiveVox."""
    held_partly_landed = batch.status == BatchStatus.HELD and batch.error_kind == OPERATOR_HOLD
    return batch.status == BatchStatus.IN_DOUBT or held_partly_landed


def preview_retry(session: Session, where: RetryFilter) -> list[BatchSummary]:
    """What ``retry_batches`` would send again; changes nothing."""
    return [_summary(b) for b in session.scalars(where.query())]


def retry_batches(
    session: Session,
    where: RetryFilter,
    *,
    reason: str,
    actor: str | None = None,
    only: Collection[int] | None = None,
) -> list[BatchSummary]:
    """Move every matching batch back to ready, in the caller's transaction; returns what moved.

    ``only`` restricts the move to the batches an operator saw in the preview: a batch that
    started matching since then is left alone. Batches locked by a drain right now are skipped
    (they are changing state; the caller compares what moved with what it previewed).
    """
    if not reason.strip():
        raise ValueError("a retry needs a reason (it is recorded in the audit)")
    if where.empty:
        raise ValueError("a retry needs a filter (a batch, statuses, a service, a campaign, times)")
    who = actor or default_actor()
    query = where.query()
    if only is not None:
        query = query.where(Batch.id.in_(list(only)))
    moved = []
    for batch in session.scalars(query.with_for_update(skip_locked=True)):
        summary = _summary(batch)
        note = reason
        if summary.may_duplicate:
            note += (
                f" (re-sent from {summary.status}: its records may already be at LiveVox, "
                "which may receive them twice)"
            )
        store.transition(
            session,
            batch.id,
            BatchStatus.READY,
            actor=who,
            reason=note,
            expect=RETRYABLE,
            next_attempt_at=None,
            attempts=0,
            error_kind=None,
            error_message=None,  # the failure stays in the events; the batch is clean again
            detail={
                "operator_retry": True,
                "from": summary.status,
                "records": summary.size,
                "attempts": summary.attempts,
            },
        )
        moved.append(summary)
    return moved


def default_actor() -> str:
    """``operator:<login name>`` of whoever runs the command."""
    return f"operator:{getpass.getuser()}"
