"""The bugs ``tests.test_state_machine`` found, each pinned by a scenario that failed before its
fix: reconciliation matching phone2, a record queued twice breaking the COPY, a slow login pushing
a call out of its rate slot. Real Redis, PostgreSQL and the simulator over HTTP, with the
machine's settings (5 calls per 0.5 s window, 0.3 s timeouts)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from appendq.drain.tick import drain_once
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from producer.api import Producer
from tests.conftest import Sim
from tests.support.invariants import max_calls_in_window
from tests.support.poll import wait_until
from tests.test_state_machine import (
    CAMPAIGN,
    MARGIN_S,
    MAX_CALLS,
    TARGET,
    WINDOW_S,
    machine_settings,
)


@pytest.fixture
def config(database_url: str, prefix: str, sim: Sim) -> Settings:
    return machine_settings(database_url, prefix, sim)


@pytest.fixture
def rt(config: Settings) -> Iterator[Runtime]:
    runtime = Runtime.build(config)
    yield runtime
    runtime.close()


def _lost_answer_then_reconcile(
    rt: Runtime, sim: Sim, first: dict[str, Any], second: dict[str, Any]
) -> str:
    """Record 1 appended; record 2 answered 500 without being applied, then reconciled. Both
    go through the producer (phone1 dedupe). Returns record 2's status in the audit."""
    drainer = rt.drainer()
    producer = Producer(rt.queue, dedupe="phone1", tz=rt.settings.tz)
    assert producer.enqueue(TARGET, [first]).accepted == 1
    assert drain_once(drainer).outcome == "appended"
    sim.fault("append", {"status": 500})  # answered 500, nothing applied
    (second_id,) = producer.enqueue(TARGET, [second]).record_ids
    assert drain_once(drainer).outcome == "in_doubt"
    for _ in range(4):
        time.sleep(0.65)  # past the call deadline (0.3 + 0.3 + 0) and the rate window
        drain_once(drainer)
    with rt.sessions() as session:
        status = session.scalar(
            text(
                "SELECT coalesce(r.status, b.status) FROM records r"
                " JOIN batches b ON b.id = r.batch_id WHERE r.id = :id"
            ),
            {"id": second_id},
        )
    return str(status)


def test_in_doubt_record_of_an_account_already_holding_its_phone_is_not_taken_for_landed(
    rt: Runtime, sim: Sim
) -> None:
    # Given lead 1 (account X, phone1 home, phone2 mobile) appended, When lead 2 (account X,
    # phone1 mobile) meets a 500 that applied nothing and is reconciled, Then it is not found at
    # LiveVox (no transaction of X has mobile as phone1), is sent again, and LiveVox holds it.
    first = {"phone1": "212-310-0001", "phone2": "212-310-0002", "account": "X1"}
    second = {"phone1": "212-310-0002", "account": "X1"}
    assert _lost_answer_then_reconcile(rt, sim, first, second) == "appended"
    phones = [r["phone1"] for r in sim.records(CAMPAIGN)]
    assert phones == ["2123100001", "2123100002"], "appended in the audit, not at LiveVox"


def test_in_doubt_record_whose_phone_was_appended_as_phone2_is_not_taken_for_landed(
    rt: Runtime, sim: Sim
) -> None:
    # Given record 1 (phone1 P1, phone2 P2) appended, When record 2 (phone1 P2, no account)
    # meets a 500 that applied nothing and is reconciled, Then it is sent again.
    first = {"phone1": "212-320-0001", "phone2": "212-320-0002", "account": "Y1"}
    second = {"phone1": "212-320-0002"}
    assert _lost_answer_then_reconcile(rt, sim, first, second) == "appended"
    phones = [r["phone1"] for r in sim.records(CAMPAIGN)]
    assert phones == ["2123200001", "2123200002"], "appended in the audit, not at LiveVox"


def test_a_slow_login_before_the_put_does_not_squeeze_a_sixth_call_into_the_window(
    config: Settings, sim: Sim
) -> None:
    # Given the campaign cached by a worker that has since stopped, When a fresh worker (no
    # session yet) drains one-record batches and its first login takes 0.25 s (margin 0.1 s),
    # Then LiveVox still never sees more than MAX_CALLS appends in any WINDOW_S.
    sim.reset(rate_max_calls=MAX_CALLS, rate_window_s=WINDOW_S)
    cached = config.model_copy(update={"campaign_cache_s": 60.0, "batch_max": 1})
    producer_rt = Runtime.build(cached)
    producer_rt.queue.push(TARGET, [QueuedRecord(new_record_id(), time.time(), _lead(0))])
    drain_once(producer_rt.drainer())  # resolves and caches campaign 5001
    producer_rt.close()
    time.sleep(WINDOW_S + MARGIN_S)
    sim.admin.delete("/_admin/calls").raise_for_status()
    rt = Runtime.build(cached)
    try:
        rt.queue.push(
            TARGET, [QueuedRecord(new_record_id(), time.time(), _lead(i)) for i in range(1, 8)]
        )
        sim.fault("login", {"stall_s": 0.25})  # slower than the margin, within the timeout
        drainer = rt.drainer()

        def six_calls() -> bool:
            if len(sim.calls("append")) >= 6:
                return True
            if drain_once(drainer).outcome == "rate_limited":
                time.sleep(0.02)
            return False

        wait_until(six_calls, 10, "six Append calls", 0)
    finally:
        rt.close()
    times = [c["at"] for c in sim.calls("append")]
    assert max_calls_in_window(times, WINDOW_S) <= MAX_CALLS, [
        round(t - times[0], 3) for t in times
    ]


def _lead(i: int) -> dict[str, Any]:
    return {"phone1": f"212330{i:04d}", "account": f"Z{i}"}


def test_a_record_queued_twice_ends_the_tick_in_a_claim_conflict(rt: Runtime, sim: Sim) -> None:
    # Given a record appended, When the same record (same id) is queued again with a new one (a
    # push repeated after a lost answer), Then the tick reports a claim conflict, the next one
    # recovers the claim, and LiveVox gets the new record once and the old one never again.
    drainer = rt.drainer()
    old = QueuedRecord(new_record_id(), time.time(), _lead(1))
    rt.queue.push(TARGET, [old])
    assert drain_once(drainer).outcome == "appended"
    rt.queue.push(TARGET, [QueuedRecord(new_record_id(), time.time(), _lead(2)), old])
    time.sleep(WINDOW_S + MARGIN_S)
    report = drain_once(drainer)
    assert (report.outcome, report.reason) == ("waiting", "claim conflict")
    assert drain_once(drainer).outcome == "appended"
    assert [r["phone1"] for r in sim.records(CAMPAIGN)] == ["2123300001", "2123300002"]
