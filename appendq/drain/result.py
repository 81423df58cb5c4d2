"""After the Append call: record what its answer means for the batch (``settle`` decides, this
writes through ``BatchStore``), isolate refused records (``isolate``), and give back the dedupe
keys of records that ended rejected."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from appendq.batches import reads
from appendq.batches.store import BatchStore, Change, after
from appendq.batches.views import BatchView
from appendq.db.models import BatchStatus
from appendq.drain import bulkhead
from appendq.drain.context import Drainer, DrainReport, ReportOutcome, Tick
from appendq.drain.isolate import RedisNumbering, confirm_suspects, isolate
from appendq.drain.settle import Outcome
from appendq.queue import dedupe

log = logging.getLogger(__name__)


@dataclass
class _Written:
    """What recording an answer wrote: the batch's new status and reason, the batches whose
    records ended rejected (their dedupe keys are released after the commit), and whether the
    isolation budget was spent (the target is set aside)."""

    status: BatchStatus
    reason: str | None
    rejected_in: list[int] = field(default_factory=list)
    spent: bool = False


def record_outcome(
    d: Drainer,
    batch: BatchView,
    campaign_id: int,
    outcome: Outcome,
    elapsed: float | None,
    records: int,
) -> DrainReport:
    """Write what the answer means for the batch (fenced on the version it was sent at), then do
    what follows once that committed."""
    _account_signals(d, campaign_id, outcome)
    call_ms = int(elapsed * 1000) if elapsed is not None else None
    columns = Change(http_status=outcome.http_status, call_ms=call_ms)
    with d.store() as store:
        written = _write(d, store, batch, campaign_id, outcome, records, columns)
    if written is None:  # another drainer owns the batch now: this answer is stale
        reason = (
            f"answer not recorded ({outcome.status}): the batch changed meanwhile (another "
            "drainer owns it; this drainer's knowledge was stale)"
        )
        log.warning("batch %s: %s", batch.id, reason, extra={"batch": batch.id, "status": "fenced"})
        return _report(Tick.FENCED, batch, campaign_id, records, outcome, reason)
    _after_commit(d, batch, written)
    log.debug(
        "batch %s: %d records to campaign %s -> %s%s",
        batch.id,
        records,
        campaign_id,
        written.status,
        f" ({written.reason})" if written.reason else "",
        extra={"batch": batch.id, "target": batch.target, "campaign": campaign_id},
    )
    return _report(written.status, batch, campaign_id, records, outcome, written.reason)


def _account_signals(d: Drainer, campaign_id: int, outcome: Outcome) -> None:
    """What the answer says beyond the batch: pause the rate limit, skip the campaign, halt."""
    if outcome.pause_rate:
        d.limiter.pause()
    if outcome.refuse_campaign:
        d.resolver.refuse(campaign_id, outcome.reason or "refused")
    if outcome.halt:
        d.halt(outcome.reason or "configuration error")


def _write(
    d: Drainer,
    store: BatchStore,
    batch: BatchView,
    campaign_id: int,
    outcome: Outcome,
    records: int,
    columns: Change,
) -> _Written | None:
    """The batch's transition (a content refusal: isolation), in the caller's transaction; None
    when fenced off."""
    memory = RedisNumbering(d.redis, d.keys.numbering(d.settings.livevox_client_name))
    if outcome.status == BatchStatus.REJECTED:
        written = _isolated(d, store, batch, campaign_id, outcome, memory, columns)
    else:
        change = replace(
            columns,
            error_kind=outcome.error_kind,
            error_message=outcome.reason,
            next_attempt_at=_due(outcome),
        )
        detail = {"campaign": campaign_id, "records": records}
        moved = store.record_answer(
            batch, outcome.status, reason=outcome.reason, change=change, detail=detail
        )
        written = None if moved is None else _Written(outcome.status, outcome.reason)
    if written is None:
        return None
    if written.status == BatchStatus.APPENDED:  # the campaign takes appends: suspects proven bad
        written.rejected_in += confirm_suspects(
            store, batch.livevox_account, campaign_id, memory=memory
        )
    if written.status == BatchStatus.HELD:
        store.set_target_state(
            batch.livevox_account, batch.target, campaign_id=None, hold_reason=written.reason
        )
    return written


def _isolated(
    d: Drainer,
    store: BatchStore,
    batch: BatchView,
    campaign_id: int,
    outcome: Outcome,
    memory: RedisNumbering,
    columns: Change,
) -> _Written | None:
    """A content refusal: narrow it down to the records refused (``isolate``)."""
    found = isolate(
        store,
        batch,
        outcome.reason or "refused",
        named=outcome.named,
        memory=memory,
        max_calls=d.settings.isolation_max_calls,
        columns=columns,
    )
    if found.fenced:
        return None
    if found.campaign_refused:
        d.resolver.refuse(campaign_id, found.note)
    rejected = [batch.id] if found.rejected else []
    return _Written(found.status, found.note, rejected, found.budget_spent)


def _due(outcome: Outcome) -> Any:
    if outcome.retry_after_s is None:
        return None
    return after(timedelta(seconds=outcome.retry_after_s))


def _after_commit(d: Drainer, batch: BatchView, written: _Written) -> None:
    for rejected in written.rejected_in:
        release_dedupe(d, rejected)
    if written.spent:  # LiveVox keeps refusing this target's records: stop spending its calls
        reason = f"LiveVox keeps refusing its records: batch {batch.id} {written.reason}"
        bulkhead.set_target_aside(d, batch.target, "refused", reason)


def _report(
    outcome_name: ReportOutcome,
    batch: BatchView,
    campaign_id: int,
    records: int,
    outcome: Outcome,
    reason: str | None,
) -> DrainReport:
    return DrainReport(
        outcome_name,
        batch.target,
        batch.id,
        records,
        campaign_id,
        outcome.http_status,
        reason,
        called=True,
    )


def release_dedupe(d: Drainer, batch_id: int) -> None:
    """Records that ended rejected give their dedupe key back
    (``appendq.queue.record_queue.dedupe``), after the
    rejection committed: a corrected resubmission of the lead is then accepted. The keys are
    made of the clear lookup columns (phone1, account): no payload is decrypted here."""
    tz = d.settings.tz
    with d.sessions() as session:
        held = [
            r
            for rec in reads.rejected_records(session, batch_id)
            for r in dedupe.reservations(
                rec.lookup,
                target=rec.target,
                day=dedupe.day_of(rec.enqueued_at, tz),
                record_id=str(rec.id),
            )
        ]
    if held:
        released = d.queue.release_reservations(held)
        log.info("batch %s: %d dedupe keys of rejected records released", batch_id, released)
