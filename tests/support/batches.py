"""Moving batches by hand in tests, through the one writer (``BatchStore``): every move a test
makes is one the lifecycle allows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from appendq.batches.store import BatchStore, Change
from appendq.batches.views import BatchView
from appendq.db.models import BatchStatus
from appendq.queue.record_queue import Claim


def move(
    session: Session,
    batch_id: int,
    to: BatchStatus,
    *,
    actor: str = "test",
    reason: str | None = None,
    expect: Sequence[BatchStatus] | None = None,
    version: int | None = None,
    detail: dict[str, Any] | None = None,
    **columns: Any,
) -> BatchView | None:
    """``BatchStore.move`` with the columns as keywords (``Change`` refuses an unknown one)."""
    store = BatchStore(session, actor)
    change = Change(**columns)
    return store.move(
        batch_id, to, reason=reason, version=version, expect=expect, change=change, detail=detail
    )


def persist_claim(session: Session, claim: Claim, *, actor: str = "test") -> BatchView | None:
    return BatchStore(session, actor).persist_claim(claim)
