"""One drain tick: at most one Append call of at most BATCH_MAX records. No Celery in here.

``drain_once`` takes the drain lock, puts right what a crash or a lost answer left behind
(``appendq.recovery``), stops there while the account is halted (``appendq.halt``), then walks
the targets oldest-work-first until one of them makes a call or every one is blocked (no
campaign, retry not yet due, no rate slot).
"""

from __future__ import annotations

import logging

from sqlalchemy import func
from sqlalchemy.orm import Session

from appendq import bulkhead, dry_run, halt, recovery, set_aside, store
from appendq.after_call import record_outcome
from appendq.append_call import call_append
from appendq.campaigns import Resolution
from appendq.db.models import BatchStatus
from appendq.drainer import Drainer, DrainReport
from appendq.errors import Configuration, LiveVoxError, NotSent, SessionExpired, Transient
from appendq.faults import crashpoint
from appendq.lease import DrainLease, LeaseLost, NoLease
from appendq.outcome import settle
from appendq.records import Target
from appendq.store import BatchView

log = logging.getLogger(__name__)

__all__ = ["DrainReport", "Drainer", "drain_once", "take_tick"]


#: Outcomes that end the tick: a call was made (``called``), or what stops one target would
#: stop every other too (no rate slot, LiveVox unreachable), or a dry run's one batch per tick.
ACCOUNT_WIDE = ("rate_limited", "unreachable", "dry_run")


def take_tick(d: Drainer) -> bool:
    """One drain per interval, whoever asks and however many ticks piled up: a key set NX with a
    TTL of 90 % of the interval, timed by Redis's clock (not the worker's). Ticks that queued up
    while the workers were down, or that a second beat sent, find the key taken and do nothing."""
    ttl_ms = max(int(d.settings.drain_interval_s * 900), 1)
    return bool(d.redis.set(d.keys.tick, d.actor, nx=True, px=ttl_ms))


def lease_ttl_s(d: Drainer) -> float:
    """The drain lock's TTL. It is renewed every third of it while a tick works, so it only
    bounds how long a frozen or dead holder keeps others waiting."""
    return min(d.call_deadline.total_seconds() * 2 + d.settings.drain_interval_s, 60.0)


def drain_once(d: Drainer) -> DrainReport:
    """Run one tick under the drain lease. A concurrent drainer's claim conflict ends the tick
    (the claim stays in flight for the next tick's recovery); so does a lost lease."""
    lease = DrainLease(d.redis, d.keys.drain_lock, lease_ttl_s(d))
    if not lease.acquire():
        return DrainReport("locked")
    d.lease = lease
    try:
        return _leased_tick(d)
    except store.ClaimConflict as exc:
        log.warning("claim conflict with a concurrent drainer, left for recovery: %s", exc)
        return DrainReport("waiting", reason="claim conflict")
    except LeaseLost as exc:
        log.error("drain stopped: %s", exc)
        return DrainReport("lease_lost", reason=str(exc))
    finally:
        d.lease = NoLease()
        lease.release()


def _leased_tick(d: Drainer) -> DrainReport:
    if d.settings.dry_run:
        dry_run.mark_active(d)
    recovered = recovery.recover_claims(d)
    d.check_lease()
    recovery.reap_sending(d)
    stopped = halt.current(d.redis, d.keys)
    if stopped is not None:
        return DrainReport(
            "halted",
            reason=f"{stopped.reason} "
            f"({stopped.remaining_s:.0f} s left; `appendq resume` lifts it)",
        )
    d.check_lease()
    recovery.reconcile_due(d)
    d.check_lease()
    report = _tick(d)
    if recovered:
        report = DrainReport(**{**report.__dict__, "recovered": recovered})
    return report


def _ordered_targets(d: Drainer) -> list[str]:
    with d.sessions() as session:
        oldest = {t: at.timestamp() for t, at in store.open_targets(session).items()}
    for target in d.queue.targets():
        try:
            head = d.queue.oldest(target)
        except ValueError:  # an unreadable head: first in line, its bulkhead settles it
            oldest[target] = 0.0
            continue
        if head is not None:
            oldest[target] = min(oldest.get(target, head.enqueued_at), head.enqueued_at)
    return sorted(oldest, key=lambda t: oldest[t])


