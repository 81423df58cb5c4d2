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
from sqlalchemy import func, update
from sqlalchemy.exc import DataError

from appendq import history, set_aside, store
from appendq.db.models import Batch, BatchStatus
from appendq.drainer import Drainer
from appendq.errors import Configuration, LiveVoxError
from appendq.reconcile import Evidence, evidence_detail, gather, verdict
from appendq.store import BatchView

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
            set_aside.set_aside(
                d.redis, d.keys, d.sessions, target, kind="persist", reason=reason, actor=d.actor
            )
        except ValueError as exc:  # an item that is not a record, a target that is no name
            reason = f"its claimed records cannot be read: {exc}"
            set_aside.set_aside(
                d.redis, d.keys, d.sessions, target, kind="malformed", reason=reason, actor=d.actor
            )
    return recovered


def _recover_claim(d: Drainer, target: str) -> int:
    claim = d.queue.claim(target, d.settings.batch_max)
    with d.sessions() as session:
        batch = store.persist_claim(session, claim, actor=d.actor)
    d.queue.ack(claim)
    log.warning(
        "recovered %d claimed records of %s (batch %s)",
        len(claim.records),
        target,
        batch.id if batch else "already persisted",
    )
    return batch.size if batch else 0


def reap_sending(d: Drainer) -> None:
    with d.sessions() as session, session.begin():
        for batch_id, version in store.stale_sending(session, d.call_deadline):
            store.transition(
                session,
                batch_id,
                BatchStatus.IN_DOUBT,
                actor=d.actor,
                expect=[BatchStatus.SENDING],
                version=version,
                reason=DIED_MID_CALL,
                error_kind="in_doubt",
                error_message=DIED_MID_CALL,
            )


def _unreadable(d: Drainer, batch: BatchView, exc: LiveVoxError) -> None:
    """The transaction list can't be read. A configuration error (403, 404: nothing will change
    by itself) sets the batch aside for an operator; anything else sends it to the back of the
    reconciliation line (due again one call deadline later), so one unreadable campaign never
    starves the others. Both fenced on the version the batch was read at."""
    with d.sessions() as session, session.begin():
        if isinstance(exc, Configuration):
            reason = (
                f"cannot reconcile: the transaction list can't be read ({exc}); an operator "
                "must decide (`appendq retry` re-sends the batch)"
            )
            store.transition(
                session,
                batch.id,
                BatchStatus.HELD,
                actor=d.actor,
                reason=reason,
                expect=[BatchStatus.IN_DOUBT],
                version=batch.version,
                error_kind=store.OPERATOR_HOLD,
                error_message=reason,
            )
        else:
            session.execute(
                update(Batch)
                .where(
                    Batch.id == batch.id,
                    Batch.version == batch.version,
                    Batch.status == BatchStatus.IN_DOUBT,
                )
                .values(updated_at=func.now())
            )
    log.warning(
        "batch %s: cannot read the transaction list: %s", batch.id, exc, extra={"batch": batch.id}
    )


def _evidence(d: Drainer, batch: BatchView, campaign_id: int) -> Evidence:
    """Read the campaign's list once and weigh the batch in it, with the other batches of the
    campaign that share its phones and the calibration batch (see ``appendq.reconcile``)."""
    with d.sessions() as session:
        records = store.batch_records(session, batch.id)
        calibration = history.calibration_batch(session, campaign_id, batch.id)
        cal_records = store.batch_records(session, calibration.batch_id) if calibration else []
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
    """Reconcile the in_doubt batches that are due (``store.in_doubt_due``: a short settle after
    an answer, a whole call deadline after a lost one); returns how many were read."""
    with d.sessions() as session:
        due = store.in_doubt_due(session, d.call_deadline)[:RECONCILE_PER_TICK]
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
        found = verdict(batch, evidence, wait_s=d.call_deadline.total_seconds())
        status = found.status or BatchStatus.IN_DOUBT
        again = timedelta(seconds=found.again_s) if found.again_s is not None else None
        with d.sessions() as session, session.begin():
            moved = store.transition(
                session,
                batch.id,
                status,
                actor=d.actor,
                reason=found.reason,
                expect=[BatchStatus.IN_DOUBT],
                version=batch.version,
                error_kind=found.error_kind or ("in_doubt" if again else None),
                error_message=found.reason if found.error_kind or again else None,
                detail=evidence_detail(evidence),
                **({"next_attempt_at": func.now() + again} if again else {}),
            )
        log.warning(
            "batch %s reconciled -> %s: %s",
            batch.id,
            status if moved else "nothing (it changed meanwhile)",
            found.reason,
            extra={"batch": batch.id, "target": batch.target, "status": str(status)},
        )
        done += 1
    return done
