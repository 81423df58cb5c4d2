"""Decisions that must hold whatever the timing: give-up rules, control characters at the door,
slot restamping, login refusals, unreadable transaction lists, operator retry attempts."""

from __future__ import annotations

import time

from pydantic import SecretStr
from sqlalchemy import select

from appendq import errors
from appendq.db.models import Batch, BatchStatus
from appendq.drain import halt
from appendq.drain.settle import settle
from appendq.drain.tick import drain_once
from appendq.leads import validate_record
from appendq.ops import retry
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim, batches, make_settings
from tests.support.batches import move, persist_claim


def leads(n: int) -> list[QueuedRecord]:
    return [
        QueuedRecord(
            new_record_id(), time.time(), {"phone1": f"212{4100000 + i:07d}", "account": f"P{i}"}
        )
        for i in range(n)
    ]


def test_connect_failures_never_fail_a_batch_other_transient_errors_do() -> None:
    # Given a batch past its attempt budget, When the last error proves nothing was sent, Then it
    # waits to retry (an outage must not let newer records overtake it); another transient error
    # fails it.
    settings = make_settings(retry_max_attempts=3, retry_base_s=1.0, retry_cap_s=4.0)
    not_sent = settle(errors.NotSent("connect refused"), attempts=50, settings=settings)
    other = settle(errors.Transient("login timed out"), attempts=3, settings=settings)
    assert not_sent.status == BatchStatus.RETRY_WAIT and not_sent.retry_after_s is not None
    assert 1.0 <= not_sent.retry_after_s <= 4.0
    assert other.status == BatchStatus.FAILED and "gave up after 3 attempts" in (other.reason or "")


def test_control_characters_are_refused_at_the_door() -> None:
    # Given a record with a NUL in a name and an escape in a phone2, When it is validated, Then
    # each field is refused (PostgreSQL's JSONB would refuse the NUL and stall the drain).
    _, errs = validate_record({"phone1": "2122345678", "firstName": "a\x00b"}, 0)
    assert [(e.field, e.message) for e in errs] == [
        ("firstName", "contains a control character (U+0000)")
    ]
    _, errs = validate_record({"phone1": "2122345678", "phone2": ["212\x1b2345679"]}, 1)
    assert [e.field for e in errs] == ["phone2[0]"]


def test_a_slot_is_restamped_when_the_call_ends(rt: Runtime) -> None:
    # Given a slot taken before a long call, When the call ends and the slot is restamped, Then the
    # window counts from the end of the call (Redis's clock), not from when the slot was taken;
    # while the call runs the slot is stamped a whole hold ahead, so it always counts.
    t0 = _redis_ms(rt)
    slot = rt.limiter.acquire()
    held = rt.redis.zscore(rt.keys.rate, slot.member)
    assert held is not None and held >= t0 + rt.limiter.hold_ms
    time.sleep(0.3)
    rt.limiter.restamp(slot)
    after = rt.redis.zscore(rt.keys.rate, slot.member)
    assert after is not None and t0 + 250 <= after < held
    assert rt.redis.zcard(rt.keys.rate) == 1


def _redis_ms(rt: Runtime) -> int:
    seconds, micros = rt.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_a_refused_login_halts_appends_instead_of_retrying_every_tick(
    sim: Sim, settings: Settings
) -> None:
    # Given a wrong password, When ticks run with records waiting, Then the first tick's login is
    # refused and halts the account: later ticks make no login at all until the halt is lifted.
    bad = settings.model_copy(update={"livevox_password": SecretStr("wrong")})
    rt = Runtime.build(bad)
    try:
        rt.queue.push("service:1001", leads(2))
        first = drain_once(rt.drainer())
        assert first.outcome == "waiting" and "login" in (first.reason or "").lower()
        assert [drain_once(rt.drainer()).outcome for _ in range(3)] == ["halted"] * 3
        stopped = halt.current(rt.redis, rt.keys)
        assert stopped is not None and "configuration error" in stopped.reason
        assert len(sim.calls("login")) == 1
    finally:
        rt.close()


def test_an_unreadable_transaction_list_sets_the_batch_aside(sim: Sim, settings: Settings) -> None:
    # Given an in_doubt batch whose campaign's transaction list answers 403, When it is due for
    # reconciliation, Then it is held for an operator with the reason, not retried every tick.
    fast = settings.model_copy(
        update={
            "livevox_read_timeout_s": 0.5,
            "livevox_connect_timeout_s": 0.5,
            "call_grace_s": 0.0,
            "answered_settle_s": 0.5,
        }
    )
    rt = Runtime.build(fast)
    try:
        sim.fault("append", {"status": 500})
        sim.fault("transactions", {"status": 403}, times=5)
        rt.queue.push("service:1001", leads(2))
        assert drain_once(rt.drainer()).outcome == "in_doubt"
        time.sleep(1.1)
        drain_once(rt.drainer())
        (batch,) = batches(rt)
        assert batch.status == BatchStatus.OPERATOR_HOLD and batch.error_kind == "in_doubt"
        assert "transaction list can't be read" in (batch.error_message or "")
    finally:
        rt.close()


def test_operator_retry_gives_a_failed_batch_its_attempts_back(rt: Runtime) -> None:
    # Given a batch failed after its attempts, When an operator retries it, Then its attempt count
    # starts again, so one more transient error does not fail it at once.
    rt.queue.push("service:1001", leads(1))
    claim = rt.queue.claim("service:1001", 10)
    with rt.sessions() as session:
        view = persist_claim(session, claim, actor="test")
    assert view is not None
    with rt.sessions() as session, session.begin():
        move(session, view.id, BatchStatus.SENDING)
        move(session, view.id, BatchStatus.FAILED, actor="test", attempts=8)
    with rt.sessions() as session, session.begin():
        moved = retry.retry(
            session,
            retry.RetryFilter(batch_id=view.id),
            reason="LiveVox is back",
            actor="operator:test",
        ).moved
    assert [m.id for m in moved] == [view.id]
    with rt.sessions() as session:
        row = session.scalars(select(Batch)).one()
    assert (row.status, row.attempts) == (BatchStatus.READY, 0)


def test_a_call_answered_403_ends_the_tick(sim: Sim, rt: Runtime) -> None:
    # Given two targets with records and LiveVox answering 403 to the first call, When one tick
    # runs, Then it makes exactly one Append call: the second target waits for a later tick.
    rt.queue.push("service:1001", leads(1))
    rt.queue.push("campaign:5001", leads(1))
    sim.fault("append", {"status": 403})
    report = drain_once(rt.drainer())
    assert (report.outcome, report.called) == ("held", True)
    assert len(sim.calls("append")) == 1
