"""The dedupe's Lua against a real Redis: ``RecordQueue.push_deduped`` (first copy wins its key,
later ones are queued marked ``duplicate_of`` it, a retried call queues nothing twice, chunks of
5,000 in one step) and ``release_reservations`` (a key is given back only while it holds that
record's id). Redis only: a key prefix of the test's own."""

from __future__ import annotations

import pytest
import redis

from appendq.keys import Keys
from appendq.queue.dedupe import TTL_S, dedupe_key
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.queue.record_queue import RecordQueue
from tests.conftest import phone, queued

TARGET = "service:1001"
DAY = "2025-03-10"


def records(*phones: str) -> list[QueuedRecord]:
    return [QueuedRecord(new_record_id(), 1.7e9, {"phone1": p}) for p in phones]


def test_push_deduped_marks_later_copies_and_never_keys_a_record_without_one(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given five records: A, B, A again, and two without a dedupe key (None) / When pushed in
    # one call with a TTL of 90 s / Then the copy of A is queued marked duplicate_of A (its
    # position in the answer), the keyless ones both queued plain, the day's hash holds A and B
    # only and expires after the TTL, and the target is listed.
    recs = records(phone(0), phone(1), phone(0), phone(2), phone(2))
    fields = [dedupe_key(r.payload, "phone1") for r in recs[:3]] + [None, None]
    found = RecordQueue(redis_client, keys).push_deduped(TARGET, DAY, recs, fields, 90)
    assert found == [None, None, recs[0].id, None, None]
    stored = queued(redis_client, keys)
    assert [(r.id, r.duplicate_of) for r in stored] == [
        (recs[0].id, None),
        (recs[1].id, None),
        (recs[2].id, recs[0].id),
        (recs[3].id, None),
        (recs[4].id, None),
    ]
    assert stored[2].payload == recs[2].payload
    hashed = redis_client.hgetall(keys.dedupe(TARGET, DAY))
    assert hashed == {
        f"phone1:{phone(0)}".encode(): recs[0].id.encode(),
        f"phone1:{phone(1)}".encode(): recs[1].id.encode(),
    }
    assert 80 < redis_client.ttl(keys.dedupe(TARGET, DAY)) <= 90
    assert redis_client.smembers(keys.targets) == {TARGET.encode()}


def test_retried_push_skips_records_it_already_queued(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a push_deduped call applied by Redis whose answer was lost / When the same call is
    # made again (redis-py retries it) / Then its records are not duplicates of themselves and no
    # record to send is queued twice
    queue = RecordQueue(redis_client, keys)
    records = [QueuedRecord(new_record_id(), 1.7e9, {"phone1": phone(i)}) for i in range(3)]
    fields = [dedupe_key(r.payload, "phone1") for r in records]

    first = queue.push_deduped(TARGET, "2025-03-10", records, fields, TTL_S)
    again = queue.push_deduped(TARGET, "2025-03-10", records, fields, TTL_S)

    assert first == again == [None, None, None]
    assert [r.id for r in queued(redis_client, keys)] == [r.id for r in records]


def test_push_deduped_spans_chunks_in_one_step(redis_client: redis.Redis, keys: Keys) -> None:
    # Given 12,000 records where record 11,000 repeats record 10 / When pushed in one call (three
    # Lua chunks) / Then only that one is a duplicate, of record 10, and order is kept
    records = [QueuedRecord(new_record_id(), 1.7e9, {"phone1": phone(i)}) for i in range(12_000)]
    records[11_000] = QueuedRecord(new_record_id(), 1.7e9, {"phone1": phone(10)})
    fields = [dedupe_key(r.payload, "phone1") for r in records]

    found = RecordQueue(redis_client, keys).push_deduped(TARGET, "d", records, fields, TTL_S)

    assert [i for i, f in enumerate(found) if f is not None] == [11_000]
    assert found[11_000] == records[10].id
    stored = queued(redis_client, keys)
    assert [r.id for r in stored] == [r.id for r in records]
    assert stored[11_000].duplicate_of == records[10].id


def test_release_gives_back_only_keys_still_held_by_their_record(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given three records queued on two days, and the key of the third taken over by another
    # record since / When the three reservations (and one of a key never held) are released /
    # Then the two keys still held by their records are deleted, the others kept, and the count
    # says two.
    queue = RecordQueue(redis_client, keys)
    recs = records(phone(0), phone(1), phone(2))
    for rec, day in zip(recs, ("d1", "d1", "d2"), strict=True):
        queue.push_deduped(TARGET, day, [rec], [dedupe_key(rec.payload, "phone1")], TTL_S)
    redis_client.hset(keys.dedupe(TARGET, "d2"), f"phone1:{phone(2)}", "someone-else")
    released = queue.release_reservations(
        [
            (TARGET, "d1", f"phone1:{phone(0)}", recs[0].id),
            (TARGET, "d1", f"phone1:{phone(1)}", recs[1].id),
            (TARGET, "d2", f"phone1:{phone(2)}", recs[2].id),
            (TARGET, "d2", f"phone1:{phone(3)}", recs[2].id),
        ]
    )
    assert released == 2
    assert redis_client.hgetall(keys.dedupe(TARGET, "d1")) == {}
    assert redis_client.hgetall(keys.dedupe(TARGET, "d2")) == {
        f"phone1:{phone(2)}".encode(): b"someone-else"
    }
    again = queue.push_deduped(TARGET, "d1", records(phone(0)), [f"phone1:{phone(0)}"], TTL_S)
    assert again == [None]  # a corrected resubmission goes through


def test_push_deduped_refuses_what_it_cannot_key(redis_client: redis.Redis, keys: Keys) -> None:
    # Given records with fewer keys than records, or a record already marked a duplicate /
    # When pushed / Then refused before anything is queued; no records, nothing to do.
    queue = RecordQueue(redis_client, keys)
    recs = records(phone(0), phone(1))
    with pytest.raises(ValueError, match="1 dedupe keys for 2 records"):
        queue.push_deduped(TARGET, DAY, recs, [f"phone1:{phone(0)}"], TTL_S)
    marked = [QueuedRecord(new_record_id(), 1.7e9, {"phone1": phone(2)}, duplicate_of="x")]
    with pytest.raises(ValueError, match="decides duplicate_of itself"):
        queue.push_deduped(TARGET, DAY, marked, [f"phone1:{phone(2)}"], TTL_S)
    assert queue.push_deduped(TARGET, DAY, [], [], TTL_S) == []
    assert queued(redis_client, keys) == []


def test_release_gives_back_thousands_of_keys(redis_client: redis.Redis, keys: Keys) -> None:
    # Given 2,500 records queued (three chunks of the release script) / When all their
    # reservations are released / Then all 2,500 keys are given back.
    queue = RecordQueue(redis_client, keys)
    recs = records(*(phone(i) for i in range(2_500)))
    fields = [f"phone1:{r.payload['phone1']}" for r in recs]
    queue.push_deduped(TARGET, DAY, recs, fields, TTL_S)
    held = [(TARGET, DAY, f, r.id) for f, r in zip(fields, recs, strict=True)]
    assert queue.release_reservations(held) == 2_500
    assert redis_client.hlen(keys.dedupe(TARGET, DAY)) == 0
