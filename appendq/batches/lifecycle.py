"""The batch state machine: every move a batch may make, who makes it, and why.

``TRANSITIONS`` is the one table. ``BatchStore`` refuses any move not in it (a bug, not a
state), PostgreSQL refuses it too (migration 0005's trigger holds a copy of the table, and a test
keeps the two equal), and ``diagram()`` draws it for ARCHITECTURE.md (a test keeps the drawing
equal to the table, so it cannot go stale).
"""

from __future__ import annotations

import logging

from appendq.db.models import (
    FINISHED_STATUSES,
    RETRYABLE_STATUSES,
    ROUTINE_STATUSES,
    SENDABLE_STATUSES,
    Batch,
    BatchStatus,
)

log = logging.getLogger("appendq.batches.store")
S = BatchStatus


class IllegalTransition(Exception):
    """A move the table does not allow: a bug in the caller, never a state to carry on from."""


def _from(
    sources: tuple[BatchStatus, ...], to: BatchStatus, why: str
) -> dict[tuple[BatchStatus | None, BatchStatus], str]:
    return {(source, to): why for source in sources}


#: (from, to) -> what makes the move. ``None`` as a source: the batch is created in that status.
TRANSITIONS: dict[tuple[BatchStatus | None, BatchStatus], str] = {
    **_from(RETRYABLE_STATUSES, S.READY, "operator: appendq retry"),
    (None, S.READY): "claimed from the queue, or split off a batch",
    **_from(SENDABLE_STATUSES, S.SENDING, "drain: committed before the Append call"),
    (S.SENDING, S.SENDING): "drain: the session expired, logged in again, sent again",
    (S.READY, S.HELD): "drain: no appendable campaign, or a configuration problem",
    (S.RETRY_WAIT, S.HELD): "drain: no appendable campaign, or a configuration problem",
    **_from(SENDABLE_STATUSES, S.APPENDED, "drain: nothing left to send (duplicates)"),
    **_from(SENDABLE_STATUSES, S.DRY_RUN, "dry-run drain: audited, never sent"),
    (S.SENDING, S.APPENDED): "answer: 204",
    (S.SENDING, S.RETRY_WAIT): "answer: transient failure, retried after a backoff",
    (S.SENDING, S.READY): "answer: rate limited, campaign refused, or a refusal isolated",
    (S.SENDING, S.IN_DOUBT): "answer lost or 5xx, or the process died mid-call (reaper)",
    (S.SENDING, S.REJECTED): "answer: LiveVox refused the content",
    (S.SENDING, S.FAILED): "answer: attempts exhausted",
    (S.SENDING, S.HELD): "answer: configuration error, or a pinned campaign refuses",
    (S.SENDING, S.OPERATOR_HOLD): "answer: a record refused alone, not proven bad",
    (S.IN_DOUBT, S.APPENDED): "reconciled: every record found",
    (S.IN_DOUBT, S.READY): "reconciled: nothing landed",
    (S.IN_DOUBT, S.IN_DOUBT): "reconciled: the list may lag, look again later",
    (S.IN_DOUBT, S.OPERATOR_HOLD): "reconciled: some landed, or no proof either way",
    (S.OPERATOR_HOLD, S.READY): "isolation: the refusal was the campaign's",
    (S.OPERATOR_HOLD, S.REJECTED): "isolation: its family was accepted since, proven bad",
}


def may_move(source: BatchStatus | None, to: BatchStatus) -> bool:
    return (source, to) in TRANSITIONS


def sources(to: BatchStatus) -> tuple[BatchStatus, ...]:
    """Every status a batch may move to ``to`` from, in the enum's order."""
    return tuple(s for s in BatchStatus if (s, to) in TRANSITIONS)


def check(source: BatchStatus | None, to: BatchStatus, batch_id: int) -> None:
    if not may_move(source, to):
        raise IllegalTransition(f"batch {batch_id}: {source} -> {to} is not a batch transition")


def diagram() -> str:
    """The table as a Mermaid state diagram, one arrow per move; an operator's retry (from every
    retryable status to ready) is drawn apart."""
    lines = ["stateDiagram-v2"]
    retry = TRANSITIONS[(S.FAILED, S.READY)]
    for (source, to), why in TRANSITIONS.items():
        if why == retry:
            continue
        label = why.replace(":", " -").replace(",", "")
        lines.append(f"    {source or '[*]'} --> {to}: {label}")
    for source in RETRYABLE_STATUSES:
        lines.append(f"    {source} --> ready: operator retry")
    lines += [f"    {s} --> [*]" for s in FINISHED_STATUSES]
    return "\n".join(lines) + "\n"


def database_pairs() -> list[tuple[str, str]]:
    """The moves between two different statuses, as text: what the database trigger allows."""
    return sorted((str(a), str(b)) for a, b in TRANSITIONS if a is not None and a != b)


def log_transition(
    batch: Batch, previous: BatchStatus | None, actor: str, reason: str | None
) -> None:
    """One structured log event per batch transition (phone numbers never appear here)."""
    level = logging.INFO if batch.status in ROUTINE_STATUSES else logging.WARNING
    log.log(
        level,
        "batch %s %s -> %s%s",
        batch.id,
        previous,
        batch.status,
        f": {reason}" if reason else "",
        extra={
            "event": "batch_transition",
            "batch": batch.id,
            "target": batch.target,
            "campaign": batch.campaign_id,
            "records": batch.size,
            "from_status": str(previous) if previous else None,
            "status": str(batch.status),
            "http_status": batch.http_status,
            "attempts": batch.attempts,
            "actor": actor,
        },
    )


if __name__ == "__main__":
    print(diagram(), end="")
