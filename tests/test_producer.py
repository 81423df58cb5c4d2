"""The producer API and the file reader, against a real Redis with a key prefix of their own."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from appendq.errors import FieldError
from appendq.keys import Keys
from appendq.queue.record_queue import RecordQueue
from appendq.settings import Settings
from appendq.target import Target
from producer import (
    FILE_LEVEL,
    EnqueueInterrupted,
    Producer,
    Receipt,
    StreamItem,
    connect,
    parse_target,
)
from tests.conftest import REDIS_URL, phone, queued
from tests.support.procs import free_port

TARGET = "service:1001"


@pytest.fixture
def producer(redis_client: redis.Redis, keys: Keys) -> Producer:
    return Producer(RecordQueue(redis_client, keys))


def where(errors: list[FieldError]) -> list[tuple[int | None, str]]:
    return [(e.row, e.field) for e in errors]


# --- Producer.enqueue ------------------------------------------------------------------------


def test_mixed_submission_queues_good_records_in_order(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given 5 records, 2 bad / When enqueued / Then ids for the 3 good ones, in order in Redis
    records: list[dict[str, Any]] = [
        {"phone1": phone(0), "account": "A0"},
        {"phone1": "not a phone", "account": "A1"},
        {"phone1": phone(2), "account": "A2", "phone2": f"{phone(3)};{phone(4)}"},
        {"account": "A3", "shoeSize": "9"},
        {"phone1": f"+1 {phone(5)}", "account": "A4"},
    ]
    receipt = producer.enqueue(TARGET, records, rows=[2, 3, 4, 5, 6])

    assert receipt.target == TARGET
    assert receipt.accepted == 3
    assert receipt.rejected == 2
    assert len(set(receipt.record_ids)) == 3
    assert sorted(where(receipt.errors)) == [(3, "phone1"), (5, "phone1"), (5, "shoeSize")]
    stored = queued(redis_client, keys)
    assert [r.id for r in stored] == receipt.record_ids
    assert [r.payload["account"] for r in stored] == ["A0", "A2", "A4"]
    assert stored[1].payload["phone2"] == [phone(3), phone(4)]
    assert stored[2].payload["phone1"] == phone(5)
    assert all(abs(r.enqueued_at - time.time()) < 60 for r in stored)
    assert redis_client.sismember(keys.targets, TARGET)


def test_receipt_to_dict_is_json_ready(producer: Producer) -> None:
    # Given one good and one bad record / When enqueued / Then to_dict has the documented shape
    receipt = producer.enqueue(Target("campaign", 7), [{"phone1": phone(1)}, {"phone1": ""}])

    data = json.loads(json.dumps(receipt.to_dict()))
    assert data == {
        "account": "default",
        "target": "campaign:7",
        "accepted": 1,
        "duplicate": 0,
        "rejected": 1,
        "record_ids": receipt.record_ids,
        "duplicates": [],
        "errors": [{"index": 1, "row": None, "field": "phone1", "message": "is required"}],
    }


def test_all_bad_submission_touches_no_redis_key(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given only bad records / When enqueued / Then nothing is written, not even the target set
    receipt = producer.enqueue(TARGET, [{"phone1": "123"}, {}])

    assert (receipt.accepted, receipt.rejected, receipt.record_ids) == (0, 2, [])
    assert list(redis_client.scan_iter(match=keys.all_pattern)) == []


def test_error_messages_never_hold_a_full_phone_number(producer: Producer) -> None:
    # Given an invalid long phone number / When enqueued / Then the error shows only its last digits
    receipt = producer.enqueue(TARGET, [{"phone1": "0125550104"}])

    assert "0125550104" not in str(receipt.errors[0])
    assert receipt.errors[0].message == "'******0104' is not a valid phone number"


def test_rows_must_match_records(producer: Producer) -> None:
    # Given rows for 1 record and 2 records / When enqueued / Then it is refused as a caller error
    with pytest.raises(ValueError, match="rows"):
        producer.enqueue(TARGET, [{"phone1": phone(0)}, {"phone1": phone(1)}], rows=[2])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1001", "service:1001"), ("service:1001", "service:1001"), ("campaign:5", "campaign:5")],
)
def test_parse_target(text: str, expected: str) -> None:
    # Given a user's target / When parsed / Then a plain number means a service
    assert str(parse_target(text)) == expected


def test_parse_target_refuses_other_text() -> None:
    # Given a target of an unknown kind / When parsed / Then it is refused
    with pytest.raises(ValueError, match="service:ID or campaign:ID"):
        parse_target("list:3")


def test_connect_uses_settings_prefix(keys: Keys, redis_client: redis.Redis) -> None:
    # Given settings with a test prefix / When connect() enqueues / Then keys carry that prefix
    settings = Settings(redis_url=REDIS_URL, redis_prefix=keys.prefix)
    with connect(settings) as producer:
        receipt = producer.enqueue("1001", [{"phone1": phone(0)}])

    assert [r.id for r in queued(redis_client, keys)] == receipt.record_ids


# --- Producer.enqueue_stream -----------------------------------------------------------------


def test_stream_reads_no_further_than_one_chunk_ahead(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given 10,000 records read lazily / When streamed in chunks of 1,000 / Then at each push at
    # most one chunk was read ahead, and all 10,000 are queued in input order
    pulled = 0
    ahead: list[int] = []

    def items() -> Iterator[StreamItem]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i + 1, {"phone1": phone(i), "account": str(i)}

    receipt = producer.enqueue_stream(
        TARGET, items(), chunk=1_000, progress=lambda done: ahead.append(pulled - done)
    )

    assert receipt.accepted == 10_000
    assert max(ahead) <= 1_000
    assert len(ahead) == 10
    assert [r.payload["account"] for r in queued(redis_client, keys)] == [
        str(i) for i in range(10_000)
    ]


def test_stream_numbers_records_across_chunks(producer: Producer) -> None:
    # Given a file-level error and bad records across chunk boundaries / When streamed in chunks
    # of 2 / Then indexes run over the whole stream and the file-level error counts as no record
    items: list[StreamItem] = [
        (1, FieldError(FILE_LEVEL, "shoeSize", "is not a LiveVox record field", 1)),
        (2, {"phone1": phone(0)}),
        (3, {"phone1": "1"}),
        (4, FieldError(99, "record", "blank line", 4)),
        (5, {"phone1": phone(1)}),
        (6, {}),
    ]
    receipt = producer.enqueue_stream(TARGET, items, chunk=2)

    assert receipt.accepted == 2
    assert receipt.rejected == 3
    got = [(e.index, e.row, e.field) for e in receipt.errors]
    assert got == [(-1, 1, "shoeSize"), (1, 3, "phone1"), (2, 4, "record"), (4, 6, "phone1")]


def test_stream_reports_what_was_queued_when_reading_fails(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given input that fails after 5 records / When streamed in chunks of 2 / Then the
    # interruption says 4 were queued through row 5 and nothing is in doubt
    def items() -> Iterator[StreamItem]:
        for i in range(5):
            yield i + 2, {"phone1": phone(i)}
        raise OSError("disk gone")

    with pytest.raises(EnqueueInterrupted) as caught:
        producer.enqueue_stream(TARGET, items(), chunk=2)

    exc = caught.value
    assert exc.receipt.accepted == 4
    assert (exc.last_row, exc.in_doubt) == (5, None)
    assert "OSError: disk gone" in str(exc)
    assert [r.id for r in queued(redis_client, keys)] == exc.receipt.record_ids


def test_ctrl_c_during_a_stream_says_what_was_queued(producer: Producer) -> None:
    # Given Ctrl-C after 3 records / When streamed in chunks of 2 / Then KeyboardInterrupt still
    # propagates, with a note saying 2 records were queued through row 3
    def items() -> Iterator[StreamItem]:
        for i in range(3):
            yield i + 2, {"phone1": phone(i)}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        producer.enqueue_stream(TARGET, items(), chunk=2)

    assert caught.value.__notes__ == [
        "stopped (interrupted): 2 records queued for service:1001 (input through row 3); "
        "nothing after that was queued"
    ]


@pytest.fixture
def doomed_redis() -> Iterator[tuple[redis.Redis, subprocess.Popen[bytes]]]:
    """A throw-away redis-server of our own, so a test can kill it mid-stream."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    conn = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))
    for _ in range(100):
        try:
            conn.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield conn, server
    server.kill()
    server.wait()
    conn.close()


