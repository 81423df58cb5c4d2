"""The audit queries, timelines and retention against a real PostgreSQL database: batches are made
by the real store functions (and the real drain where a LiveVox call matters)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from appendq.audit import timeline
from appendq.batches import prune, reads
from appendq.batches.store import BatchStore
from appendq.clock import utcnow
from appendq.db.models import Batch, BatchStatus, Event, Record, RecordStatus
from appendq.drain.tick import drain_once
from appendq.ops import retry
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from tests.conftest import Sim, phone
from tests.support.batches import move, persist_claim

CAMPAIGN = 5001
#: How each test batch reaches its status, through the store's own transitions.
PATHS: dict[BatchStatus, list[BatchStatus]] = {
    BatchStatus.READY: [],
    BatchStatus.HELD: [BatchStatus.HELD],
    BatchStatus.APPENDED: [BatchStatus.SENDING, BatchStatus.APPENDED],
    BatchStatus.FAILED: [BatchStatus.SENDING, BatchStatus.FAILED],
    BatchStatus.REJECTED: [BatchStatus.SENDING, BatchStatus.REJECTED],
    BatchStatus.IN_DOUBT: [BatchStatus.SENDING, BatchStatus.IN_DOUBT],
    BatchStatus.RETRY_WAIT: [BatchStatus.SENDING, BatchStatus.RETRY_WAIT],
}
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def leads(n: int, start: int = 0, at: datetime = T0) -> list[QueuedRecord]:
    base = at.timestamp()
    return [
        QueuedRecord(
            new_record_id(), base + i, {"phone1": phone(start + i), "account": f"A{start + i}"}
        )
        for i in range(n)
    ]


def make_batch(
    rt: Runtime,
    status: BatchStatus,
    records: list[QueuedRecord],
    *,
    target: str = "service:1001",
    campaign: int = CAMPAIGN,
) -> int:
    """A batch of these records, persisted as the drain does, then moved to ``status``."""
    rt.queue.push(target, records)
    claim = rt.queue.claim(target, 10_000)
    with rt.sessions() as session:
        batch = persist_claim(session, claim, actor="worker@test")
    rt.queue.ack(claim)
    assert batch is not None
    with rt.sessions() as session, session.begin():
        for step in PATHS[status]:
            columns: dict[str, object] = {}
            if step == BatchStatus.SENDING:
                columns.update(campaign_id=campaign, attempts=1)
            if step not in (BatchStatus.SENDING, BatchStatus.APPENDED):
                columns["error_message"] = f"test says {step}"
            move(session, batch.id, step, actor="worker@test", reason=f"test: {step}", **columns)
    return batch.id


def batch_status(rt: Runtime, batch_id: int) -> BatchStatus:
    with rt.sessions() as session:
        value = session.scalar(select(Batch.status).where(Batch.id == batch_id))
    assert value is not None
    return value


def age(rt: Runtime, batch_id: int, days: float) -> None:
    """Make a batch look as if it was created and last changed ``days`` ago."""
    then = utcnow() - timedelta(days=days)
    with rt.sessions() as session, session.begin():
        session.execute(
            update(Batch).where(Batch.id == batch_id).values(created_at=then, updated_at=then)
        )


def ids(found: list[timeline.RecordAudit]) -> list[str]:
    return [r.record_id for r in found]


def test_each_filter_finds_exactly_its_records(rt: Runtime) -> None:
    # Given batches of two services, two campaigns and several statuses, When the auditor filters
    # by phone, account, record, batch, campaign, service, status and time, Then each returns
    # exactly the matching records, oldest first.
    a = leads(3, 0, T0)
    b = leads(2, 10, T0 + timedelta(hours=1))
    c = leads(2, 20, T0 + timedelta(hours=2))
    batch_a = make_batch(rt, BatchStatus.APPENDED, a)
    batch_b = make_batch(rt, BatchStatus.FAILED, b, target="service:1002", campaign=6001)
    make_batch(rt, BatchStatus.HELD, c, target="service:1002")
    with rt.sessions() as s:
        assert ids(
            timeline.find_records(s, phone=f"({phone(1)[:3]}) {phone(1)[3:6]}-{phone(1)[6:]}")
        ) == [a[1].id]
        assert ids(timeline.find_records(s, account="A11")) == [b[1].id]
        assert ids(timeline.find_records(s, record_id=c[0].id)) == [c[0].id]
        assert ids(timeline.find_records(s, batch_id=batch_b)) == [r.id for r in b]
        assert ids(timeline.find_records(s, campaign_id=CAMPAIGN)) == [r.id for r in a]
        assert ids(timeline.find_records(s, service_id=1002)) == [r.id for r in b + c]
        assert ids(timeline.find_records(s, status="failed")) == [r.id for r in b]
        assert ids(timeline.find_records(s, status=["held", "appended"])) == [r.id for r in a + c]
        window = timeline.find_records(
            s, since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2)
        )
        assert ids(window) == [r.id for r in b]
        assert ids(timeline.find_records(s, service_id=1002, status="held", limit=1)) == [c[0].id]
        assert timeline.find_records(s, batch_id=batch_a, status="failed") == []


def test_audit_shows_status_campaign_and_masked_phone(sim: Sim, rt: Runtime) -> None:
    # Given one record drained to LiveVox, When the auditor looks it up by its full phone, Then it
    # is appended with its campaign, the phone masked, and the timeline in the auditor's words.
    queued = leads(1, 5)
    rt.queue.push("service:1001", queued)
    assert drain_once(rt.drainer()).outcome == "appended"
    with rt.sessions() as s:
        (rec,) = timeline.find_records(s, phone=phone(5))
    assert (rec.status, rec.campaign_id, rec.batch_status) == ("appended", CAMPAIGN, "appended")
    assert rec.phone1 == "******0005" and phone(5) not in str(rec.to_dict())
    assert [t.step for t in rec.timeline] == ["queued", "batched", "sent", "appended"]
    assert rec.timeline[2].detail == {"campaign": CAMPAIGN, "records": 1}


def test_timeline_shows_operator_retry_with_who_and_why(sim: Sim, rt: Runtime) -> None:
    # Given a failed batch, When an operator retries it and the next drain appends it, Then each
    # record's timeline reads queued, batched, sent, failed, retried (who, why), sent, appended.
    batch_id = make_batch(rt, BatchStatus.FAILED, leads(2))
    with rt.sessions() as s, s.begin():
        moved = retry.retry(
            s, retry.RetryFilter(batch_id=batch_id), reason="LiveVox fixed", actor="operator:ann"
        ).moved
    assert [m.id for m in moved] == [batch_id]
    assert drain_once(rt.drainer()).outcome == "appended"
    with rt.sessions() as s:
        rec = timeline.find_records(s, batch_id=batch_id)[0]
    steps = [t.step for t in rec.timeline]
    assert steps == ["queued", "batched", "sent", "failed", "retried", "sent", "appended"]
    retried = rec.timeline[4]
    assert (retried.actor, retried.reason) == ("operator:ann", "LiveVox fixed")
    assert retried.detail is not None and retried.detail["from"] == "failed"


def test_a_duplicate_shows_its_own_status_and_is_never_sent(rt: Runtime) -> None:
    # Given a record queued as a duplicate in a batch that was then appended, When the auditor
    # filters by status duplicate, Then it alone is found, its timeline ends at "duplicate".
    first, copy = leads(2)
    copy = QueuedRecord(copy.id, copy.enqueued_at, first.payload, duplicate_of=first.id)
    make_batch(rt, BatchStatus.APPENDED, [first, copy])
    with rt.sessions() as s:
        (dup,) = timeline.find_records(s, status="duplicate")
        (sent,) = timeline.find_records(s, status="appended")
    assert (dup.record_id, sent.record_id) == (copy.id, first.id)
    assert [t.step for t in dup.timeline] == ["queued", "batched", "duplicate"]
    assert dup.reason == f"duplicate of {first.id}"
    assert [t.step for t in sent.timeline][-1] == "appended"


def test_record_events_join_the_timeline_and_end_it_once_set_apart(rt: Runtime) -> None:
    # Given a batch whose record 1 LiveVox refused (set apart with a record event) and which then
    # went out without it, When the auditor looks at both, Then the refused one's timeline ends with
    # its own "rejected" event and the other's goes on to appended.
    batch = make_batch(rt, BatchStatus.READY, leads(2))
    with rt.sessions() as s, s.begin():
        move(s, batch, BatchStatus.SENDING, actor="w", campaign_id=CAMPAIGN)
        refused = reads.batch_records(s, batch)[1]
        BatchStore(s, "w").set_record_apart(batch, refused.id, RecordStatus.REJECTED, "bad phone")
        move(s, batch, BatchStatus.READY, actor="w", reason="record 1 set apart")
    with rt.sessions() as s, s.begin():
        move(s, batch, BatchStatus.SENDING, actor="w")
        move(s, batch, BatchStatus.APPENDED, actor="w")
    with rt.sessions() as s:
        (bad,) = timeline.find_records(s, status="rejected")
        (good,) = timeline.find_records(s, batch_id=batch, status="appended")
    assert bad.record_id == str(refused.id) and bad.reason == "bad phone"
    assert [(t.step, t.scope) for t in bad.timeline][-1] == ("rejected", "record")
    assert [t.step for t in bad.timeline] == ["queued", "batched", "sent", "rejected"]
    assert [t.step for t in good.timeline][-3:] == ["requeued", "sent", "appended"]


def test_records_split_into_a_new_batch_keep_their_history(rt: Runtime) -> None:
    # Given a batch bisected after a content refusal (its second half moved to a new batch), When
    # the auditor looks up a moved record, Then its timeline starts in the first batch, shows the
    # split, and goes on in the new one.
    batch = make_batch(rt, BatchStatus.READY, leads(4))
    with rt.sessions() as s, s.begin():
        sent = move(s, batch, BatchStatus.SENDING, actor="w", campaign_id=CAMPAIGN)
        assert sent is not None
        child = BatchStore(s, "w").split_batch(sent, reads.batch_records(s, batch), "bisect")
        move(s, batch, BatchStatus.READY, actor="w", reason="split")
    with rt.sessions() as s:
        moved = timeline.find_records(s, account="A3")[0]
    assert moved.batch_id == child
    assert [(t.step, t.batch_id) for t in moved.timeline] == [
        ("queued", None),
        ("batched", batch),
        ("sent", batch),
        ("split", batch),
        ("rebatched", child),
    ]


def test_bad_questions_are_refused(rt: Runtime) -> None:
    # Given any database, When find_records gets no filter, a bad record id or an unknown status,
    # Then it raises ValueError with a message instead of scanning everything.
    with rt.sessions() as s:
        with pytest.raises(ValueError, match="at least one filter"):
            timeline.find_records(s)
        with pytest.raises(ValueError, match="not a record id"):
            timeline.find_records(s, record_id="nope")
        with pytest.raises(ValueError, match="unknown 'sent'"):
            timeline.find_records(s, status="sent")
        assert timeline.find_records(s, record_id=str(uuid.uuid4())) == []


def test_prune_deletes_only_old_finished_batches_in_chunks(rt: Runtime) -> None:
    # Given old appended/rejected/failed batches, an old held and an old in_doubt batch, and a
    # recent appended one, When prune runs with chunks of one batch, Then only the three old
    # finished batches go, with every record and event of theirs; the rest are untouched.
    old_done = [
        make_batch(rt, status, leads(2, 10 * i))
        for i, status in enumerate([BatchStatus.APPENDED, BatchStatus.REJECTED, BatchStatus.FAILED])
    ]
    old_open = [
        make_batch(rt, status, leads(2, 50 + 10 * i))
        for i, status in enumerate([BatchStatus.HELD, BatchStatus.IN_DOUBT])
    ]
    recent = make_batch(rt, BatchStatus.APPENDED, leads(2, 90))
    for batch_id in old_done + old_open:
        age(rt, batch_id, 40)
    age(rt, recent, 20)
    cutoff = prune.cutoff_for(30)
    with rt.sessions() as s:
        assert prune.preview_prune(s, cutoff) == prune.PruneReport(cutoff, 3, 6)
    done = prune.prune(rt.sessions, cutoff, chunk=1)
    assert (done.batches, done.records, done.events) == (3, 6, 9)
    with rt.sessions() as s:
        left = set(s.scalars(select(Batch.id)))
        assert left == {*old_open, recent}
        assert s.scalar(select(func.count()).select_from(Record)) == 6
        assert set(s.scalars(select(Event.batch_id))) == left
    assert prune.prune(rt.sessions, cutoff).batches == 0
