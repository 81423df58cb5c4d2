"""Batches as the drain and the operators see them: plain values, detached from the session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from appendq.db.models import Batch, BatchStatus
from appendq.keys import DEFAULT_ACCOUNT


@dataclass(frozen=True)
class BatchView:
    """What the drain needs of a batch, detached from the session."""

    id: int
    target: str
    status: BatchStatus
    attempts: int
    size: int
    campaign_id: int | None
    created_at: datetime
    #: The fence: the batch's version when this view was read (see ``transition``).
    version: int = 0
    #: The LiveVox records to send, when the caller already holds them (a batch just claimed);
    #: None means "read them from PostgreSQL".
    payloads: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    #: The LiveVox account the batch belongs to (``appendq.accounts``).
    livevox_account: str = DEFAULT_ACCOUNT


def view_of(batch: Batch) -> BatchView:
    return BatchView(
        batch.id,
        batch.target,
        batch.status,
        batch.attempts,
        batch.size,
        batch.campaign_id,
        batch.created_at,
        batch.version,
        livevox_account=batch.livevox_account,
    )


@dataclass(frozen=True)
class RecordRef:
    id: uuid.UUID
    position: int
    phone1: str
    account: str | None
