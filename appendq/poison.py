"""A batch LiveVox refuses for its content is not retried as is, and not rejected whole either:
find the offending record and send the good ones again.

- a refusal that names a record ("record 17: ...") sets that record apart as rejected, with
  LiveVox's reason, and the rest of the batch goes out again;
- a refusal that names none splits the batch in two (the second half becomes a new batch right
  behind it, so FIFO holds) and each half goes out on its own: bisection, log2(n) calls per poison
  record;
- a batch of one record that is refused is rejected, with the reason.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from appendq import store
from appendq.db.models import Batch, BatchStatus, Event, Record, RecordStatus
from appendq.records import Target
from appendq.store import BatchView, RecordRef

_RECORD_HINT = re.compile(r"\brecords?\s*(?:#|index\s*)?(\d+)\b", re.IGNORECASE)


def named_index(message: str, size: int) -> int | None:
    """The 0-based index of the record a refusal names, if it names one that exists."""
    match = _RECORD_HINT.search(message)
    if match is None:
        return None
    index = int(match.group(1))
    return index if 0 <= index < size else None


def isolate(
    session: Session, batch: BatchView, reason: str, *, actor: str, **columns: Any
) -> tuple[BatchStatus, str]:
    """Settle a content refusal of a ``sending`` batch, in the caller's transaction."""
    records = store.batch_records(session, batch.id)
    if len(records) <= 1:
        status, note = BatchStatus.REJECTED, f"rejected by LiveVox: {reason}"
    else:
        index = named_index(reason, len(records))
        if index is not None:
            set_record_apart(
                session,
                batch.id,
                records[index].id,
                RecordStatus.REJECTED,
                actor=actor,
                reason=f"rejected by LiveVox: {reason}",
            )
            status = BatchStatus.READY
            note = (
                f"LiveVox refused record {index} ({reason}); it is set apart as rejected and "
                f"the other {len(records) - 1} records go out again"
            )
        else:
            child = split_batch(
                session,
                batch,
                records,
                actor=actor,
                reason="LiveVox refused the batch's content without naming "
                "a record: bisecting to find it",
            )
            status = BatchStatus.READY
            note = f"refused for its content ({reason}); split, second half is batch {child}"
    store.transition(
        session,
        batch.id,
        status,
        actor=actor,
        reason=note,
        expect=[BatchStatus.SENDING],
        error_kind="rejected",
        error_message=note,
        **columns,
    )
    return status, note


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


def split_batch(
    session: Session, batch: BatchView, records: Sequence[RecordRef], *, actor: str, reason: str
) -> int:
    """Move the second half of ``records`` into a new ready batch that sorts right after this one
    (same root batch, first claim position of its records: see ``Batch.origin_id``). Records keep
    their claim positions. Each record stays in exactly one batch."""
    moved = records[len(records) // 2 :]
    parent = session.get(Batch, batch.id)
    assert parent is not None
    child = Batch(
        target=batch.target,
        size=len(moved),
        status=BatchStatus.READY,
        service_id=None,
        campaign_id=batch.campaign_id,
        created_at=parent.created_at,
        origin_id=parent.origin_id or parent.id,
        first_position=moved[0].position,
    )
    target = Target.parse(batch.target)
    if target.kind == "service":
        child.service_id = target.id
    session.add(child)
    session.flush()
    session.execute(
        update(Record).where(Record.id.in_([r.id for r in moved])).values(batch_id=child.id)
    )
    session.execute(update(Batch).where(Batch.id == batch.id).values(size=Batch.size - len(moved)))
    detail = {"from_batch": batch.id, "records": len(moved)}
    session.add(
        Event(
            batch_id=child.id,
            from_status=None,
            to_status=BatchStatus.READY,
            actor=actor,
            reason=reason,
            detail=detail,
        )
    )
    session.add(
        Event(
            batch_id=batch.id,
            from_status=str(batch.status),
            to_status=str(batch.status),
            actor=actor,
            reason=f"{reason}: {len(moved)} records moved to batch {child.id}",
            detail={"to_batch": child.id, "records": len(moved)},
        )
    )
    return child.id
