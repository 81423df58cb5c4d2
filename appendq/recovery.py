"""What each tick does before new work: put right what a crash or a lost answer left behind.

- claims left in Redis's in-flight lists (a crash between claim and persist) are persisted;
- batches left ``sending`` past the call deadline (the process died mid-call) become in_doubt;
- in_doubt batches whose call is long over are reconciled against LiveVox's transaction list.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, update

from appendq import store
from appendq.db.models import Batch, BatchStatus
from appendq.drainer import Drainer
from appendq.errors import Configuration, LiveVoxError
from appendq.reconcile import evidence_detail, gather, verdict
from appendq.store import BatchView

log = logging.getLogger(__name__)

DIED_MID_CALL = (
    "left sending past the call deadline: the process died during the call; the records may or "
    "may not have landed"
)
#: in_doubt batches reconciled per tick at most (each reads a transaction list).
RECONCILE_PER_TICK = 3


def recover_claims(d: Drainer) -> int:
    recovered = 0
    for target in d.queue.targets():
        if not d.redis.exists(d.keys.inflight(target)):
            continue
        claim = d.queue.claim(target, d.settings.batch_max)
        with d.sessions() as session:
            batch = store.persist_claim(session, claim, actor=d.actor)
        d.queue.ack(claim)
        recovered += batch.size if batch else 0
        log.warning(
            "recovered %d claimed records of %s (batch %s)",
            len(claim.records),
            target,
            batch.id if batch else "already persisted",
        )
    return recovered


def reap_sending(d: Drainer) -> None:
    with d.sessions() as session, session.begin():
        for batch_id in store.stale_sending(session, d.call_deadline):
            store.transition(
                session,
                batch_id,
                BatchStatus.IN_DOUBT,
                actor=d.actor,
                expect=[BatchStatus.SENDING],
                reason=DIED_MID_CALL,
                error_kind="in_doubt",
                error_message=DIED_MID_CALL,
            )


def _unreadable(d: Drainer, batch: BatchView, exc: LiveVoxError) -> None:
    """The transaction list can't be read. A configuration error (403, 404: nothing will change
    by itself) sets the batch aside for an operator; anything else sends it to the back of the
    reconciliation line, so one unreadable campaign never starves the others."""
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
                error_kind=store.OPERATOR_HOLD,
                error_message=reason,
            )
        else:
            session.execute(update(Batch).where(Batch.id == batch.id).values(updated_at=func.now()))
    log.warning(
        "batch %s: cannot read the transaction list: %s", batch.id, exc, extra={"batch": batch.id}
    )


def reconcile_due(d: Drainer) -> int:
    """Reconcile in_doubt batches whose call is over by a whole call deadline; returns how many."""
    with d.sessions() as session:
        due = store.in_doubt_due(session, d.call_deadline)[:RECONCILE_PER_TICK]
    done = 0
    for batch in due:
        if batch.campaign_id is None:
            continue
        with d.sessions() as session:
            records = store.batch_records(session, batch.id)
        try:
            evidence = gather(d.client, batch.campaign_id, records)
        except LiveVoxError as exc:
            _unreadable(d, batch, exc)
            continue
        status, reason, kind = verdict(batch, evidence)
        with d.sessions() as session, session.begin():
            store.transition(
                session,
                batch.id,
                status,
                actor=d.actor,
                reason=reason,
                expect=[BatchStatus.IN_DOUBT],
                error_kind=kind,
                error_message=reason if kind else None,
                detail=evidence_detail(evidence),
            )
        log.warning(
            "batch %s reconciled -> %s: %s",
            batch.id,
            status,
            reason,
            extra={"batch": batch.id, "target": batch.target, "status": str(status)},
        )
        done += 1
    return done
