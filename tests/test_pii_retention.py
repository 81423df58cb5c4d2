"""Retention of personal data (issue #11): after APPENDQ_PII_RETENTION_DAYS the payloads of
finished batches are dropped, while the batches, their records' lookup columns and events stay
for the longer metadata retention; open batches keep theirs. Real PostgreSQL and Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from appendq.audit import timeline
from appendq.batches import prune, reads
from appendq.batches.store import BatchStore
from appendq.clock import utcnow
from appendq.crypto import PayloadUnreadable
from appendq.db.models import Batch, BatchStatus, Event, Record
from appendq.errors import InvalidValue
from appendq.ops.retry import RetryFilter, preview_retry, retry
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from tests.support.batches import move, persist_claim

S = BatchStatus
PATHS = {
    S.APPENDED: [S.SENDING, S.APPENDED],
    S.REJECTED: [S.SENDING, S.REJECTED],
    S.FAILED: [S.SENDING, S.FAILED],
    S.DRY_RUN: [S.DRY_RUN],
    S.HELD: [S.HELD],
    S.IN_DOUBT: [S.SENDING, S.IN_DOUBT],
    S.OPERATOR_HOLD: [S.SENDING, S.OPERATOR_HOLD],
}


def make_batch(rt: Runtime, status: BatchStatus, start: int, days_old: float) -> int:
    """A batch of two records with personal fields, moved to ``status``, last changed
    ``days_old`` days ago."""
    records = [
        QueuedRecord(
            new_record_id(),
            1.7e9,
            {"phone1": f"212{5550000 + start + i:07d}", "account": f"P{start + i}", "ssn": "1"},
        )
        for i in range(2)
    ]
    rt.queue.push("service:1001", records)
    claim = rt.queue.claim("service:1001", 10)
    with rt.sessions() as session:
        batch = persist_claim(session, claim)
    rt.queue.ack(claim)
    assert batch is not None
    then = utcnow() - timedelta(days=days_old)
    with rt.sessions() as session, session.begin():
        for step in PATHS[status]:
            move(session, batch.id, step, reason=f"test: {step}", campaign_id=5001)
        session.execute(
            update(Batch).where(Batch.id == batch.id).values(created_at=then, updated_at=then)
        )
    return batch.id


def payloads_left(rt: Runtime) -> dict[int, int]:
    """Records that still hold a payload, by batch."""
    with rt.sessions() as session:
        rows = session.execute(
            select(Record.batch_id, func.count())
            .where(Record.payload_enc.is_not(None))
            .group_by(Record.batch_id)
        )
        return {int(b): int(n) for b, n in rows}


def test_payloads_of_old_finished_batches_are_dropped_and_their_metadata_kept(
    rt: Runtime,
) -> None:
    # Given finished batches (appended, rejected, failed, dry_run) older than the personal-data
    # retention, open or held ones as old, and a recent appended one, When the payloads are
    # dropped (chunks of one batch), Then only the old finished batches lose them; every batch,
    # record (phone1, account, status) and event stays, and the audit still finds the records.
    finished = [S.APPENDED, S.REJECTED, S.FAILED, S.DRY_RUN]
    old_done = [make_batch(rt, s, 10 * i, 40) for i, s in enumerate(finished)]
    waiting = [S.HELD, S.IN_DOUBT, S.OPERATOR_HOLD]
    old_open = [make_batch(rt, s, 100 + 10 * i, 40) for i, s in enumerate(waiting)]
    recent = make_batch(rt, S.APPENDED, 200, 10)
    with rt.sessions() as session:
        events_before = session.scalar(select(func.count()).select_from(Event))
    cutoff = prune.cutoff_for(30)
    with rt.sessions() as session:
        assert prune.preview_drop(session, cutoff) == prune.DropReport(cutoff, 4, 8)
    done = prune.drop_personal_data(rt.sessions, cutoff, chunk=1)
    assert (done.batches, done.records) == (4, 8)
    assert payloads_left(rt) == {b: 2 for b in [*old_open, recent]}
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 8
        assert session.scalar(select(func.count()).select_from(Event)) == events_before
        assert session.scalar(select(func.count()).where(Record.payload_key.is_not(None))) == 8
        (found,) = timeline.find_records(session, account="P0")
        assert (found.status, found.batch_id) == ("appended", old_done[0])
        assert prune.preview_drop(session, cutoff) == prune.DropReport(cutoff, 0, 0)
    assert prune.drop_personal_data(rt.sessions, cutoff).batches == 0


def test_a_batch_without_its_payloads_is_never_sent_again(rt: Runtime) -> None:
    # Given a failed batch whose payloads were dropped, When an operator retries it, Then the
    # retry is refused naming the batch and the reason; a drain reading it never sends a part.
    failed = make_batch(rt, S.FAILED, 0, 40)
    prune.drop_personal_data(rt.sessions, prune.cutoff_for(30))
    with rt.sessions() as session, session.begin():
        version = session.scalar(select(Batch.version).where(Batch.id == failed))
        assert version is not None
        with pytest.raises(InvalidValue, match=f"batch {failed}: .*APPENDQ_PII_RETENTION_DAYS"):
            BatchStore(session, "ops").requeue(failed, version, "again", expect=[S.FAILED])
    with rt.sessions() as session, pytest.raises(PayloadUnreadable, match="dropped"):
        reads.batch_payloads(session, failed)
    with rt.sessions() as session:
        status = session.scalar(select(Batch.status).where(Batch.id == failed))
        dropped = session.scalar(select(reads.payload_dropped()).where(Batch.id == failed))
    assert status == S.FAILED and dropped is True


def test_a_retry_leaves_batches_without_payloads_out(rt: Runtime) -> None:
    # Given two failed batches, one of which lost its payloads to the retention, When an operator
    # previews and retries every failed batch, Then only the one that can still be sent is
    # shown and moved back to ready.
    gone = make_batch(rt, S.FAILED, 0, 40)
    prune.drop_personal_data(rt.sessions, prune.cutoff_for(30))
    kept = make_batch(rt, S.FAILED, 10, 40)
    where = RetryFilter(statuses=(S.FAILED,))
    with rt.sessions() as session, session.begin():
        assert [b.id for b in preview_retry(session, where)] == [kept]
        moved = retry(session, where, reason="LiveVox is back", actor="operator:ann").moved
    assert [b.id for b in moved] == [kept]
    with rt.sessions() as session:
        assert session.get(Batch, gone).status == S.FAILED  # type: ignore[union-attr]