def test_stream_reports_rows_in_doubt_when_redis_dies(
    doomed_redis: tuple[redis.Redis, subprocess.Popen[bytes]],
) -> None:
    # Given Redis dies after the first chunk of 3 / When streaming 7 records / Then the receipt
    # covers the first chunk and the second chunk's rows are reported as in doubt
    conn, server = doomed_redis
    producer = Producer(RecordQueue(conn, Keys("appendq-test")))

    def items() -> Iterator[StreamItem]:
        for i in range(7):
            if i == 4:
                server.kill()
                server.wait()
            yield i + 2, {"phone1": phone(i)}

    with pytest.raises(EnqueueInterrupted) as caught:
        producer.enqueue_stream(TARGET, items(), chunk=3)

    exc = caught.value
    assert exc.receipt.accepted == 3
    assert exc.last_row == 4
    assert exc.in_doubt == ((3, 5), (5, 7))
    assert "rows 5-7 may or may not be queued" in str(exc)


def test_receipt_rejected_counts_records_not_errors() -> None:
    # Given two errors on one record and a file-level error / When counted / Then 1 rejected
    receipt = Receipt(
        TARGET,
        0,
        [],
        [
            FieldError(FILE_LEVEL, "x", "is not a LiveVox record field", 1),
            FieldError(0, "phone1", "is required", 2),
            FieldError(0, "email", "is not an e-mail address", 2),
        ],
    )
    assert receipt.rejected == 1
