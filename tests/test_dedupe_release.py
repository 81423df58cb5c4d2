"""A lead LiveVox rejects gives its dedupe key back (issue "Contain every bad input", defect 12):
the upstream system's corrected resubmission is sent, never made a duplicate of the rejected one.
Real Redis, PostgreSQL and the simulator over HTTP."""

from __future__ import annotations

from appendq.drain.tick import drain_once
from appendq.runtime import Runtime
from producer import Producer
from tests.conftest import Sim

POISON = "2125550199"


def producer(rt: Runtime) -> Producer:
    return Producer(rt.queue, dedupe="phone1", tz=rt.settings.tz)


def test_a_rejected_lead_can_be_resubmitted(sim: Sim, rt: Runtime) -> None:
    # Given a lead LiveVox refuses, in a batch with another (isolation proves it bad: refused
    # alone while the other was accepted, so it ends rejected), When the upstream system
    # resubmits it corrected (same phone1), Then it is accepted (not a duplicate) and appended.
    sim.reset(poison_phones=[POISON])
    first = producer(rt).enqueue(
        "service:1001", [{"phone1": POISON, "account": "BAD"}, {"phone1": "2125550198"}]
    )
    assert first.accepted == 2
    for _ in range(6):
        drain_once(rt.drainer())
    assert [r["phone1"] for r in sim.records(5001)] == ["2125550198"]
    sim.reset()  # the cause is fixed upstream
    again = producer(rt).enqueue("service:1001", [{"phone1": POISON, "account": "GOOD"}])
    assert again.accepted == 1 and again.duplicates == []
    assert drain_once(rt.drainer()).outcome == "appended"
    assert [r["account"] for r in sim.records(5001)] == ["GOOD"]


def test_a_record_set_apart_as_rejected_releases_only_its_own_key(sim: Sim, rt: Runtime) -> None:
    # Given a batch of three where LiveVox refuses one record, When it is set apart as rejected,
    # Then its key is released (a resubmission is accepted) while the two appended records keep
    # theirs (their resubmissions are duplicates).
    sim.reset(poison_phones=[POISON])
    receipt = producer(rt).enqueue(
        "service:1001",
        [{"phone1": "2125550101"}, {"phone1": POISON}, {"phone1": "2125550102"}],
    )
    assert receipt.accepted == 3
    for _ in range(6):
        drain_once(rt.drainer())
    assert sorted(r["phone1"] for r in sim.records(5001)) == ["2125550101", "2125550102"]
    again = producer(rt).enqueue(
        "service:1001", [{"phone1": "2125550101"}, {"phone1": POISON}, {"phone1": "2125550102"}]
    )
    assert again.accepted == 1 and len(again.duplicates) == 2


def test_a_key_now_held_by_another_record_is_not_released(rt: Runtime) -> None:
    # Given a dedupe key that a later record holds, When an older record's reservation of the
    # same key is released, Then the key stays with the later record.
    key = rt.keys.dedupe("service:1001", "2026-11-30")
    rt.redis.hset(key, "phone1:2125550101", "later-id")
    released = rt.queue.release_reservations(
        [("service:1001", "2026-11-30", "phone1:2125550101", "older-id")]
    )
    assert released == 0 and rt.redis.hget(key, "phone1:2125550101") == b"later-id"
    assert (
        rt.queue.release_reservations(
            [("service:1001", "2026-11-30", "phone1:2125550101", "later-id")]
        )
        == 1
    )
