"""A claim from Redis becomes a ``ready`` batch in PostgreSQL: batch row, records (COPY; each
payload encrypted, ``appendq.crypto``) and the first event, in one transaction. Written through
``BatchStore.persist_claim``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appendq.batches.lifecycle import log_transition
from appendq.batches.views import BatchView, view_of
from appendq.crypto import cipher_of
from appendq.db.models import Batch, BatchStatus, Event, RecordStatus
from appendq.queue.item import QueuedRecord
from appendq.queue.record_queue import Claim
from appendq.target import Target

_COPY_RECORDS = (
    "COPY records (id, batch_id, position, livevox_account, target, phone1, account, "
    "payload_enc, payload_key, enqueued_at, status, reason, submitted_by) FROM STDIN"
)


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
    fresh = _fresh(session, claim)
    if not fresh:
        return None
    target = Target.parse(claim.target)
    batch = Batch(
        livevox_account=claim.account,
        target=claim.target,
        size=len(fresh),
        status=BatchStatus.READY,
        service_id=target.id if target.kind == "service" else None,
        campaign_id=target.id if target.kind == "campaign" else None,
        enqueued_from=datetime.fromtimestamp(min(r.enqueued_at for r in fresh), UTC),
        enqueued_to=datetime.fromtimestamp(max(r.enqueued_at for r in fresh), UTC),
    )
    reason = "claimed from the queue" + (" (recovered after a crash)" if claim.recovered else "")
    try:
        _insert_batch(session, batch, claim, fresh, actor, reason)
    except (IntegrityError, psycopg.errors.IntegrityError) as exc:
        session.rollback()
        raise ClaimConflict(str(getattr(exc, "orig", exc))) from None
    log_transition(batch, None, actor, reason)
    return replace(view_of(batch), payloads=[r.payload for r in fresh if not r.duplicate_of])


def _fresh(session: Session, claim: Claim) -> list[QueuedRecord]:
    """The claim's records, each once, without those a recovered claim already persisted."""
    first: dict[str, QueuedRecord] = {}
    for rec in claim.records:
        first.setdefault(rec.id, rec)  # a retried push may have queued a record twice
    unique = list(first.values())
    if not claim.recovered:
        return unique
    # Handed out before: some may be in PostgreSQL already (crash between commit and ack).
    # One array parameter, not 10,000 bind parameters (whose parsing alone costs 0.25 s).
    known = set(
        session.scalars(
            text("SELECT id FROM records WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(r.id) for r in unique]},
        )
    )
    session.rollback()
    return [r for r in unique if uuid.UUID(r.id) not in known]


def _insert_batch(
    session: Session, batch: Batch, claim: Claim, fresh: list[QueuedRecord], actor: str, reason: str
) -> None:
    """Batch row, records (COPY), first event, commit. A record already persisted raises an
    IntegrityError: from SQLAlchemy at commit, or from psycopg inside the COPY."""
    session.add(batch)
    session.flush()
    _copy_records(session, batch, fresh)
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


def _copy_records(session: Session, batch: Batch, records: Sequence[QueuedRecord]) -> None:
    cipher = cipher_of(session)
    # Encrypted row by row as the COPY goes: PostgreSQL stores the rows already sent meanwhile.
    sealed = cipher.seal_each((rec.id, rec.payload) for rec in records)
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(_COPY_RECORDS) as copy:
        for position, (rec, blob) in enumerate(zip(records, sealed, strict=True)):
            payload = rec.payload
            copy.write_row(
                (
                    rec.id,
                    batch.id,
                    position,
                    batch.livevox_account,
                    batch.target,
                    payload["phone1"],
                    payload.get("account"),
                    blob,
                    cipher.current,
                    datetime.fromtimestamp(rec.enqueued_at, UTC),
                    RecordStatus.DUPLICATE.value if rec.duplicate_of else None,
                    f"duplicate of {rec.duplicate_of}" if rec.duplicate_of else None,
                    rec.submitted_by,
                )
            )
