"""One drain tick: at most one Append call of at most BATCH_MAX records. No Celery in here.

``drain_once`` takes the drain lock, puts right what a crash or a lost answer left behind
(``appendq.recovery``), stops there while the account is halted (``appendq.halt``), then walks
the targets oldest-work-first until one of them makes a call or every one is blocked (no
campaign, retry not yet due, no rate slot).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis.exceptions import LockError
from sqlalchemy import func
from sqlalchemy.orm import Session

from appendq import halt, recovery, store
from appendq.campaigns import Resolution
from appendq.db.models import BatchStatus
from appendq.drainer import Drainer, DrainReport
from appendq.errors import Configuration, LiveVoxError, SessionExpired, Transient
from appendq.faults import crashpoint
from appendq.outcome import Outcome, settle
from appendq.poison import isolate
from appendq.ratelimit import Slot
from appendq.records import Target
from appendq.store import BatchView

log = logging.getLogger(__name__)

__all__ = ["DrainReport", "Drainer", "drain_once", "take_tick"]


def take_tick(d: Drainer) -> bool:
    """One drain per interval, whoever asks and however many ticks piled up: a key set NX with a
    TTL of 90 % of the interval, timed by Redis's clock (not the worker's). Ticks that queued up
    while the workers were down, or that a second beat sent, find the key taken and do nothing."""
    ttl_ms = max(int(d.settings.drain_interval_s * 900), 1)
    return bool(d.redis.set(d.keys.tick, d.actor, nx=True, px=ttl_ms))


def drain_once(d: Drainer) -> DrainReport:
    """Run one tick. A concurrent drainer's claim conflict ends the tick; the claim stays in flight
    for the next tick's recovery."""
    ttl = d.call_deadline.total_seconds() * 2 + d.settings.drain_interval_s
    lock = d.redis.lock(d.keys.drain_lock, timeout=ttl, blocking=False)
    if not lock.acquire(blocking=False):
        return DrainReport("locked")
    try:
        try:
            recovered = recovery.recover_claims(d)
            recovery.reap_sending(d)
            stopped = halt.current(d.redis, d.keys)
            if stopped is not None:
                return DrainReport(
                    "halted",
                    reason=f"{stopped.reason} "
                    f"({stopped.remaining_s:.0f} s left; `appendq resume` lifts it)",
                )
            recovery.reconcile_due(d)
            report = _tick(d)
        except store.ClaimConflict as exc:
            log.warning("claim conflict with a concurrent drainer, left for recovery: %s", exc)
            return DrainReport("waiting", reason="claim conflict")
        if recovered:
            report = DrainReport(**{**report.__dict__, "recovered": recovered})
        return report
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("drain lock expired before the tick ended")


def _ordered_targets(d: Drainer) -> list[str]:
    with d.sessions() as session:
        oldest = {t: at.timestamp() for t, at in store.open_targets(session).items()}
    for target in d.queue.targets():
        head = d.queue.oldest(target)
        if head is not None:
            oldest[target] = min(oldest.get(target, head.enqueued_at), head.enqueued_at)
    return sorted(oldest, key=lambda t: oldest[t])


def _tick(d: Drainer) -> DrainReport:
    blocked: list[DrainReport] = []
    for target in _ordered_targets(d):
        report = _drain_target(d, target)
        if report.called or report.outcome == "rate_limited":
            return report
        blocked.append(report)
    return blocked[0] if blocked else DrainReport("idle")


def _drain_target(d: Drainer, target: str) -> DrainReport:
    with d.sessions() as session:
        batch = store.next_open_batch(session, target)
        if batch is not None and not _sendable(session, batch):
            return DrainReport(
                "waiting", target, batch.id, batch.size, reason=f"oldest batch is {batch.status}"
            )
    try:
        resolution = d.resolver.resolve(Target.parse(target))
    except LiveVoxError as exc:
        return _resolution_failed(d, target, batch, exc)
    if batch is None:
        batch = _claim(d, target)
        if batch is None:
            return DrainReport("idle", target)
    if resolution.campaign_id is None:
        return _hold(d, batch, resolution.reason)
    return _send(d, batch, resolution)


