"""One target's turn in a tick: its oldest open batch, or a new one claimed from Redis, and
today's campaign for it. What to send goes on to ``send``; a target without a campaign holds
its batch."""

from __future__ import annotations

import logging

from appendq import faults
from appendq.batches import reads
from appendq.batches.store import BatchStore
from appendq.batches.views import BatchView
from appendq.db.models import SENDABLE_STATUSES
from appendq.drain import bulkhead
from appendq.drain.context import Drainer, DrainReport, Tick
from appendq.drain.send import hold, send
from appendq.errors import Configuration, LiveVoxError, NotSent, Transient
from appendq.target import Target

log = logging.getLogger(__name__)


def drain_target(d: Drainer, target: Target) -> DrainReport:
    name = str(target)
    with d.sessions() as session:
        batch = reads.next_open_batch(session, d.account, name)
        if batch is not None and not _sendable(batch, reads.is_due(session, batch)):
            why = f"oldest batch is {batch.status}"
            return DrainReport(Tick.WAITING, name, batch.id, batch.size, reason=why)
    try:
        resolution = d.resolver.resolve(target)
    except LiveVoxError as exc:
        return _resolution_failed(d, name, batch, exc)
    if batch is None:
        batch = _claim(d, name)
        if batch is None:
            return DrainReport(Tick.IDLE, name)
    if resolution.campaign_id is None:
        return hold(d, batch, resolution.reason)
    return send(d, batch, resolution, pinned=target.kind == "campaign")


def _sendable(batch: BatchView, due: bool) -> bool:
    """Not while a call of it may be in flight or its answer is in doubt; a retry once due."""
    return batch.status in SENDABLE_STATUSES and due


def _claim(d: Drainer, target: str) -> BatchView | None:
    claim = d.queue.claim(target, d.settings.batch_max)
    if not claim.records:
        return None
    faults.crashpoint("after_claim")
    with d.sessions() as session:
        batch = BatchStore(session, d.actor).persist_claim(claim)
    faults.crashpoint("after_persist")
    d.queue.ack(claim)
    return batch


def _resolution_failed(
    d: Drainer, target: str, batch: BatchView | None, exc: LiveVoxError
) -> DrainReport:
    reason = f"cannot resolve today's campaign: {exc}"
    with d.store() as store:
        store.set_target_state(d.account, target, campaign_id=None, hold_reason=reason)
    log.warning("%s: %s", target, reason, extra={"target": target, "error_kind": exc.kind})
    if bulkhead.about_this_target(exc):  # a read-only 4xx for this service: the others go on
        reason = f"LiveVox refuses its campaign search: {exc}"
        return bulkhead.set_target_aside(d, target, "search", reason)
    if isinstance(exc, Configuration):  # a refused login, a bad URL: the whole account
        d.halt(f"configuration error, an operator must act: {exc}")
    if isinstance(exc, NotSent):  # nothing reached LiveVox: no use asking for the next target
        return DrainReport(Tick.UNREACHABLE, target, reason=reason)
    if isinstance(exc, Transient) or batch is None:
        return DrainReport(Tick.WAITING, target, reason=reason)
    return hold(d, batch, reason)
