"""Dedupe: per target, per day in APPENDQ_TIMEZONE, on phone1 / account / off. Against a real Redis
(a key prefix of the test's own), and for the drain a real PostgreSQL and the simulator."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from appendq.audit import timeline
from appendq.drain.tick import drain_once
from appendq.keys import Keys
from appendq.queue.dedupe import TTL_S, day_of, dedupe_key, reservations
from appendq.queue.record_queue import RecordQueue
from appendq.runtime import Runtime
from appendq.settings import Settings
from producer import Producer, StreamItem, connect
from tests.conftest import REDIS_URL, Sim, phone, queued

TARGET = "service:1001"
CAMPAIGN = 5001  # the simulator's campaign of service 1001
NEW_YORK = ZoneInfo("America/New_York")


def formatted(i: int) -> str:
    """The same number as ``phone(i)``, written the way a person would."""
    digits = phone(i)
    return f"+1 ({digits[:3]}) {digits[3:6]}-{digits[6:]}"


class Clock:
    """A settable clock for the producer: dedupe days change without waiting for midnight."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def make_producer(redis_client: redis.Redis, keys: Keys) -> Callable[..., Producer]:
    def make(**options: Any) -> Producer:
        return Producer(RecordQueue(redis_client, keys), **options)

    return make


# --- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "mode", "key"),
    [
        ({"phone1": "2125551234", "account": "A17"}, "phone1", "phone1:2125551234"),
        ({"phone1": "2125551234", "account": "A17"}, "account", "account:A17"),
        ({"phone1": "2125551234", "account": "A17"}, "off", None),
        ({"phone1": "2125551234"}, "account", None),
        ({"phone1": "2125551234", "account": ""}, "account", None),
        ({"phone1": "2125551234", "account": None}, "phone1", "phone1:2125551234"),
    ],
)
def test_dedupe_key_per_mode(payload: dict[str, Any], mode: Any, key: str | None) -> None:
    # Given a payload / When keyed in a mode / Then phone1 or account (tagged with the mode), and
    # no key when off or when account mode meets a record without an account
    assert dedupe_key(payload, mode) == key


@pytest.mark.parametrize("mode", ["phone", "PHONE1", "", "none"])
def test_dedupe_key_refuses_an_unknown_mode(mode: Any) -> None:
    # Given a mode that is none of phone1/account/off / When a record is keyed / Then refused,
    # naming the modes (never a silent "no key": every record would go out)
    with pytest.raises(
        ValueError, match=r"unknown dedupe mode .*: use one of phone1, account, off"
    ):
        dedupe_key({"phone1": "2125551234", "account": "A17"}, mode)


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"phone1": "2125551234", "account": "A17"}, ["account:A17", "phone1:2125551234"]),
        ({"phone1": "2125551234"}, ["phone1:2125551234"]),
        ({"phone1": "2125551234", "account": ""}, ["phone1:2125551234"]),
    ],
)
def test_reservations_are_every_key_a_record_may_hold(
    payload: dict[str, Any], fields: list[str]
) -> None:
    # Given a record accepted under some mode (not stored) / When its reservations are listed /
    # Then the key of every mode that gives one, with its target, day and id
    got = reservations(payload, target=TARGET, day="2025-03-10", record_id="r1")
    assert got == [(TARGET, "2025-03-10", f, "r1") for f in fields]


def test_a_day_hash_outlives_its_day_and_is_gone_within_two() -> None:
    # Given the dedupe hash's lifetime / Then longer than the longest local day (25 h, when
    # clocks go back) with a margin for records pushed near midnight, and at most two days
    assert 25 * 3600 + 3600 <= TTL_S <= 2 * 24 * 3600


def test_day_is_taken_in_the_client_time_zone() -> None:
    # Given 03:59 and 04:01 UTC on one UTC day / When their day is taken in New York / Then they
    # fall on two days there, and a naive datetime is refused
    assert day_of(datetime(2025, 3, 10, 3, 59, tzinfo=UTC), NEW_YORK) == "2025-03-09"
    assert day_of(datetime(2025, 3, 10, 4, 1, tzinfo=UTC), NEW_YORK) == "2025-03-10"
    with pytest.raises(ValueError, match="aware"):
        day_of(datetime(2025, 3, 10, 4, 1), NEW_YORK)


def test_unknown_mode_is_refused_when_the_producer_is_built(
    make_producer: Callable[..., Producer],
) -> None:
    # Given a mistyped dedupe mode / When a Producer is built / Then it is refused at once
    with pytest.raises(ValueError, match="unknown dedupe mode 'phone'"):
        make_producer(dedupe="phone")


# --- the producer against Redis --------------------------------------------------------------


