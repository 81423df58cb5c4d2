"""Fenced drains (issue "Fence every drain"): a drainer that lost the drain lock can never act on
what it read before, and a rate slot counts until its call has ended, whatever reads the log.
Real Redis, PostgreSQL and the simulator over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import select

from appendq.db.models import Batch, BatchStatus, Event
from appendq.drain.lease import DrainLease, LeaseLost
from appendq.drain.tick import DrainReport, drain_once
from appendq.keys import Keys
from appendq.livevox.ratelimit import RateLimiter
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim, batches
from tests.support.batches import move, persist_claim
from tests.support.poll import wait_until

CAMPAIGN = 5001


def leads(n: int, start: int) -> list[QueuedRecord]:
    return [
        QueuedRecord(
            new_record_id(),
            1.7e9 + start + i,
            {"phone1": f"212{4000000 + start + i:07d}", "account": f"F{start + i}"},
        )
        for i in range(n)
    ]


@pytest.fixture
def slow_reads(settings: Settings) -> Settings:
    """Reads may take 3 s (a stalled transaction list still answers); deadline 3.5 s."""
    return settings.model_copy(
        update={
            "livevox_connect_timeout_s": 0.5,
            "livevox_read_timeout_s": 3.0,
            "call_grace_s": 0.0,
        }
    )


@pytest.fixture
def two(slow_reads: Settings) -> Iterator[tuple[Runtime, Runtime]]:
    a, b = Runtime.build(slow_reads), Runtime.build(slow_reads)
    yield a, b
    a.close()
    b.close()


def in_doubt_after_a_calibrating_batch(rt: Runtime, sim: Sim) -> Batch:
    """Batch W appended with a 204 (it calibrates the list), then batch X in_doubt: its answer
    was lost and nothing landed. Returns X."""
    target = "service:1001"
    rt.queue.push(target, leads(2, 0))  # W
    assert drain_once(rt.drainer()).outcome == "appended"
    rt.queue.push(target, leads(3, 10))  # X
    sim.fault("append", {"drop": True, "apply": False})
    assert drain_once(rt.drainer()).outcome == "in_doubt"
    return batches(rt)[-1]


def test_a_drainer_that_lost_its_lease_cannot_apply_a_stale_verdict(
    sim: Sim, two: tuple[Runtime, Runtime]
) -> None:
    # Given batch X in_doubt (its answer lost, nothing landed) and drainer A reading X's
    # transaction list slowly, When A's lock expires mid-read and drainer B reconciles X, re-sends
    # it (it lands, the answer is lost again: X in_doubt again), Then A's stale "none landed" is
    # fenced off: X is never moved to ready by A, and LiveVox holds X's records exactly once.
    a, b = two
    x = in_doubt_after_a_calibrating_batch(a, sim)
    time.sleep(3.7)  # past X's call deadline: due for reconciliation
    sim.fault("transactions", {"stall_s": 2.8, "apply": True})  # A reads "none", slowly
    result: dict[str, DrainReport] = {}
    runner = threading.Thread(target=lambda: result.update(a=drain_once(a.drainer())))
    runner.start()
    time.sleep(0.8)  # A is inside the transaction list read
    a.redis.delete(a.keys.drain_lock)  # its lock expires (a frozen process, a long GC pause)
    sim.fault("append", {"drop": True, "apply": True})  # B's re-send lands, answer lost
    reports_b: list[DrainReport] = []

    def b_resent() -> bool:  # B's first read learns the list's lag; it re-sends once X is older
        reports_b.append(drain_once(b.drainer()))
        return reports_b[-1].outcome == "in_doubt"

    wait_until(b_resent, 5, "B's re-send of X, answer lost", 0.3, explain=lambda: f": {reports_b}")
    runner.join(10)
    assert result["a"].outcome in ("lease_lost", "waiting", "idle"), result["a"]
    with a.sessions() as session:
        row = session.get(Batch, x.id)
        assert row is not None and row.status == BatchStatus.IN_DOUBT
        sends = session.scalars(
            select(Event).where(Event.batch_id == x.id, Event.to_status == "sending")
        ).all()
    assert len(sends) == 2  # A's first send and B's re-send; A never sent it a third time
    for _ in range(3):  # X settles from B's in_doubt: all present -> appended
        time.sleep(3.7)
        drain_once(b.drainer())
    assert store_status(a, x.id) == BatchStatus.APPENDED
    accounts = [r["account"] for r in sim.records(CAMPAIGN)]
    assert sorted(accounts) == sorted([f"F{i}" for i in (0, 1, 10, 11, 12)])


def store_status(rt: Runtime, batch_id: int) -> BatchStatus:
    with rt.sessions() as session:
        row = session.get(Batch, batch_id)
        assert row is not None
        return row.status


def test_a_stale_writer_is_fenced_by_the_batch_version(rt: Runtime) -> None:
    # Given a batch read at version N, When another writer moves it away and back to the same
    # status, Then a transition fenced on N is refused, and one fenced on the new version passes.
    rt.queue.push("service:1001", leads(1, 40))
    claim = rt.queue.claim("service:1001", 10)
    with rt.sessions() as session:
        view = persist_claim(session, claim, actor="t")
    assert view is not None
    with rt.sessions() as session, session.begin():
        for to in (BatchStatus.HELD, BatchStatus.READY):
            move(session, view.id, to, actor="other")
    with rt.sessions() as session, session.begin():
        stale = move(session, view.id, BatchStatus.SENDING, actor="stale", version=view.version)
        assert stale is None
        fresh = move(session, view.id, BatchStatus.SENDING, actor="fresh", version=view.version + 2)
        assert fresh is not None and fresh.version == view.version + 3


def test_a_lost_lease_is_noticed_and_stops_the_holder(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a held lease renewed every third of its TTL, When its key is taken over by another
    # holder, Then the next renewal fails, ``lost`` is set and ``check`` raises; a lease that
    # keeps its key stays held past several TTLs.
    kept = DrainLease(redis_client, keys.drain_lock, 1.0)
    assert kept.acquire()
    time.sleep(2.5)  # 2.5 TTLs: renewed, still ours
    assert not kept.lost and redis_client.get(keys.drain_lock) is not None
    assert not DrainLease(redis_client, keys.drain_lock, 1.0).acquire()
    redis_client.set(keys.drain_lock, b"someone-else")
    time.sleep(0.8)
    assert kept.lost
    with pytest.raises(LeaseLost):
        kept.check()
    kept.release()
    assert redis_client.get(keys.drain_lock) == b"someone-else"  # never deletes another's lock


def _limiter(client: redis.Redis, keys: Keys, *, hold_s: float) -> RateLimiter:
    return RateLimiter(client, keys, max_calls=1, window_s=0.5, margin_s=0.0, hold_s=hold_s)


def test_a_slot_counts_until_its_call_ends_whatever_reads_the_log(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given one call per 0.5 s window and a call lasting 1.5 s (3 windows, past the key's old
    # two-window expiry), When /metrics-style budget reads run all through the call, Then no slot
    # is granted while the call runs, none for a window after it ended, and one right after that.
    limiter = _limiter(redis_client, keys, hold_s=1.0)
    slot = limiter.acquire()
    assert slot.granted
    granted_during = []
    with limiter.in_flight([slot]):
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            assert limiter.budget().remaining == 0
            probe = limiter.acquire()
            granted_during.append(probe.granted)
            time.sleep(0.05)
    assert not any(granted_during)
    assert not limiter.acquire().granted  # the call ended just now: a whole window to wait
    time.sleep(0.6)
    assert limiter.acquire().granted


def test_a_slot_of_a_killed_call_counts_for_its_whole_hold(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a slot whose worker died mid-call (never restamped), When a window has passed, Then
    # the slot still counts (it was stamped a whole hold ahead), and frees a window after that.
    limiter = _limiter(redis_client, keys, hold_s=1.0)
    assert limiter.acquire().granted
    time.sleep(0.7)
    refused = limiter.acquire()
    assert not refused.granted and 0.3 < refused.wait_s <= 1.0
    time.sleep(refused.wait_s + 0.05)
    assert limiter.acquire().granted


def test_a_slot_never_used_is_given_back(redis_client: redis.Redis, keys: Keys) -> None:
    # Given a slot granted to a drainer that then found its batch changed, When it releases the
    # slot, Then the next call may have it at once.
    limiter = _limiter(redis_client, keys, hold_s=5.0)
    slot = limiter.acquire()
    limiter.release(slot)
    assert limiter.acquire().granted


def test_a_fenced_off_refusal_splits_and_rejects_nothing(rt: Runtime) -> None:
    # Given batch X sent by drainer A at version N, then reaped by drainer B (in_doubt, N+1),
    # When A records its stale 400 naming record 2, Then nothing is split or set apart, the
    # report says "fenced", and X is still B's in_doubt batch with all its records.
    from appendq.drain.result import record_outcome
    from appendq.drain.settle import Outcome
    from appendq.drain.target import _claim
    from appendq.errors import Named

    rt.queue.push("service:1001", leads(6, 60))
    d = rt.drainer()
    batch = _claim(d, "service:1001")
    assert batch is not None
    with d.store() as store:
        sent = store.mark_sending(batch, 5001, "test", 6)
    assert sent is not None
    with rt.sessions() as session, session.begin():
        reaped = move(
            session,
            sent.id,
            BatchStatus.IN_DOUBT,
            actor="B",
            expect=[BatchStatus.SENDING],
            version=sent.version,
        )
        assert reaped is not None
    outcome = Outcome(
        BatchStatus.REJECTED, "record 2: bad field", "rejected", 400, named=Named((2,), ())
    )
    report = record_outcome(d, sent, 5001, outcome, 0.1, 6)
    assert report.outcome == "fenced"
    (only,) = batches(rt)
    assert only.status == BatchStatus.IN_DOUBT and only.size == 6
    with rt.sessions() as session:
        assert (
            session.scalars(select(Event.record_id).where(Event.record_id.is_not(None))).all() == []
        )
