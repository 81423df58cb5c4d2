"""Where a batch parts: a record set apart from its batch's fate, a batch bisected, a batch cut
at the suspects of a refusal. Each record stays in exactly one batch, with its claim position;
the parts sort by (root batch, first claim position), so FIFO holds (see ``Batch.origin_id``).
Written through ``BatchStore`` (``appendq.drain.isolate`` uses it)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from appendq.batches.views import BatchView, RecordRef
from appendq.db.models import Batch, BatchStatus, Event, Record, RecordStatus
from appendq.target import Target


def set_record_apart(
    session: Session,
    batch_id: int,
    record_id: uuid.UUID,
    status: RecordStatus,
    *,
    actor: str,
    reason: str,
) -> None:
    """One record parts from its batch's fate (a poison record rejected alone)."""
    session.execute(
        update(Record)
        .where(Record.id == record_id)
        .values(status=status, reason=reason, updated_at=func.now())
    )
    session.add(
        Event(
            batch_id=batch_id,
            record_id=record_id,
            from_status=None,
            to_status=status,
            actor=actor,
            reason=reason,
        )
    )


def split_at(
    session: Session,
    batch: BatchView,
    records: list[RecordRef],
    candidates: dict[int, list[str]],
    *,
    actor: str,
    reason: str,
) -> list[int]:
    """Cut the batch at its suspects, FIFO kept: each suspect becomes a batch of its own, each run
    of records between them another, in claim order; the first part stays in this batch. The
    parts before a suspect go out before it, so they can prove it. Returns the new batches."""
    parts: list[tuple[list[RecordRef], list[str] | None]] = []
    for index, rec in enumerate(records):
        how = candidates.get(index)
        if how is not None or not parts or parts[-1][1] is not None:
            parts.append(([rec], how))
        else:
            parts[-1][0].append(rec)
    parent = session.get(Batch, batch.id)
    assert parent is not None
    moved: list[int] = []
    for part, how in parts[1:]:
        extra: dict[str, Any] = {}
        why = "split at the suspects of a refusal"
        if how is not None:
            extra = {"split_suspect": how}
            why = f"suspect of a refusal ({reason}), numbering(s) {'/'.join(how)}: goes out alone"
        moved.append(_child(session, batch, parent, part, part[0].position, actor, why, extra))
    return moved


def split_batch(
    session: Session, batch: BatchView, records: Sequence[RecordRef], *, actor: str, reason: str
) -> int:
    """Move the second half of ``records`` into a new ready batch that sorts right after this one
    (same root batch, first claim position of its records: see ``Batch.origin_id``). Records keep
    their claim positions. Each record stays in exactly one batch."""
    moved = list(records[len(records) // 2 :])
    parent = session.get(Batch, batch.id)
    assert parent is not None
    return _child(session, batch, parent, moved, moved[0].position, actor, reason, {})


def _child(
    session: Session,
    batch: BatchView,
    parent: Batch,
    moved: list[RecordRef],
    first_position: int,
    actor: str,
    reason: str,
    extra: dict[str, Any],
) -> int:
    target = Target.parse(batch.target)
    child = Batch(
        livevox_account=parent.livevox_account,
        target=batch.target,
        size=len(moved),
        status=BatchStatus.READY,
        service_id=target.id if target.kind == "service" else None,
        campaign_id=batch.campaign_id,
        created_at=parent.created_at,
        origin_id=parent.origin_id or parent.id,
        first_position=first_position,
        enqueued_from=parent.enqueued_from,
        enqueued_to=parent.enqueued_to,
    )
    session.add(child)
    session.flush()
    session.execute(
        update(Record).where(Record.id.in_([r.id for r in moved])).values(batch_id=child.id)
    )
    session.execute(update(Batch).where(Batch.id == batch.id).values(size=Batch.size - len(moved)))
    _split_events(session, batch, child.id, len(moved), actor, reason, extra)
    return child.id


def _split_events(
    session: Session,
    batch: BatchView,
    child_id: int,
    moved: int,
    actor: str,
    reason: str,
    extra: dict[str, Any],
) -> None:
    """The child's creation (None -> ready) and the parent's note (its status unchanged)."""
    created = Event(batch_id=child_id, from_status=None, to_status=BatchStatus.READY, actor=actor)
    created.reason = reason
    created.detail = {"from_batch": batch.id, "records": moved, **extra}
    note = Event(batch_id=batch.id, from_status=str(batch.status), to_status=str(batch.status))
    note.actor = actor
    note.reason = f"{reason}: {moved} records moved to batch {child_id}"
    note.detail = {"to_batch": child_id, "records": moved}
    session.add_all([created, note])