def _sendable(session: Session, batch: BatchView) -> bool:
    if batch.status in (BatchStatus.SENDING, BatchStatus.IN_DOUBT):
        return False
    return store.is_due(session, batch)


def _claim(d: Drainer, target: str) -> BatchView | None:
    claim = d.queue.claim(target, d.settings.batch_max)
    if not claim.records:
        return None
    crashpoint("after_claim")
    with d.sessions() as session:
        batch = store.persist_claim(session, claim, actor=d.actor)
    crashpoint("after_persist")
    d.queue.ack(claim)
    return batch


def _resolution_failed(
    d: Drainer, target: str, batch: BatchView | None, exc: LiveVoxError
) -> DrainReport:
    reason = f"cannot resolve today's campaign: {exc}"
    with d.sessions() as session, session.begin():
        store.set_target_state(session, target, campaign_id=None, hold_reason=reason)
    log.warning("%s: %s", target, reason, extra={"target": target, "error_kind": exc.kind})
    if isinstance(exc, Configuration):  # a refused login or a 403: don't try again every tick
        halt.halt(
            d.redis, d.keys, f"configuration error, an operator must act: {exc}", d.settings.halt_s
        )
    if isinstance(exc, Transient) or batch is None:
        return DrainReport("waiting", target, reason=reason)
    return _hold(d, batch, reason)


def _hold(d: Drainer, batch: BatchView, reason: str) -> DrainReport:
    with d.sessions() as session, session.begin():
        store.set_target_state(session, batch.target, campaign_id=None, hold_reason=reason)
        if batch.status != BatchStatus.HELD:
            store.transition(
                session,
                batch.id,
                BatchStatus.HELD,
                actor=d.actor,
                reason=reason,
                expect=[BatchStatus.READY, BatchStatus.RETRY_WAIT],
                error_kind="held",
                error_message=reason,
            )
    log.warning(
        "batch %s of %s held: %s",
        batch.id,
        batch.target,
        reason,
        extra={"batch": batch.id, "target": batch.target},
    )
    return DrainReport("held", batch.target, batch.id, batch.size, reason=reason)


def _send(d: Drainer, batch: BatchView, resolution: Resolution) -> DrainReport:
    campaign_id = resolution.campaign_id
    assert campaign_id is not None
    payloads = batch.payloads
    if payloads is None:
        with d.sessions() as session:
            payloads = store.batch_payloads(session, batch.id)
    if not payloads:
        return _nothing_to_send(d, batch)
    login_failed = _ensure_session(d, batch)
    if login_failed is not None:
        return login_failed
    slot = d.limiter.acquire()
    if not slot.granted:
        reason = f"no rate slot for {slot.wait_s:.1f} s"
        return DrainReport(
            "rate_limited", batch.target, batch.id, batch.size, campaign_id, reason=reason
        )
    with d.sessions() as session, session.begin():
        store.set_target_state(session, batch.target, campaign_id=campaign_id, hold_reason=None)
        sent = store.transition(
            session,
            batch.id,
            BatchStatus.SENDING,
            actor=d.actor,
            reason=resolution.reason,
            expect=[BatchStatus.READY, BatchStatus.RETRY_WAIT, BatchStatus.HELD],
            campaign_id=campaign_id,
            attempts=batch.attempts + 1,
            sent_at=func.now(),
            detail={"campaign": campaign_id, "records": len(payloads)},
        )
    if sent is None:
        return DrainReport("waiting", batch.target, batch.id, reason="batch changed meanwhile")
    crashpoint("after_sending")
    slots = [slot]
    error, elapsed = _call(d, campaign_id, payloads, slots)
    for taken in slots:
        d.limiter.restamp(taken)
    crashpoint("after_append")
    pinned = Target.parse(batch.target).kind == "campaign"
    outcome = settle(error, attempts=sent.attempts, settings=d.settings, pinned=pinned)
    return _record_outcome(d, sent, campaign_id, outcome, elapsed, len(payloads))


