"""A batch goes out: a session first, then a rate slot, ``sending`` committed (fenced), the call
(``call``), once more after a fresh login if the session expired, and what the answer means
(``settle`` decides, ``result`` writes)."""

from __future__ import annotations

import logging
from typing import Any

from appendq import faults
from appendq.batches import reads
from appendq.batches.views import BatchView
from appendq.db.models import BatchStatus
from appendq.drain import dry_run
from appendq.drain.call import call_append
from appendq.drain.context import Drainer, DrainReport, Tick
from appendq.drain.result import record_outcome
from appendq.drain.settle import settle
from appendq.errors import LiveVoxError, NotSent, SessionExpired, Transient
from appendq.livevox.campaigns import Resolution
from appendq.livevox.ratelimit import Slot

log = logging.getLogger(__name__)

CHANGED = "batch changed meanwhile"


def send(d: Drainer, batch: BatchView, resolution: Resolution, *, pinned: bool) -> DrainReport:
    campaign_id = resolution.campaign_id
    assert campaign_id is not None
    payloads = batch.payloads
    if payloads is None:
        with d.sessions() as session:
            payloads = reads.batch_payloads(session, batch.id)
    if not payloads:
        return _nothing_to_send(d, batch)
    login_failed = _ensure_session(d, batch)
    if login_failed is not None:
        return login_failed
    d.check_lease()
    if d.settings.dry_run:
        return dry_run.settle(d, batch, campaign_id, len(payloads), resolution.reason)
    slot = d.limiter.acquire()
    if not slot.granted:
        reason = f"no rate slot for {slot.wait_s:.1f} s"
        return DrainReport(
            Tick.RATE_LIMITED, batch.target, batch.id, batch.size, campaign_id, reason=reason
        )
    with d.store() as store:
        sent = store.mark_sending(batch, campaign_id, resolution.reason, len(payloads))
    if sent is None:
        d.limiter.release(slot)  # no call was made with it
        return DrainReport(Tick.WAITING, batch.target, batch.id, reason=CHANGED)
    faults.crashpoint("after_sending")
    return _call(d, sent, campaign_id, payloads, slot, pinned)


def _call(
    d: Drainer,
    sent: BatchView,
    campaign_id: int,
    payloads: list[dict[str, Any]],
    slot: Slot,
    pinned: bool,
) -> DrainReport:
    """The Append call (repeated once after a fresh login), then its answer recorded."""
    error, elapsed = call_append(d, sent.id, campaign_id, payloads, slot)
    if isinstance(error, SessionExpired):
        again, error, elapsed = _repeat_after_login(d, sent, campaign_id, payloads, error)
        if again is None:
            return DrainReport(Tick.FENCED, sent.target, sent.id, reason=CHANGED)
        sent = again
    faults.crashpoint("after_append")
    outcome = settle(error, attempts=sent.attempts, settings=d.settings, pinned=pinned)
    return record_outcome(d, sent, campaign_id, outcome, elapsed, len(payloads))


def _repeat_after_login(
    d: Drainer,
    sent: BatchView,
    campaign_id: int,
    payloads: list[dict[str, Any]],
    expired: SessionExpired,
) -> tuple[BatchView | None, LiveVoxError | None, float | None]:
    """The session expired (401): log in again and repeat the call once, in a second rate slot,
    after re-fencing the batch (still ``sending`` at the version this drainer left it, ``sent_at``
    moved to now, so the reaper's deadline counts from the second call). Returns the batch as
    re-fenced (None: another drainer owns it now), the call's error and its time."""
    log.info("LiveVox session expired; logging in again")
    try:
        d.client.login()
    except LiveVoxError as login_exc:
        return sent, login_exc, None
    second = d.limiter.acquire()
    if not second.granted:
        return sent, expired, None
    with d.store() as store:
        again = store.send_again(sent, "the session expired (401): logged in again, sending again")
    if again is None:
        d.limiter.release(second)
        return None, expired, None
    error, elapsed = call_append(d, sent.id, campaign_id, payloads, second)
    return again, error, elapsed


def _ensure_session(d: Drainer, batch: BatchView) -> DrainReport | None:
    """Log in before taking a rate slot: a slow login between slot and PUT would push the call
    later than its slot and could squeeze more calls into LiveVox's window than it allows."""
    if d.client.session_id is not None:
        return None
    try:
        d.client.login()
    except LiveVoxError as exc:
        if isinstance(exc, Transient):
            outcome = Tick.UNREACHABLE if isinstance(exc, NotSent) else Tick.WAITING
            return DrainReport(outcome, batch.target, batch.id, reason=f"login failed: {exc}")
        reason = f"configuration error, an operator must act: {exc}"
        d.halt(reason)
        return hold(d, batch, reason)
    return None


def _nothing_to_send(d: Drainer, batch: BatchView) -> DrainReport:
    """Every record of the batch parted from it (duplicates): close it without a call."""
    reason = "nothing to send: every record of the batch is a duplicate or was set apart"
    with d.store() as store:
        store.close_empty(batch, reason)
    return DrainReport(Tick.EMPTY, batch.target, batch.id, 0, reason=reason)


def hold(d: Drainer, batch: BatchView, reason: str) -> DrainReport:
    """The batch waits for a campaign (or for an operator to fix the account), with a reason."""
    with d.store() as store:
        store.hold(batch, reason)
    log.warning(
        "batch %s of %s held: %s",
        batch.id,
        batch.target,
        reason,
        extra={"batch": batch.id, "target": batch.target},
    )
    return DrainReport(BatchStatus.HELD, batch.target, batch.id, batch.size, reason=reason)
