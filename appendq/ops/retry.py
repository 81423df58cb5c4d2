"""Operator actions on batches: preview and retry, one batch or every batch matching a filter.

Every action is an ``events`` row with who (``operator:NAME``), when, why and what, like every
transition the worker makes. Re-sending an ``in_doubt`` batch may make LiveVox receive its records
twice: that is the operator's explicit decision, and the event says so.

A retry acts on what the operator saw: ``retry`` takes the previewed state of each batch (status
and version, ``BatchSummary.seen``) and moves a batch only while it is still exactly there. A
batch that moved on since the preview (held at the preview, then sent by a tick and left in_doubt)
is left alone and reported (``LeftAlone``): the "may send twice" warning was decided on the
preview, so only a new preview may lead to re-sending it.

A retry may be kept to some LiveVox accounts (``RetryFilter.accounts``: ``appendq retry
--account``, or forced on an API token limited to some): a batch of another account is then not
chosen, and a previewed one is reported as not found, exactly as a batch that does not exist (a
caller limited to accounts learns nothing of the others' batches).

Operator text is bounded: a reason is one line of at most ``REASON_MAX`` characters, an actor
at most ``ACTOR_MAX`` (the column), neither with a control character (``appendq.leads.
text_problem``). Every id must fit its BIGINT column. Violations raise ``InvalidValue`` naming
the parameter, before anything is read or changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from appendq.accounts import check_name
from appendq.audit.access import operator_actor
from appendq.batches import reads
from appendq.batches.store import BatchStore, Change
from appendq.db.models import ACTOR_MAX, MAY_DUPLICATE, RETRYABLE_STATUSES, Batch, BatchStatus
from appendq.errors import InvalidValue
from appendq.keys import DEFAULT_ACCOUNT
from appendq.leads import check_text
from appendq.target import Target, check_id

MAX_BATCHES = 10_000
#: The longest reason an operator may give (characters); it is stored once per event.
REASON_MAX = 500
#: The longest actor name (events.actor is VARCHAR(64)).


def check_reason(reason: object, field: str = "reason") -> str:
    """An operator's reason: one line, not blank, at most REASON_MAX characters."""
    checked = check_text(reason, field, max_len=REASON_MAX, required=True)
    assert checked is not None
    return checked


def check_actor(actor: object, field: str = "actor") -> str:
    """Who acts, for the audit: one line, not blank, at most ACTOR_MAX characters."""
    checked = check_text(actor, field, max_len=ACTOR_MAX, required=True)
    assert checked is not None
    return checked


