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
from typing import Any

from sqlalchemy.orm import Session

from appendq import store
from appendq.db.models import BatchStatus, RecordStatus
from appendq.store import BatchView

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
            store.set_record_apart(
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
            child = store.split_batch(
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
