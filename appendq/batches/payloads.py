"""Writes on the records' payload columns, in the caller's session, under ``BatchStore``'s rules
(it calls these): re-encryption under the current key (``appendq rotate-keys``) and the
personal-data retention (``appendq prune``). Both work in bounded chunks with their rows locked
SKIP LOCKED, so the drain is never blocked for long and a row being written now is left for the
next pass."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, null, or_, select, update
from sqlalchemy.orm import Session

from appendq.batches import reads
from appendq.crypto import PayloadCipher
from appendq.db.models import Record


def stale(current: str) -> ColumnElement[bool]:
    """Records whose payload is not under key ``current``: under another key, or in clear."""
    return or_(
        Record.payload_enc.is_not(None) & Record.payload_key.is_distinct_from(current),
        Record.legacy_payload.is_not(None),
    )


def reseal_chunk(
    session: Session, cipher: PayloadCipher, after: uuid.UUID | None, chunk: int
) -> tuple[int, uuid.UUID | None]:
    """Re-encrypt under the current key up to ``chunk`` stale records past ``after`` (id order);
    a payload in clear (before migration 0007) is encrypted and its clear copy dropped.
    Returns (records rewritten, the last id handled; None when none was left)."""
    query = (
        select(Record.id, Record.payload_enc, Record.payload_key, Record.legacy_payload)
        .where(stale(cipher.current))
        .order_by(Record.id)
        .limit(chunk)
        .with_for_update(skip_locked=True)
    )
    if after is not None:
        query = query.where(Record.id > after)
    rows = session.execute(query).all()
    if not rows:
        return 0, None
    values: list[dict[str, Any]] = []
    for record_id, sealed, key, legacy in rows:
        if sealed is not None:
            blob, current = cipher.reseal(record_id, sealed, key)
        else:
            blob, current = cipher.seal(record_id, legacy)
        values.append(
            {"id": record_id, "payload_enc": blob, "payload_key": current, "legacy_payload": None}
        )
    session.execute(update(Record), values)  # by primary key, one statement per row
    return len(rows), rows[-1][0]


def drop_chunk(session: Session, where: list[ColumnElement[bool]], chunk: int) -> tuple[int, int]:
    """Drop the payloads of up to ``chunk`` batches matching ``where`` (their rows locked, SKIP
    LOCKED: one an operator is retrying right now waits for the next run). Lookup columns and
    everything else stay. Returns (batches, records)."""
    ids = reads.lock_chunk(session, where, chunk)
    if not ids:
        return 0, 0
    result = session.execute(
        update(Record)
        .where(
            Record.batch_id.in_(ids),
            Record.payload_enc.is_not(None) | Record.legacy_payload.is_not(None),
        )
        .values({Record.payload_enc: None, Record.payload_key: None, Record.legacy_payload: null()})
        .execution_options(synchronize_session=False)
    )
    return len(ids), cast(CursorResult[Any], result).rowcount
