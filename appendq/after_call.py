"""After the Append call: record what its answer means for the batch (``appendq.outcome`` decides,
this writes), isolate refused records (``appendq.poison``), and give back the dedupe keys of
records that ended rejected."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func

from appendq import dedupe, halt, set_aside, store
from appendq.db.models import BatchStatus
from appendq.drainer import Drainer, DrainReport
from appendq.outcome import Outcome
from appendq.poison import RedisNumbering, confirm_suspects, isolate
from appendq.store import BatchView

log = logging.getLogger(__name__)


def record_outcome(
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
    memory = RedisNumbering(d.redis, d.keys.numbering(d.settings.livevox_client_name))
    rejected_in: list[int] = []  # batches where records ended rejected: release after commit
    spent = False
    with d.sessions() as session, session.begin():
        if status == BatchStatus.REJECTED:
            found = isolate(
                session,
                batch,
                reason or "refused",
                actor=d.actor,
                named=outcome.named,
                memory=memory,
                max_calls=d.settings.isolation_max_calls,
                **columns,
            )
            if found.fenced:
                return _fenced(batch, campaign_id, records, outcome, BatchStatus.REJECTED)
            status, reason = found.status, found.note
            rejected_in += [batch.id] if found.rejected else []
            if found.campaign_refused:
                d.resolver.refuse(campaign_id, found.note)
            spent = found.budget_spent
        else:
            moved = store.transition(
                session,
                batch.id,
                status,
                actor=d.actor,
                reason=reason,
                expect=[BatchStatus.SENDING],
                version=batch.version,
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
            if moved is None:  # another drainer owns the batch now: this answer is stale
                return _fenced(batch, campaign_id, records, outcome, status)
        if status == BatchStatus.APPENDED:  # the campaign takes appends: suspects are proven bad
            rejected_in += confirm_suspects(session, campaign_id, actor=d.actor, memory=memory)
        if status == BatchStatus.HELD:
            store.set_target_state(session, batch.target, campaign_id=None, hold_reason=reason)
    for rejected in rejected_in:
        release_dedupe(d, rejected)
    if spent:  # LiveVox keeps refusing this target's records: stop spending the account's calls
        reason = f"LiveVox keeps refusing its records: batch {batch.id} {reason}"
        set_aside.set_aside(
            d.redis, d.keys, d.sessions, batch.target, kind="refused", reason=reason, actor=d.actor
        )
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


def _fenced(
    batch: BatchView, campaign_id: int, records: int, outcome: Outcome, status: BatchStatus
) -> DrainReport:
    reason = (
        f"answer not recorded ({status}): the batch changed meanwhile (another drainer owns it; "
        "this drainer's knowledge was stale)"
    )
    log.warning("batch %s: %s", batch.id, reason, extra={"batch": batch.id, "status": "fenced"})
    return DrainReport(
        "fenced",
        batch.target,
        batch.id,
        records,
        campaign_id,
        outcome.http_status,
        reason,
        called=True,
    )


def release_dedupe(d: Drainer, batch_id: int) -> None:
    """Records that ended rejected give their dedupe key back (``appendq.dedupe``), after the
    rejection committed: a corrected resubmission of the lead is then accepted."""
    tz = d.settings.tz
    with d.sessions() as session:
        held = [
            r
            for rec in store.rejected_records(session, batch_id)
            for r in dedupe.reservations(
                rec.payload,
                target=rec.target,
                day=dedupe.day_of(rec.enqueued_at, tz),
                record_id=str(rec.id),
            )
        ]
    if held:
        released = d.queue.release_reservations(held)
        log.info("batch %s: %d dedupe keys of rejected records released", batch_id, released)
