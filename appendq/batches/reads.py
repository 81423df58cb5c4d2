"""What the drain and the reconciliation read of batches and records (no writes: see
``appendq.batches.store``). ``batch_payloads`` is the one read that decrypts personal data."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from appendq.batches.views import BatchView, RecordRef, view_of
from appendq.crypto import PayloadCipher, PayloadUnreadable, cipher_of
from appendq.db.models import OPEN_STATUSES, Batch, BatchStatus, Record, RecordStatus


def next_open_batch(session: Session, account: str, target: str) -> BatchView | None:
    """The oldest batch of the account's target that still has to go out (FIFO per target)."""
    batch = session.scalars(
        select(Batch)
        .where(
            Batch.livevox_account == account,
            Batch.target == target,
            Batch.status.in_(OPEN_STATUSES),
        )
        .order_by(func.coalesce(Batch.origin_id, Batch.id), Batch.first_position)
        .limit(1)
    ).first()
    return view_of(batch) if batch else None


def open_targets(session: Session, account: str) -> dict[str, datetime]:
    """The account's targets with unfinished batches, and the creation time of the oldest."""
    rows = session.execute(
        select(Batch.target, func.min(Batch.created_at))
        .where(Batch.livevox_account == account, Batch.status.in_(OPEN_STATUSES))
        .group_by(Batch.target)
    ).all()
    return {target: created for target, created in rows}


def batch_payloads(session: Session, batch_id: int) -> list[dict[str, Any]]:
    """The LiveVox records of a batch, in claim order, without those that parted from it,
    decrypted: only to send or re-send them. ``PayloadUnreadable`` names a record whose payload
    no configured key opens, or whose payload was dropped (never a partial batch)."""
    cipher = cipher_of(session)
    rows = session.execute(
        select(Record.id, Record.payload_enc, Record.payload_key, Record.legacy_payload)
        .where(Record.batch_id == batch_id, Record.status.is_(None))
        .order_by(Record.position)
    )
    return [_opened(cipher, *row) for row in rows]


def _opened(
    cipher: PayloadCipher,
    record_id: uuid.UUID,
    sealed: bytes | None,
    key: str | None,
    legacy: dict[str, Any] | None,
) -> dict[str, Any]:
    if sealed is not None:
        return cipher.open(record_id, sealed, key)
    if legacy is not None:  # written before migration 0007, not encrypted yet
        return legacy
    raise PayloadUnreadable(
        f"record {record_id}: its payload was dropped (APPENDQ_PII_RETENTION_DAYS): "
        "it cannot be sent again"
    )


def payload_dropped() -> ColumnElement[bool]:
    """A batch (in a query on ``Batch``) some of whose riding records lost their payload to
    the personal-data retention: it can never be sent again."""
    return exists().where(
        Record.batch_id == Batch.id,
        Record.status.is_(None),
        Record.payload_enc.is_(None),
        Record.legacy_payload.is_(None),
    )


def has_dropped_payloads(session: Session, batch_id: int) -> bool:
    return bool(session.scalar(select(payload_dropped()).where(Batch.id == batch_id)))


def stale_sending(session: Session, account: str, older_than: timedelta) -> list[tuple[int, int]]:
    """(id, version) of the account's batches left ``sending`` longer than a call can last:
    their process died mid-call."""
    cutoff = func.now() - older_than
    rows = session.execute(
        select(Batch.id, Batch.version).where(
            Batch.livevox_account == account,
            Batch.status == BatchStatus.SENDING,
            Batch.sent_at < cutoff,
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


def count_by_status(session: Session, account: str | None = None) -> dict[str, int]:
    """Batches per status, of one account (None: of every account)."""
    query = select(Batch.status, func.count()).group_by(Batch.status)
    if account is not None:
        query = query.where(Batch.livevox_account == account)
    rows = session.execute(query).all()
    return {str(status): int(n) for status, n in rows}


def count_by_account_status(
    session: Session, accounts: Collection[str] | None = None
) -> dict[str, dict[str, int]]:
    """Batches per LiveVox account and status, of ``accounts`` (None: of every account, those
    no longer configured included), in one pass over ``ix_batches_account_status``."""
    query = select(Batch.livevox_account, Batch.status, func.count()).group_by(
        Batch.livevox_account, Batch.status
    )
    if accounts is not None:
        query = query.where(Batch.livevox_account.in_(list(accounts)))
    found: dict[str, dict[str, int]] = {}
    for account, status, n in session.execute(query):
        found.setdefault(account, {})[str(status)] = int(n)
    return found


def batch_records(session: Session, batch_id: int) -> list[RecordRef]:
    """The records still riding with the batch, in order (those set apart are left out)."""
    rows = session.execute(
        select(Record.id, Record.position, Record.phone1, Record.account)
        .where(Record.batch_id == batch_id, Record.status.is_(None))
        .order_by(Record.position)
    ).all()
    return [RecordRef(*row) for row in rows]


def in_doubt_due(session: Session, account: str, older_than: timedelta) -> list[BatchView]:
    """The account's in_doubt batches whose call is over, oldest due first (PostgreSQL's clock).

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
        .where(Batch.livevox_account == account, Batch.status == BatchStatus.IN_DOUBT, due)
        .order_by(Batch.updated_at, Batch.id)
    )
    return [view_of(b) for b in rows]


def batch_view(session: Session, batch_id: int) -> BatchView | None:
    """The batch as it is now, in the caller's transaction (its version for the fence)."""
    batch = session.get(Batch, batch_id)
    return view_of(batch) if batch is not None else None


@dataclass(frozen=True)
class RejectedRecord:
    """What giving back a rejected record's dedupe keys needs: its clear lookup columns (the
    dedupe keys are phone1 and account), never its payload."""

    id: uuid.UUID
    target: str
    phone1: str
    account: str | None
    enqueued_at: datetime

    @property
    def lookup(self) -> dict[str, str]:
        """The fields a dedupe key is made of, as in the payload."""
        found = {"phone1": self.phone1}
        if self.account is not None:
            found["account"] = self.account
        return found


def rejected_records(session: Session, batch_id: int) -> list[RejectedRecord]:
    """The records of a batch that ended rejected: set apart alone, or with the whole batch."""
    batch_rejected = select(Batch.id).where(
        Batch.id == batch_id, Batch.status == BatchStatus.REJECTED
    )
    rows = session.execute(
        select(Record.id, Record.target, Record.phone1, Record.account, Record.enqueued_at).where(
            Record.batch_id == batch_id,
            (Record.status == RecordStatus.REJECTED)
            | (Record.status.is_(None) & Record.batch_id.in_(batch_rejected)),
        )
    )
    return [RejectedRecord(*row) for row in rows]


def lock_chunk(session: Session, where: Sequence[ColumnElement[bool]], chunk: int) -> list[int]:
    """Ids of up to ``chunk`` batches matching ``where``, oldest id first, row locked (SKIP
    LOCKED: one an operator is retrying right now waits for the next run)."""
    return list(
        session.scalars(
            select(Batch.id)
            .where(*where)
            .order_by(Batch.id)
            .limit(chunk)
            .with_for_update(skip_locked=True)
        )
    )