def test_duplicate_inside_one_submission_points_at_the_first(
    make_producer: Callable[..., Producer], redis_client: redis.Redis, keys: Keys
) -> None:
    # Given three records, the third the first's phone written differently / When enqueued / Then
    # two are accepted, the third is a duplicate of the first in the receipt and in Redis, in order
    receipt = make_producer().enqueue(
        TARGET, [{"phone1": phone(0)}, {"phone1": phone(1)}, {"phone1": formatted(0)}]
    )

    assert receipt.accepted == 2
    first, second = receipt.record_ids
    assert len(receipt.duplicates) == 1
    dup = receipt.duplicates[0]
    assert (dup.index, dup.row, dup.duplicate_of) == (2, None, first)
    stored = queued(redis_client, keys)
    assert [(r.id, r.duplicate_of) for r in stored] == [
        (first, None),
        (second, None),
        (dup.record_id, first),
    ]
    assert stored[2].payload == {"phone1": phone(0)}
    assert receipt.to_dict()["duplicate"] == 1
    assert receipt.to_dict()["duplicates"] == [
        {"index": 2, "row": None, "record_id": dup.record_id, "duplicate_of": first}
    ]


def test_duplicate_across_submissions_and_stream_rows(
    make_producer: Callable[..., Producer],
) -> None:
    # Given a phone accepted in one submission / When a file repeats it (streamed in chunks of 1)
    # / Then the repeat is a duplicate of the first submission's record, with its file row
    producer = make_producer()
    original = producer.enqueue(TARGET, [{"phone1": phone(5)}]).record_ids[0]
    items: list[StreamItem] = [(2, {"phone1": phone(6)}), (3, {"phone1": formatted(5)})]

    receipt = producer.enqueue_stream(TARGET, items, chunk=1)

    assert receipt.accepted == 1
    assert [(d.index, d.row, d.duplicate_of) for d in receipt.duplicates] == [(1, 3, original)]


def test_account_mode_dedupes_on_account_only(
    make_producer: Callable[..., Producer], redis_client: redis.Redis, keys: Keys
) -> None:
    # Given account mode / When records repeat a phone with new accounts, repeat an account with a
    # new phone, and carry no account at all / Then only the repeated account is a duplicate
    clock = Clock(datetime(2025, 3, 10, 12, 0, tzinfo=UTC))
    receipt = make_producer(dedupe="account", clock=clock).enqueue(
        TARGET,
        [
            {"phone1": phone(0), "account": "A1"},
            {"phone1": phone(0), "account": "A2"},
            {"phone1": phone(1), "account": "A1"},
            {"phone1": phone(2)},
            {"phone1": phone(2)},
        ],
    )

    assert receipt.accepted == 4
    assert [(d.index, d.duplicate_of) for d in receipt.duplicates] == [(2, receipt.record_ids[0])]
    assert sorted(redis_client.hkeys(keys.dedupe(TARGET, "2025-03-10"))) == [
        b"account:A1",
        b"account:A2",
    ]


def test_off_mode_lets_every_copy_through(
    make_producer: Callable[..., Producer], redis_client: redis.Redis, keys: Keys
) -> None:
    # Given dedupe off / When the same phone is enqueued twice in two submissions / Then all
    # copies are accepted and no dedupe hash is written
    producer = make_producer(dedupe="off")
    receipts = [producer.enqueue(TARGET, [{"phone1": phone(0)}] * 2) for _ in range(2)]

    assert [(r.accepted, r.duplicates) for r in receipts] == [(2, []), (2, [])]
    assert len(queued(redis_client, keys)) == 4
    assert list(redis_client.scan_iter(match=f"{keys.prefix}:dedupe:*")) == []


def test_connect_takes_mode_and_time_zone_from_settings(keys: Keys) -> None:
    # Given settings with dedupe off and a Tokyo time zone / When connect() builds the producer /
    # Then it dedupes as told and picks days in Tokyo
    settings = Settings(
        redis_url=REDIS_URL, redis_prefix=keys.prefix, dedupe="off", timezone="Asia/Tokyo"
    )
    with connect(settings) as producer:
        receipt = producer.enqueue(TARGET, [{"phone1": phone(0)}] * 2)
        assert (producer.dedupe, producer.tz) == ("off", ZoneInfo("Asia/Tokyo"))
    assert (receipt.accepted, receipt.duplicates) == (2, [])


def test_different_targets_do_not_collide(make_producer: Callable[..., Producer]) -> None:
    # Given a phone accepted for service 1001 / When it is enqueued for service 1002 and for a
    # pinned campaign / Then it is accepted for each
    producer = make_producer()
    receipts = [
        producer.enqueue(target, [{"phone1": phone(0)}])
        for target in ("service:1001", "service:1002", "campaign:1001")
    ]

    assert [(r.accepted, r.duplicates) for r in receipts] == [(1, []), (1, []), (1, [])]


