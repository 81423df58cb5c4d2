"""What each tick does before new work: put right what a crash or a lost answer left behind.

- claims left in Redis's in-flight lists (a crash between claim and persist) are persisted;
- batches left ``sending`` past the call deadline (the process died mid-call) become in_doubt;
- in_doubt batches whose call is long over are reconciled against LiveVox's transaction list.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import psycopg
from sqlalchemy.exc import DataError

from appendq.batches import history, reads
from appendq.batches.store import BatchStore, Change, after
from appendq.batches.views import BatchView
from appendq.db.models import BatchStatus
from appendq.drain import bulkhead, set_aside
from appendq.drain.context import Drainer
from appendq.drain.reconcile import Evidence, evidence_detail, gather, verdict
from appendq.errors import CampaignUnavailable, Configuration, LiveVoxError

log = logging.getLogger(__name__)

DIED_MID_CALL = (
    "left sending past the call deadline: the process died during the call; the records may or "
    "may not have landed"
)
#: in_doubt batches reconciled per tick at most (each reads a transaction list).
RECONCILE_PER_TICK = 3


def recover_claims(d: Drainer) -> int:
    """Persist the claims a crash left in flight, target by target. A target whose claim
    PostgreSQL refuses (bad data, not a lost connection) is set aside, and the others go on."""
    recovered = 0
    aside = set_aside.current(d.redis, d.keys)
    for target in d.queue.targets():
        if target in aside or not d.redis.exists(d.keys.inflight(target)):
            continue
        try:
            recovered += _recover_claim(d, target)
        except (DataError, psycopg.DataError) as exc:
            reason = f"its claimed records cannot be stored: {getattr(exc, 'orig', None) or exc}"
            bulkhead.set_target_aside(d, target, "persist", reason)
        except ValueError as exc:  # an item that is not a record, a target that is no name
            reason = f"its claimed records cannot be read: {exc}"
            bulkhead.set_target_aside(d, target, "malformed", reason)
    return recovered


def _recover_claim(d: Drainer, target: str) -> int:
    claim = d.queue.claim(target, d.settings.batch_max)
    with d.sessions() as session:
        batch = BatchStore(session, d.actor).persist_claim(claim)
    d.queue.ack(claim)
    log.warning(
        "recovered %d claimed records of %s (batch %s)",
        len(claim.records),
        target,
        batch.id if batch else "already persisted",
    )
    return batch.size if batch else 0


def reap_sending(d: Drainer) -> None:
    with d.store() as store:
        for batch_id, version in reads.stale_sending(store.session, d.account, d.call_deadline):
            store.reap(batch_id, version, DIED_MID_CALL)


def _unreadable(d: Drainer, batch: BatchView, exc: LiveVoxError) -> None:
    """The transaction list can't be read. A configuration error (403, 404: nothing will change
    by itself) sets the batch aside for an operator; anything else sends it to the back of the
    reconciliation line (due again one call deadline later), so one unreadable campaign never
    starves the others. Both fenced on the version the batch was read at."""
    with d.store() as store:
        if isinstance(exc, Configuration | CampaignUnavailable):  # nothing changes by itself
            reason = (
                f"cannot reconcile: the transaction list can't be read ({exc}); an operator "
                "must decide (`appendq retry` re-sends the batch)"
            )
            change = Change(error_kind="in_doubt", error_message=reason)
            store.reconciled(batch, BatchStatus.OPERATOR_HOLD, reason=reason, change=change)
        else:
            store.look_again_later(batch)
    log.warning(
        "batch %s: cannot read the transaction list: %s", batch.id, exc, extra={"batch": batch.id}
    )


def _evidence(d: Drainer, batch: BatchView, campaign_id: int) -> Evidence:
    """Read the campaign's list once and weigh the batch in it, with the other batches of the
    campaign that share its phones and the calibration batch (see
    ``appendq.drain.reconcile``)."""
    with d.sessions() as session:
        records = reads.batch_records(session, batch.id)
        calibration = history.calibration_batch(session, campaign_id, batch.id)
        cal_records = reads.batch_records(session, calibration.batch_id) if calibration else []
        phones = [r.phone1 for r in records] + [r.phone1 for r in cal_records]
        known = history.known_records(session, campaign_id, phones, exclude_batch=batch.id)
        answer_age = history.seconds_since_answer(session, batch.id)
    cal = (calibration, cal_records) if calibration is not None else None
    evidence = gather(d.client, campaign_id, records, known, cal)
    lag = _lag_bound(d, evidence) if evidence.calibrated else None
    return replace(evidence, answer_age_s=answer_age, lag_bound_s=lag)


def _lag_bound(d: Drainer, evidence: Evidence) -> float | None:
    """How late the list may show an appended record, at most: the calibration batch's age when
    a read first showed it (remembered in Redis, first read wins). A record of this batch that
    landed longer ago than that would show."""
    cal = evidence.calibration
    if cal is None:
        return None
    seconds, micros = d.redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    key = d.keys.calibration_seen(cal.batch_id)
    d.redis.set(key, now_ms, nx=True, ex=2 * 24 * 3600)
    first = d.redis.get(key)
    seen_ago_s = (now_ms - int(first)) / 1000 if first is not None else 0.0
    return max(cal.age_s - seen_ago_s, 0.0)


def reconcile_due(d: Drainer) -> int:
    """Reconcile the in_doubt batches that are due (``reads.in_doubt_due``: a short settle after
    an answer, a whole call deadline after a lost one); returns how many were read."""
    with d.sessions() as session:
        due = reads.in_doubt_due(session, d.account, d.call_deadline)[:RECONCILE_PER_TICK]
    done = 0
    for batch in due:
        if batch.campaign_id is None or d.redis.exists(d.keys.calling(batch.id)):
            continue  # a call of it may still be running (past its deadline): not weighable
        try:
            evidence = _evidence(d, batch, batch.campaign_id)
        except LiveVoxError as exc:
            _unreadable(d, batch, exc)
            continue
        d.check_lease()  # a long read may have outlived the lease: stop before acting on it
        _settle_verdict(d, batch, evidence)
        done += 1
    return done


def _settle_verdict(d: Drainer, batch: BatchView, evidence: Evidence) -> None:
    found = verdict(batch, evidence, wait_s=d.call_deadline.total_seconds())
    status = found.status or BatchStatus.IN_DOUBT
    again = timedelta(seconds=found.again_s) if found.again_s is not None else None
    change = Change(
        error_kind=found.error_kind or ("in_doubt" if again else None),
        error_message=found.reason if found.error_kind or again else None,
    )
    if again:
        change = replace(change, next_attempt_at=after(again))
    with d.store() as store:
        moved = store.reconciled(
            batch, status, reason=found.reason, change=change, detail=evidence_detail(evidence)
        )
    log.warning(
        "batch %s reconciled -> %s: %s",
        batch.id,
        status if moved else "nothing (it changed meanwhile)",
        found.reason,
        extra={"batch": batch.id, "target": batch.target, "status": str(status)},
    )
