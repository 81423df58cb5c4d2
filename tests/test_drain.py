"""The drain tick against real Redis, a real PostgreSQL database and the simulator over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from appendq.audit import timeline
from appendq.batches import reads
from appendq.clock import utcnow
from appendq.db.models import Batch, BatchStatus
from appendq.drain.tick import drain_once, take_tick
from appendq.ops.retry import RetryFilter, retry
from appendq.ops.status import collect
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim, make_settings
from tests.support.batches import move, persist_claim

CAMPAIGN = 5001


def leads(n: int, start: int = 0) -> list[QueuedRecord]:
    return [
        QueuedRecord(
            new_record_id(),
            1.7e9 + i,
            {"phone1": f"212{2000000 + start + i:07d}", "account": f"A{start + i}"},
        )
        for i in range(n)
    ]


def statuses(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as session:
        return reads.count_by_status(session)


def test_batches_go_out_in_fifo_order_within_the_batch_cap(
    sim: Sim, settings: Settings, prefix: str
) -> None:
    # Given 25 queued records and a batch cap of 10, When three ticks run, Then LiveVox holds the
    # 25 records once each, in enqueue order, from calls of 10, 10 and 5.
    rt = Runtime.build(settings.model_copy(update={"batch_max": 10}))
    try:
        queued = leads(25)
        rt.queue.push("service:1001", queued)
        reports = [drain_once(rt.drainer()) for _ in range(4)]
    finally:
        rt.close()
    assert [r.outcome for r in reports] == ["appended", "appended", "appended", "idle"]
    assert [r.records for r in reports[:3]] == [10, 10, 5]
    got = sim.records(CAMPAIGN)
    assert [r["account"] for r in got] == [q.payload["account"] for q in queued]
    assert [c["records"] for c in sim.calls("append")] == [10, 10, 5]


def test_audit_shows_each_record_appended_with_its_batch(sim: Sim, rt: Runtime) -> None:
    # Given 3 records drained, When the auditor looks one up by phone, Then it is appended, with its
    # batch, campaign and a timeline queued -> ready -> sending -> appended.
    queued = leads(3)
    rt.queue.push("service:1001", queued)
    report = drain_once(rt.drainer())
    with rt.sessions() as session:
        found = timeline.find_records(session, phone="(212) 200-0001")
    assert len(found) == 1
    rec = found[0]
    assert (rec.status, rec.batch_id, rec.campaign_id) == ("appended", report.batch_id, CAMPAIGN)
    assert rec.record_id == queued[1].id
    assert [t.status for t in rec.timeline] == ["queued", "ready", "sending", "appended"]
    assert rec.phone1 == "******0001"


def test_no_appendable_campaign_holds_then_sends_to_the_new_one(sim: Sim, rt: Runtime) -> None:
    # Given the service's campaign Stopped, When a tick runs, Then the records are held with the
    # reason (status and audit); When a new Playing campaign appears, Then they go there.
    sim.patch_campaign(CAMPAIGN, status="STOPPED")
    queued = leads(4)
    rt.queue.push("service:1001", queued)
    report = drain_once(rt.drainer())
    assert report.outcome == "held"
    assert "no appendable campaign" in (report.reason or "")
    info = collect(rt)
    (default,) = info["accounts"]
    row = next(t for t in default["targets"] if t["target"] == "service:1001")
    assert "no appendable campaign" in row["hold_reason"]
    with rt.sessions() as session:
        held = timeline.find_records(session, account="A2")[0]
    assert held.status == "held" and "no appendable campaign" in (held.reason or "")
    assert drain_once(rt.drainer()).outcome == "held"  # still none: stays held, nothing sent
    sim.create_second_campaign()
    report = drain_once(rt.drainer())
    assert (report.outcome, report.campaign_id) == ("appended", 5002)
    assert [r["account"] for r in sim.records(5002)] == [q.payload["account"] for q in queued]
    assert sim.calls("append") and all(c["campaignId"] == 5002 for c in sim.calls("append"))


def test_campaign_stopped_mid_run_is_refused_then_records_held(sim: Sim, rt: Runtime) -> None:
    # Given a campaign that was resolved and cached, When it turns Stopped before the next call,
    # Then the append is refused (409), the batch is re-resolved and held, nothing lost.
    rt.queue.push("service:1001", leads(2))
    assert drain_once(rt.drainer()).outcome == "appended"
    sim.patch_campaign(CAMPAIGN, status="STOPPED")
    rt.queue.push("service:1001", leads(2, start=2))
    outcomes = [drain_once(rt.drainer()).outcome for _ in range(2)]
    assert outcomes[-1] == "held"
    assert len(sim.records(CAMPAIGN)) == 2
    assert statuses(rt) == {"appended": 1, "held": 1}


def test_session_expiry_mid_run_logs_in_again_without_loss(sim: Sim, rt: Runtime) -> None:
    # Given a drained batch, When LiveVox expires every session, Then the next tick logs in again
    # and sends the next batch once; no record lost or sent twice.
    rt.queue.push("service:1001", leads(3))
    assert drain_once(rt.drainer()).outcome == "appended"
    sim.admin.post("/_admin/sessions/expire").raise_for_status()
    rt.queue.push("service:1001", leads(3, start=3))
    assert drain_once(rt.drainer()).outcome == "appended"
    accounts = [r["account"] for r in sim.records(CAMPAIGN)]
    assert accounts == [f"A{i}" for i in range(6)]
    assert len(sim.calls("login")) == 2


def test_rate_limit_holds_under_fast_ticks(sim: Sim, settings: Settings) -> None:
    # Given 5 calls per 3 s and 8 batches waiting, When ticks run back to back, Then the 6th tick
    # finds no slot, and LiveVox's own log never shows more than 5 appends in any 3 s.
    rt = Runtime.build(settings.model_copy(update={"batch_max": 1}))
    try:
        rt.queue.push("service:1001", leads(8))
        outcomes = [drain_once(rt.drainer()).outcome for _ in range(6)]
    finally:
        rt.close()
    assert outcomes == ["appended"] * 5 + ["rate_limited"]
    times = sorted(c["at"] for c in sim.calls("append"))
    assert all(later - earlier >= 3.0 for earlier, later in zip(times, times[5:], strict=False))


def test_a_claim_left_by_a_crash_is_persisted_first(sim: Sim, rt: Runtime) -> None:
    # Given records claimed into flight and never persisted (the process died), When the next tick
    # runs, Then they are recovered into a batch and sent before newer records.
    rt.queue.push("service:1001", leads(3))
    claim = rt.queue.claim("service:1001", 10)
    assert len(claim.records) == 3
    rt.queue.push("service:1001", leads(2, start=3))
    report = drain_once(rt.drainer())
    assert (report.outcome, report.records, report.recovered) == ("appended", 3, 3)
    drain_once(rt.drainer())
    assert [r["account"] for r in sim.records(CAMPAIGN)] == [f"A{i}" for i in range(5)]


def test_a_claim_persisted_but_not_acked_is_not_batched_twice(sim: Sim, rt: Runtime) -> None:
    # Given a claim persisted whose ack never ran, When the next tick recovers it, Then the
    # records' primary key keeps them in their first batch: one batch, sent once.
    rt.queue.push("service:1001", leads(3))
    claim = rt.queue.claim("service:1001", 10)
    with rt.sessions() as session:
        assert persist_claim(session, claim, actor="test") is not None
    drain_once(rt.drainer())
    assert statuses(rt) == {"appended": 1}
    assert len(sim.records(CAMPAIGN)) == 3


def test_a_batch_left_sending_becomes_in_doubt(sim: Sim, rt: Runtime) -> None:
    # Given a batch marked sending long ago (its process died mid-call), When a tick runs, Then the
    # reaper makes it in_doubt with a reason instead of leaving it or sending it again.
    rt.queue.push("service:1001", leads(2))
    claim = rt.queue.claim("service:1001", 10)
    with rt.sessions() as session:
        batch = persist_claim(session, claim, actor="test")
    rt.queue.ack(claim)
    assert batch is not None
    with rt.sessions() as session, session.begin():
        move(
            session,
            batch.id,
            BatchStatus.SENDING,
            actor="test",
            sent_at=utcnow() - timedelta(hours=1),
        )
    drain_once(rt.drainer())
    with rt.sessions() as session:
        row = session.scalars(select(Batch)).one()
    assert row.status == BatchStatus.IN_DOUBT
    assert "process died" in (row.error_message or "")
    assert sim.calls("append") == []


def test_operator_retry_sends_a_failed_batch_again(sim: Sim, rt: Runtime) -> None:
    # Given a failed batch, When an operator retries it with a reason, Then it is sent and the
    # audit shows who retried and why.
    rt.queue.push("service:1001", leads(2))
    claim = rt.queue.claim("service:1001", 10)
    with rt.sessions() as session:
        batch = persist_claim(session, claim, actor="test")
    rt.queue.ack(claim)
    assert batch is not None
    with rt.sessions() as session, session.begin():
        move(session, batch.id, BatchStatus.SENDING)
        move(session, batch.id, BatchStatus.FAILED)
    assert drain_once(rt.drainer()).outcome == "idle"
    with rt.sessions() as session:
        where = RetryFilter(batch_id=batch.id)
        assert retry(session, where, reason="LiveVox fixed", actor="op:ann").moved
        session.commit()
    assert drain_once(rt.drainer()).outcome == "appended"
    with rt.sessions() as session:
        rec = timeline.find_records(session, batch_id=batch.id)[0]
    assert any(t.actor == "op:ann" and t.reason == "LiveVox fixed" for t in rec.timeline)


def test_settings_refuse_limits_above_livevox() -> None:
    # Given settings above LiveVox's limits, When they are built, Then they are refused at start.
    with pytest.raises(ValueError, match="10000"):
        make_settings(batch_max=10_001)
    with pytest.raises(ValueError, match="at most 5"):
        make_settings(rate_max_calls=6)
    assert make_settings(database_url="postgresql://u@h/db").database_url.startswith(
        "postgresql+psycopg://"
    )


def test_one_drain_per_interval_whatever_the_ticks(rt: Runtime) -> None:
    # Given ticks piled up (or two beats), When several arrive at once, Then two drains go
    # through (a late tick caught up) and no more; once an interval (Redis's clock) has passed,
    # one more can, and only one; over many intervals, one drain per interval at most.
    import time

    drainer = rt.drainer()
    interval = rt.settings.drain_interval_s
    assert [take_tick(drainer) for _ in range(5)] == [True, True, False, False, False]
    time.sleep(interval * 1.05)
    assert [take_tick(drainer) for _ in range(3)] == [True, False, False]
    started, taken = time.monotonic(), 0
    while time.monotonic() - started < interval * 4:
        taken += take_tick(drainer)
        time.sleep(interval / 10)
    assert 3 <= taken <= 5  # ~4 intervals: one each (the burst was spent above)


def test_a_late_tick_is_not_lost_to_the_next_early_one(rt: Runtime) -> None:
    # The defect bench.accounts found: beat sends every account's tick at once and workers take
    # them in no set order, so one interval's tick is taken late and the next one early. The old
    # gate ("no drain within 0.9 interval of the last") refused the early one: a call lost. Given
    # an interval of 2 s, When a tick is taken and the next one 0.6 s later, Then both drain; a
    # third right after is refused (one per interval on average, two at most back to back).
    import dataclasses
    import time

    drainer = rt.drainer()
    slow = dataclasses.replace(
        drainer, settings=drainer.settings.model_copy(update={"drain_interval_s": 2.0})
    )
    assert take_tick(slow)
    time.sleep(0.6)
    assert take_tick(slow)
    assert not take_tick(slow)