def test_next_day_in_the_time_zone_is_not_a_duplicate(
    make_producer: Callable[..., Producer], redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a phone accepted at 23:59 in New York (03:59 UTC) / When it comes again at 00:01 New
    # York time, the same UTC day / Then it is accepted, and a third copy that day is a duplicate
    # of the second; each day's hash expires after two days
    clock = Clock(datetime(2025, 3, 10, 3, 59, tzinfo=UTC))
    producer = make_producer(tz=NEW_YORK, clock=clock)
    first = producer.enqueue(TARGET, [{"phone1": phone(0)}])
    clock.now += timedelta(minutes=2)
    second = producer.enqueue(TARGET, [{"phone1": phone(0)}])
    third = producer.enqueue(TARGET, [{"phone1": phone(0)}])

    assert (first.accepted, second.accepted, third.accepted) == (1, 1, 0)
    assert third.duplicates[0].duplicate_of == second.record_ids[0]
    for day in ("2025-03-09", "2025-03-10"):
        assert TTL_S - 60 < redis_client.ttl(keys.dedupe(TARGET, day)) <= TTL_S
    assert [r.enqueued_at for r in queued(redis_client, keys)][1] == clock.now.timestamp()


def test_two_submissions_at_the_same_moment_let_each_phone_through_once(
    keys: Keys,
) -> None:
    # Given two producers on their own connections / When both submit the same 1,000 phones at
    # the same moment, in chunks of 50 so that their pushes interleave / Then exactly 1,000 are
    # accepted in total, one per phone, and each other copy is a duplicate of the accepted one
    raws = [{"phone1": phone(i)} for i in range(1_000)]
    start = threading.Barrier(2)
    receipts: list[Any] = [None, None]

    def submit(slot: int) -> None:
        conn = redis.Redis.from_url(REDIS_URL)
        try:
            producer = Producer(RecordQueue(conn, keys))
            items: list[StreamItem] = [(None, raw) for raw in raws]
            start.wait()
            receipts[slot] = producer.enqueue_stream(TARGET, items, chunk=50)
        finally:
            conn.close()

    threads = [threading.Thread(target=submit, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(r.accepted for r in receipts) == 1_000
    accepted_of = {}  # index -> id of the record accepted for that phone
    for receipt in receipts:
        duplicates = {d.index for d in receipt.duplicates}
        sent = [i for i in range(1_000) if i not in duplicates]
        accepted_of.update(zip(sent, receipt.record_ids, strict=True))
    assert len(accepted_of) == 1_000
    for receipt in receipts:
        for dup in receipt.duplicates:
            assert dup.duplicate_of == accepted_of[dup.index]


# --- through the drain -----------------------------------------------------------------------


def test_duplicate_is_audited_and_never_sent(sim: Sim, rt: Runtime, settings: Settings) -> None:
    # Given a submission of 3 records whose third repeats the first's phone / When the drain runs /
    # Then LiveVox gets 2 records in one call, and the audit shows the third as `duplicate` with a
    # reason naming the first
    producer = Producer(rt.queue, dedupe=settings.dedupe, tz=settings.tz)
    receipt = producer.enqueue(
        TARGET,
        [
            {"phone1": phone(0), "account": "A0"},
            {"phone1": phone(1), "account": "A1"},
            {"phone1": formatted(0), "account": "A2"},
        ],
    )
    report = drain_once(rt.drainer())

    assert (report.outcome, report.records) == ("appended", 2)
    assert [r["account"] for r in sim.records(CAMPAIGN)] == ["A0", "A1"]
    with rt.sessions() as session:
        found = timeline.find_records(session, phone=phone(0))
    found.sort(key=lambda f: f.account or "")
    assert [(f.account, f.status) for f in found] == [("A0", "appended"), ("A2", "duplicate")]
    assert found[1].record_id == receipt.duplicates[0].record_id
    assert found[1].reason == f"duplicate of {receipt.record_ids[0]}"


def test_batch_of_only_duplicates_closes_without_a_call(
    sim: Sim, rt: Runtime, settings: Settings
) -> None:
    # Given 2 records drained and appended / When the same 2 phones come again and a tick runs /
    # Then the batch of duplicates closes with no Append call, and the audit shows both duplicate
    producer = Producer(rt.queue, dedupe=settings.dedupe, tz=settings.tz)
    first = producer.enqueue(TARGET, [{"phone1": phone(0)}, {"phone1": phone(1)}])
    assert drain_once(rt.drainer()).outcome == "appended"
    again = producer.enqueue(TARGET, [{"phone1": phone(1)}, {"phone1": formatted(0)}])

    report = drain_once(rt.drainer())

    assert again.accepted == 0
    assert report.outcome == "empty"
    assert [c["records"] for c in sim.calls("append")] == [2]
    assert len(sim.records(CAMPAIGN)) == 2
    with rt.sessions() as session:
        found = timeline.find_records(session, batch_id=report.batch_id)
    got = {f.record_id: (f.status, f.reason) for f in found}
    assert got == {
        again.duplicates[0].record_id: ("duplicate", f"duplicate of {first.record_ids[1]}"),
        again.duplicates[1].record_id: ("duplicate", f"duplicate of {first.record_ids[0]}"),
    }