@dataclass(frozen=True)
class RetryFilter:
    """Which batches to retry. Empty ``statuses`` means every retryable status; ``since`` and
    ``until`` bound the batch's creation time (``until`` excluded); empty ``accounts`` means
    the batches of every LiveVox account."""

    batch_id: int | None = None
    statuses: tuple[BatchStatus, ...] = ()
    target: str | None = None
    service_id: int | None = None
    campaign_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    accounts: tuple[str, ...] = ()
    #: batches picked one by one (the console); with ``batch_id`` too, both must match
    batch_ids: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing narrows the choice: "retry everything" is never done by accident.
        An account alone does not narrow it: every batch of an account is still everything."""
        return all(
            getattr(self, f.name) in (None, ()) for f in fields(self) if f.name != "accounts"
        )

    def check(self) -> None:
        """Raise ``InvalidValue`` (naming the parameter) for an id outside its column, a bad
        target or a status that is not one; before any query runs."""
        ids = {"batch": self.batch_id, "service": self.service_id, "campaign": self.campaign_id}
        for name, value in ids.items():
            if value is not None:
                check_id(value, name)
        for picked in self.batch_ids:
            check_id(picked, "batch")
        if self.target is not None:
            Target.parse(self.target)
        for account in self.accounts:
            check_name(account)
        for status in self.statuses:
            if not isinstance(status, BatchStatus):
                raise InvalidValue("status", f"{status!r} is not a batch status")
        for name, moment in (("since", self.since), ("until", self.until)):
            if moment is not None and not isinstance(moment, datetime):
                raise InvalidValue(name, "must be a date and time")

    def query(self) -> Select[Batch]:
        statuses = [s for s in (self.statuses or RETRYABLE_STATUSES) if s in RETRYABLE_STATUSES]
        # a batch whose payloads the personal-data retention dropped can never be sent again
        query = select(Batch).where(Batch.status.in_(statuses), ~reads.payload_dropped())
        if self.batch_id is not None:
            query = query.where(Batch.id == self.batch_id)
        if self.batch_ids:
            query = query.where(Batch.id.in_(self.batch_ids))
        if self.accounts:
            query = query.where(Batch.livevox_account.in_(self.accounts))
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
    version: int = 0  # the batch's fence: +1 on every transition
    account: str = DEFAULT_ACCOUNT  # the LiveVox account of the batch

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat()}

    def seen(self) -> PreviewedState:
        """The state this summary shows, for ``retry(only=...)``."""
        return PreviewedState(BatchStatus(self.status), self.version)


@dataclass(frozen=True)
class PreviewedState:
    """A batch as a preview showed it: a retry moves it only while it is still exactly so."""

    status: BatchStatus
    version: int


@dataclass(frozen=True)
class LeftAlone:
    """A previewed batch a retry did not move, and why (``now``: its status now, None when it
    no longer exists)."""

    id: int
    previewed: str
    now: str | None
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RetryResult:
    """What a retry moved back to ready, and the previewed batches it left alone."""

    moved: list[BatchSummary]
    left: list[LeftAlone]

    def to_dict(self) -> dict[str, Any]:
        return {
            "moved": [b.to_dict() for b in self.moved],
            "left": [b.to_dict() for b in self.left],
        }


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
        batch.version,
        batch.livevox_account,
    )


def _may_duplicate(batch: Batch) -> bool:
    """in_doubt, or held for an operator: some of its records may be at LiveVox."""
    return batch.status in MAY_DUPLICATE


def preview_retry(session: Session, where: RetryFilter) -> list[BatchSummary]:
    """What ``retry`` would send again, each with the state to pass back to it (``seen``);
    changes nothing. ``InvalidValue`` on a bad filter."""
    where.check()
    return [_summary(b) for b in session.scalars(where.query())]


def retry(
    session: Session,
    where: RetryFilter,
    *,
    reason: str,
    actor: str | None = None,
    only: Mapping[int, PreviewedState] | None = None,
) -> RetryResult:
    """Move every matching batch back to ready, in the caller's transaction.

    ``only`` holds the batches an operator saw in the preview, each with the state it showed
    (``{b.id: b.seen() for b in preview}``): a batch is moved only while it is still in that
    status at that version; one that changed since (or is being changed by a drain right now, or
    started matching since) is left alone and reported in ``left``. Without ``only``, every
    batch matching now is moved (a caller that showed no preview). Raises ``InvalidValue`` for a
    bad reason, actor, filter or id before reading anything.
    """
    reason = check_reason(reason)
    who = check_actor(actor or operator_actor())
    where.check()
    if where.empty:
        raise InvalidValue(
            "filter", "a retry needs a filter (a batch, statuses, a service, a campaign, times)"
        )
    query = where.query()
    if only is not None:
        query = query.where(Batch.id.in_([check_id(i, "batch") for i in only]))
    result = RetryResult([], [])
    for batch in session.scalars(query.with_for_update(skip_locked=True)):
        seen = only.get(batch.id) if only is not None else None
        if seen is not None and (batch.status, batch.version) != (seen.status, seen.version):
            result.left.append(_changed(batch.id, seen, batch.status, batch.version))
            continue
        result.moved.append(_move(BatchStore(session, who), batch, reason))
    if only is not None:
        handled = {b.id for b in result.moved} | {b.id for b in result.left}
        unseen = {k: v for k, v in only.items() if k not in handled}
        result.left.extend(_unseen(session, unseen, where.accounts))
    return result


def _move(store: BatchStore, batch: Batch, reason: str) -> BatchSummary:
    """One locked, matching batch back to ready, fenced at the version it was read at."""
    summary = _summary(batch)
    note = reason
    if summary.may_duplicate:
        note += (
            f" (re-sent from {summary.status}: its records may already be at LiveVox, "
            "which may receive them twice)"
        )
    # the failure stays in the events; the batch is clean again
    clean = Change(next_attempt_at=None, attempts=0, error_kind=None, error_message=None)
    detail = {
        "operator_retry": True,
        "from": summary.status,
        "records": summary.size,
        "attempts": summary.attempts,
        "version": summary.version,
    }
    store.requeue(
        batch.id, summary.version, note, expect=RETRYABLE_STATUSES, change=clean, detail=detail
    )
    return summary


def _changed(batch_id: int, seen: PreviewedState, now: BatchStatus, version: int) -> LeftAlone:
    if now != seen.status:
        why = f"was {seen.status} at the preview, is {now} now"
    else:
        why = (
            f"was {seen.status} at the preview and has moved since "
            f"(version {seen.version} -> {version})"
        )
    return LeftAlone(batch_id, str(seen.status), str(now), f"{why}: preview again")


def _unseen(
    session: Session, missing: Mapping[int, PreviewedState], accounts: tuple[str, ...]
) -> list[LeftAlone]:
    """Previewed batches the retry's query did not return: why each one was left alone. A batch
    outside ``accounts`` (when given) is not found, as one that does not exist."""
    if not missing:
        return []
    query = select(Batch.id, Batch.status, Batch.version).where(Batch.id.in_(list(missing)))
    if accounts:
        query = query.where(Batch.livevox_account.in_(accounts))
    rows = session.execute(query).all()
    found = {int(r.id): (r.status, int(r.version)) for r in rows}
    left = []
    for batch_id, seen in sorted(missing.items()):
        if batch_id not in found:
            left.append(
                LeftAlone(batch_id, str(seen.status), None, "no longer exists: preview again")
            )
            continue
        status, version = found[batch_id]
        if (status, version) != (seen.status, seen.version):
            left.append(_changed(batch_id, seen, status, version))
        else:
            why = "is being changed by a drain right now, or no longer matches: preview again"
            left.append(LeftAlone(batch_id, str(seen.status), str(status), why))
    return left