def _tick(d: Drainer) -> DrainReport:
    blocked: list[DrainReport] = []
    aside = set_aside.current(d.redis, d.keys)
    for target in _ordered_targets(d):
        if target in aside:
            continue
        d.check_lease()
        report = bulkhead.behind_bulkhead(d, target, _drain_target)
        if report.called or report.outcome in ACCOUNT_WIDE:
            return report
        if halt.current(d.redis, d.keys) is not None:  # a refused login: not once per target
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
    if bulkhead.about_this_target(exc):  # a read-only 4xx for this service: the others go on
        reason = f"LiveVox refuses its campaign search: {exc}"
        return bulkhead.set_target_aside(d, target, "search", reason)
    if isinstance(exc, Configuration):  # a refused login, a bad URL: the whole account
        halt.halt(
            d.redis, d.keys, f"configuration error, an operator must act: {exc}", d.settings.halt_s
        )
    if isinstance(exc, NotSent):  # nothing reached LiveVox: no use asking for the next target
        return DrainReport("unreachable", target, reason=reason)
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
                version=batch.version,
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
    d.check_lease()
    if d.settings.dry_run:
        return dry_run.settle(d, batch, campaign_id, len(payloads), resolution.reason)
    slot = d.limiter.acquire()
    if not slot.granted:
        reason = f"no rate slot for {slot.wait_s:.1f} s"
        return DrainReport(
            "rate_limited", batch.target, batch.id, batch.size, campaign_id, reason=reason
        )
    sent = _mark_sending(d, batch, campaign_id, resolution.reason, len(payloads))
    if sent is None:
        d.limiter.release(slot)  # no call was made with it
        return DrainReport("waiting", batch.target, batch.id, reason="batch changed meanwhile")
    crashpoint("after_sending")
    error, elapsed = call_append(d, batch.id, campaign_id, payloads, slot)
    if isinstance(error, SessionExpired):
        again, error, elapsed = _repeat_after_login(d, sent, campaign_id, payloads, error)
        if again is None:
            return DrainReport("fenced", batch.target, batch.id, reason="batch changed meanwhile")
        sent = again
    crashpoint("after_append")
    pinned = Target.parse(batch.target).kind == "campaign"
    outcome = settle(error, attempts=sent.attempts, settings=d.settings, pinned=pinned)
    return record_outcome(d, sent, campaign_id, outcome, elapsed, len(payloads))


def _mark_sending(
    d: Drainer, batch: BatchView, campaign_id: int, reason: str, records: int
) -> BatchView | None:
    """Commit ``sending`` before the call, fenced on the version the batch was read at: of two
    drainers that read the same batch, only one can send it."""
    with d.sessions() as session, session.begin():
        store.set_target_state(session, batch.target, campaign_id=campaign_id, hold_reason=None)
        return store.transition(
            session,
            batch.id,
            BatchStatus.SENDING,
            actor=d.actor,
            reason=reason,
            expect=[BatchStatus.READY, BatchStatus.RETRY_WAIT, BatchStatus.HELD],
            version=batch.version,
            campaign_id=campaign_id,
            attempts=batch.attempts + 1,
            sent_at=func.now(),
            detail={"campaign": campaign_id, "records": records},
        )


def _repeat_after_login(
    d: Drainer,
    sent: BatchView,
    campaign_id: int,
    payloads: list[dict[str, object]],
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
    with d.sessions() as session, session.begin():
        again = store.transition(
            session,
            sent.id,
            BatchStatus.SENDING,
            actor=d.actor,
            reason="the session expired (401): logged in again, sending again",
            expect=[BatchStatus.SENDING],
            version=sent.version,
            sent_at=func.now(),
        )
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
            outcome = "unreachable" if isinstance(exc, NotSent) else "waiting"
            return DrainReport(outcome, batch.target, batch.id, reason=f"login failed: {exc}")
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
            version=batch.version,
        )
    return DrainReport("empty", batch.target, batch.id, 0, reason=reason)