def _ensure_session(d: Drainer, batch: BatchView) -> DrainReport | None:
    """Log in before taking a rate slot: a slow login between slot and PUT would push the call
    later than its slot and could squeeze more calls into LiveVox's window than it allows."""
    if d.client.session_id is not None:
        return None
    try:
        d.client.login()
    except LiveVoxError as exc:
        if isinstance(exc, Transient):
            return DrainReport("waiting", batch.target, batch.id, reason=f"login failed: {exc}")
        reason = f"configuration error, an operator must act: {exc}"
        halt.halt(d.redis, d.keys, reason, d.settings.halt_s)
        return _hold(d, batch, reason)
    return None


def _nothing_to_send(d: Drainer, batch: BatchView) -> DrainReport:
    """Every record of the batch parted from it (duplicates): close it without a call."""
    reason = "nothing to send: every record of the batch is a duplicate or was set apart"
    with d.sessions() as session, session.begin():
        store.transition(
            session,
            batch.id,
            BatchStatus.APPENDED,
            actor=d.actor,
            reason=reason,
            expect=[BatchStatus.READY, BatchStatus.RETRY_WAIT, BatchStatus.HELD],
        )
    return DrainReport("empty", batch.target, batch.id, 0, reason=reason)


def _call(
    d: Drainer, campaign_id: int, payloads: list[dict[str, object]], slots: list[Slot]
) -> tuple[LiveVoxError | None, float | None]:
    """One Append call; on an expired session, log in again and repeat once if a slot is free
    (the second slot is added to ``slots``)."""
    try:
        return None, d.client.append(campaign_id, payloads)
    except SessionExpired as exc:
        log.info("LiveVox session expired; logging in again")
        try:
            d.client.login()
        except LiveVoxError as login_exc:
            return login_exc, None
        second = d.limiter.acquire()
        if not second.granted:
            return exc, None
        slots.append(second)
        try:
            return None, d.client.append(campaign_id, payloads)
        except LiveVoxError as again:
            return again, None
    except LiveVoxError as exc:
        return exc, None


def _record_outcome(
    d: Drainer,
    batch: BatchView,
    campaign_id: int,
    outcome: Outcome,
    elapsed: float | None,
    records: int,
) -> DrainReport:
    if outcome.pause_rate:
        d.limiter.pause()
    if outcome.refuse_campaign:
        d.resolver.refuse(campaign_id, outcome.reason or "refused")
    if outcome.halt:
        halt.halt(d.redis, d.keys, outcome.reason or "configuration error", d.settings.halt_s)
    columns = {
        "http_status": outcome.http_status,
        "call_ms": int(elapsed * 1000) if elapsed is not None else None,
    }
    status, reason = outcome.status, outcome.reason
    with d.sessions() as session, session.begin():
        if status == BatchStatus.REJECTED:
            status, reason = isolate(session, batch, reason or "refused", actor=d.actor, **columns)
        else:
            store.transition(
                session,
                batch.id,
                status,
                actor=d.actor,
                reason=reason,
                expect=[BatchStatus.SENDING],
                error_kind=outcome.error_kind,
                error_message=reason,
                next_attempt_at=(
                    func.now() + timedelta(seconds=outcome.retry_after_s)
                    if outcome.retry_after_s is not None
                    else None
                ),
                detail={"campaign": campaign_id, "records": records},
                **columns,
            )
        if status == BatchStatus.HELD:
            store.set_target_state(session, batch.target, campaign_id=None, hold_reason=reason)
    log.debug(
        "batch %s: %d records to campaign %s -> %s%s",
        batch.id,
        records,
        campaign_id,
        status,
        f" ({reason})" if reason else "",
        extra={
            "batch": batch.id,
            "target": batch.target,
            "campaign": campaign_id,
            "records": records,
            "status": str(status),
            "http_status": outcome.http_status,
        },
    )
    return DrainReport(
        str(status),
        batch.target,
        batch.id,
        records,
        campaign_id,
        outcome.http_status,
        reason,
        called=True,
    )
