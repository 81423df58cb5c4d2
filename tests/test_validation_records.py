"""What a producer takes at the door (issue 7, defects 1, 11 and 14): ids within the BIGINT range
they are stored in, one-line printable text, finite numbers, dialable digits, a per-submission
phone budget and a bound on targets; against a real Redis with a key prefix of its own."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

import appendq.cli.enqueue  # noqa: F401  (registers the command)
from appendq.cli.app import main
from appendq.errors import InvalidValue, PhoneBudgetExceeded, TooManyTargets
from appendq.keys import Keys
from appendq.leads import validate_record
from appendq.queue.item import QueuedRecord
from appendq.queue.quota import TargetQuota
from appendq.queue.record_queue import RecordQueue
from appendq.target import ID_MAX, Target
from producer import Producer, parse_target
from tests.conftest import REDIS_URL, phone, queued

pytestmark = pytest.mark.usefixtures("keep_root_logging")

TARGET = "service:1001"
GOOD = {"phone1": phone(0)}


@pytest.fixture
def producer(redis_client: redis.Redis, keys: Keys) -> Producer:
    return Producer(RecordQueue(redis_client, keys), max_phones=100, max_targets=3)


def own_keys(client: redis.Redis, keys: Keys) -> list[bytes]:
    return list(client.scan_iter(match=keys.all_pattern))


# --- defect 1: ids within the column's range --------------------------------------------------


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ("service:9223372036854775808", "service"),
        ("campaign:9223372036854775808", "campaign"),
        ("service:0", "service"),
        (9223372036854775808, "service"),
        ("9223372036854775808", "service"),
        (0, "service"),
        (-1, "service"),
        ("campaign:" + "9" * 5000, "campaign"),
        ("service:²", "target"),
        ("service:-5", "target"),
        (True, "target"),
    ],
)
def test_out_of_range_or_odd_ids_are_refused_naming_the_field(given: Any, field: str) -> None:
    # Given an id a BIGINT cannot hold (or no id at all), When parsed as a target, Then
    # InvalidValue names the field, and its message fits on one line.
    with pytest.raises(InvalidValue) as caught:
        parse_target(given)
    assert caught.value.field == field
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_the_largest_bigint_is_a_valid_id() -> None:
    # Given 2**63-1, When parsed as service and campaign targets, Then both are accepted
    assert str(parse_target(ID_MAX)) == f"service:{ID_MAX}"
    assert Target.parse(f"campaign:{ID_MAX}").id == ID_MAX


def test_a_target_out_of_range_cannot_even_be_built() -> None:
    # Given Target built directly (as `appendq enqueue` does), When the id is past BIGINT, Then
    # InvalidValue: no code path can queue it.
    with pytest.raises(InvalidValue, match="service: 9223372036854775808 is out of range"):
        Target("service", ID_MAX + 1)


def test_enqueue_of_an_out_of_range_service_queues_nothing(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a good record for service 2**63, When enqueued through the API, Then InvalidValue
    # (service) and no Redis key at all: the drain never meets it.
    with pytest.raises(InvalidValue) as caught:
        producer.enqueue(f"service:{ID_MAX + 1}", [GOOD])
    assert caught.value.field == "service"
    assert own_keys(redis_client, keys) == []


def test_cli_enqueue_with_a_service_past_bigint_exits_2_and_queues_nothing(
    tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a good JSONL file, When `appendq enqueue f.jsonl --service 9223372036854775808`,
    # Then exit 2 with one error line naming --service, no traceback, nothing queued.
    path = tmp_path / "f.jsonl"
    path.write_text(json.dumps(GOOD) + "\n")
    env = {"APPENDQ_REDIS_URL": REDIS_URL, "APPENDQ_REDIS_PREFIX": keys.prefix}
    result = CliRunner(env=env).invoke(main, ["enqueue", str(path), "--service", str(ID_MAX + 1)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == [
        "Error: Invalid value for '--service': 9223372036854775808 is not in the range "
        "1<=x<=9223372036854775807."
    ]
    assert "Traceback" not in result.output
    assert own_keys(redis_client, keys) == []


# --- defect 14: what a record may contain -----------------------------------------------------

REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"extra1": float("inf")}, "extra1", "is not a finite number"),
    ({"totalAmount": float("-inf")}, "totalAmount", "is not a finite number"),
    ({"totalAmount": float("nan")}, "totalAmount", "is not a finite number"),
    ({"firstName": "Ann\x85"}, "firstName", "contains a line break (U+0085)"),
    ({"firstName": "Ann\x9b31m"}, "firstName", "contains a control character (U+009B)"),
    ({"extra2": "a\u2028b"}, "extra2", "contains a line break (U+2028)"),
    ({"extra2": "a\u2029b"}, "extra2", "contains a line break (U+2029)"),
    ({"extra3": "call back at\n4155550199"}, "extra3", "contains a line break (U+000A)"),
    ({"extra3": "a\r\nb"}, "extra3", "contains a line break (U+000D)"),
    ({"lastName": "Smith\tJr"}, "lastName", "contains a tab (U+0009)"),
    ({"account": "A\x00B"}, "account", "contains a control character (U+0000)"),
    ({"account": "A\x1b[2J"}, "account", "contains a control character (U+001B)"),
    ({"account": "A\x7f"}, "account", "contains a control character (U+007F)"),
    ({"extra4": "abc\u202eexe.txt"}, "extra4", "contains a bidirectional control (U+202E)"),
    ({"extra4": "x\ud800y"}, "extra4", "contains an unpaired surrogate (U+D800)"),
    ({"phone1": "1-800-FLOWERS"}, "phone1", "contains letters: a dialer needs digits"),
    ({"phone2": ["212-555-CALL"]}, "phone2[0]", "contains letters"),
    ({"phone1": "2125551234 x123"}, "phone1", "has an extension"),
    ({"phone1": "(212) 555-1234 ext. 12"}, "phone1", "has an extension"),
    ({"phone2": "2125550100;2125550101 #7"}, "phone2[1]", "has an extension"),
    ({"phone1": "212555\t1234"}, "phone1", "contains a tab"),
    # spreadsheet formulas: refused in every producer (README, "What a record may contain")
    ({"extra1": '=HYPERLINK("http://x.example","y")'}, "extra1", "starts with"),
    ({"extra2": "+SUM(A1:A2)"}, "extra2", "starts with"),
    ({"extra3": "-2+3+cmd|' /C calc'!A0"}, "extra3", "starts with"),
    ({"extra3": "@SUM(A1)"}, "extra3", "starts with"),
    # amounts are plain decimals; extra10/17/18 are in neither public client (README)
    ({"totalAmount": "$1,234.50"}, "totalAmount", "must be a plain decimal number"),
    ({"minimumPaymentAmount": 1e20}, "minimumPaymentAmount", "must be a plain decimal number"),
    ({"ssn": "123-45-67890"}, "ssn", "must be at most 9 digits"),
    ({"extra17": "x"}, "extra17", "is not among the fields"),
]


@pytest.mark.parametrize(("fields", "field", "message"), REFUSED)
def test_record_refusals_name_the_field_and_the_reason(
    fields: dict[str, Any], field: str, message: str
) -> None:
    # Given a record with one bad value, When validated, Then it is refused with one error naming
    # the record, the field and why (never echoing a full phone number).
    payload, errors = validate_record({**GOOD, **fields}, 7)
    assert payload is None
    assert [(e.index, e.field) for e in errors] == [(7, field)]
    assert errors[0].message.startswith(message), errors[0].message
    assert "2125551234" not in errors[0].message


ACCEPTED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    # text that only looks a little like a formula, amounts, an ssn with dashes
    (
        {"extra2": "- called twice (no answer)", "extra3": "@home"},
        {"extra2": "- called twice (no answer)", "extra3": "@home"},
    ),
    (
        {"totalAmount": "-12.50", "amountToSpeak": -3.5},
        {"totalAmount": "-12.50", "amountToSpeak": "-3.5"},
    ),
    ({"ssn": "123-45-6789"}, {"ssn": "123456789"}),
    ({"firstName": "  José Ünal 日本 \u200d  "}, {"firstName": "José Ünal 日本 \u200d"}),
    ({"lastName": "O\u2019Brien\u00a0Jr"}, {"lastName": "O\u2019Brien\u00a0Jr"}),
    ({"phone1": "+1 (212) 200-0000"}, {"phone1": "2122000000"}),
    (
        {"phone1": "\uff12\uff11\uff12\uff12\uff10\uff10\uff10\uff10\uff10\uff10"},
        {"phone1": "2122000000"},
    ),
    ({"phone1": "+44 20 7946 0958"}, {"phone1": "+442079460958"}),
]


@pytest.mark.parametrize(("fields", "expected"), ACCEPTED)
def test_record_values_that_pass_and_how(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    # Given a record with formula-like text, a negative amount, Unicode text or a formatted phone,
    # When validated, Then it is accepted and the value reaches LiveVox as shown.
    payload, errors = validate_record({**GOOD, **fields}, 0)
    assert errors == []
    assert payload is not None
    assert {k: payload[k] for k in expected} == expected


def test_an_unknown_field_name_is_never_echoed_raw_or_whole() -> None:
    # Given unknown field names holding a NUL, an escape and 100,000 characters, When validated,
    # Then each error names its field cut to 40 characters and quoted, never the raw text.
    raw = {**GOOD, "a\x00b": 1, "x\x1b[2J": 2, "k" * 100_000: 3}
    _, errors = validate_record(raw, 0)
    assert sorted(e.field for e in errors) == sorted(
        ["'a\\x00b'", "'x\\x1b[2J'", repr("k" * 40) + "..."]
    )
    assert all(e.message == "is not a LiveVox record field" for e in errors)


def test_json_infinity_and_overflow_are_refused_through_the_producer(producer: Producer) -> None:
    # Given records parsed from JSON holding Infinity, NaN and 1e400, When enqueued, Then each is
    # refused naming its index and field, and the good record still goes in.
    raws = json.loads(
        '[{"phone1": "2122000000"}, {"phone1": "2122000001", "extra1": Infinity},'
        ' {"phone1": "2122000002", "extra2": NaN}, {"phone1": "2122000003", "extra3": 1e400}]'
    )
    receipt = producer.enqueue(TARGET, raws)
    assert receipt.accepted == 1
    assert [(e.index, e.field) for e in receipt.errors] == [
        (1, "extra1"),
        (2, "extra2"),
        (3, "extra3"),
    ]


def test_nothing_with_a_forbidden_character_reaches_the_queue(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given one record per refused value plus a good one, When enqueued, Then only the good one
    # is queued, so no forbidden character can reach PostgreSQL or LiveVox.
    raws = [{**GOOD, **fields} for fields, _, _ in REFUSED] + [{"phone1": phone(1)}]
    receipt = producer.enqueue(TARGET, raws)
    assert receipt.accepted == 1
    assert receipt.rejected == len(REFUSED)
    assert [r.payload for r in queued(redis_client, keys, TARGET)] == [{"phone1": phone(1)}]


# --- the per-submission phone budget ----------------------------------------------------------


def test_a_submission_over_the_phone_budget_is_refused_before_validation(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a budget of 100 phones and 4 records of 1 + 29 phones (120), some of them invalid,
    # When enqueued, Then PhoneBudgetExceeded counts them all, nothing is validated or queued.
    many = [phone(i) for i in range(1, 30)]
    raws: list[Any] = [{"phone1": phone(0), "phone2": many} for _ in range(3)]
    raws.append({"phone1": "bad", "phone2": ";".join(many)})
    with pytest.raises(PhoneBudgetExceeded) as caught:
        producer.enqueue(TARGET, raws)
    assert (caught.value.phones, caught.value.limit) == (120, 100)
    assert "APPENDQ_INTAKE_MAX_PHONES" in str(caught.value)
    assert own_keys(redis_client, keys) == []


def test_a_submission_at_the_phone_budget_goes_in(producer: Producer) -> None:
    # Given a budget of 100 phones, When 50 records of 2 phones are enqueued, Then all go in
    raws = [{"phone1": phone(2 * i), "phone2": [phone(2 * i + 1)]} for i in range(50)]
    assert producer.enqueue(TARGET, raws).accepted == 50


def test_the_bounds_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given APPENDQ_MAX_TARGETS=9, When a producer is connected, Then it carries that bound and
    # no phone budget (a program decides its own batches); the HTTP intake passes
    # APPENDQ_INTAKE_MAX_PHONES (test_http_errors::test_phone_budget_is_413_before_validation).
    from appendq.settings import Settings
    from producer import connect

    monkeypatch.setenv("APPENDQ_MAX_TARGETS", "9")
    with connect(Settings()) as made:
        assert (made.max_phones, made.quota.bound) == (None, 9)
    with connect(Settings(), max_phones=7) as made:
        assert made.max_phones == 7


# --- defect 11: a bound on targets ------------------------------------------------------------


def test_a_new_target_past_the_bound_is_refused_and_existing_ones_keep_working(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a bound of 3 targets, all 3 holding queued records, When a fourth is submitted,
    # Then TooManyTargets names "campaign", nothing is queued for it, and the three still take
    # records.
    for i, target in enumerate(("service:1", "service:2", "campaign:3")):
        producer.enqueue(target, [{"phone1": phone(i)}])
    with pytest.raises(TooManyTargets) as caught:
        producer.enqueue("campaign:4", [{"phone1": phone(9)}])
    assert caught.value.field == "campaign"
    assert "APPENDQ_MAX_TARGETS" in str(caught.value)
    assert not redis_client.exists(keys.queue("campaign:4"))
    assert producer.enqueue("service:2", [{"phone1": phone(10)}]).accepted == 1
    assert sorted(producer.queue.targets()) == ["campaign:3", "service:1", "service:2"]


def test_an_idle_target_gives_its_place_to_a_new_one(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a bound of 3 and three targets, one of them drained to empty (claimed and acked)
    # and admitted longer ago than fresh_s, When a new target is submitted, Then the idle one
    # leaves the set and the new one goes in.
    producer.quota = TargetQuota(redis_client, keys, 3, fresh_s=1)
    for i, target in enumerate(("service:1", "service:2", "service:3")):
        producer.enqueue(target, [{"phone1": phone(i)}])
    claim = producer.queue.claim("service:2", 10)
    assert producer.queue.ack(claim)
    time.sleep(1.1)
    assert producer.enqueue("service:4", [{"phone1": phone(9)}]).accepted == 1
    assert producer.queue.targets() == ["service:1", "service:3", "service:4"]


def test_an_all_bad_submission_creates_no_target(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a full set of targets is not needed: When a new target gets only bad records, Then
    # no key is written at all (the quota is asked only when something is pushed).
    producer.enqueue("service:77", [{"phone1": "bad"}])
    assert own_keys(redis_client, keys) == []


def test_racing_producers_never_create_more_targets_than_the_bound(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a bound of 5 and 40 threads each admitting its own target at once, When they race,
    # Then exactly 5 are admitted and the set holds exactly those 5.
    quota = TargetQuota(redis_client, keys, 5)
    admitted: list[str] = []
    start = threading.Barrier(40)

    def attempt(i: int) -> None:
        target = f"service:{100 + i}"
        client = redis.Redis.from_url(REDIS_URL)
        mine = TargetQuota(client, keys, 5)
        start.wait()
        try:
            mine.admit(target)
            client.rpush(keys.queue(target), "x")  # busy: never pruned as idle
            admitted.append(target)
        except TooManyTargets:
            pass
        finally:
            client.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    members = sorted(m.decode() for m in redis_client.smembers(keys.targets))
    assert len(admitted) == 5
    assert members == sorted(admitted)
    quota.admit(admitted[0])  # an existing target is always admitted


def test_a_stream_to_a_refused_target_queues_nothing(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given 3 busy targets (the bound), When a file is streamed to a fourth, Then TooManyTargets
    # before any record is queued.
    for i in range(3):
        producer.enqueue(f"service:{i + 1}", [{"phone1": phone(i)}])
    rows = [(n + 2, {"phone1": phone(20 + n)}) for n in range(5)]
    with pytest.raises(TooManyTargets):
        producer.enqueue_stream("service:9", iter(rows), chunk=2)
    assert not redis_client.exists(keys.queue("service:9"))


def test_queued_record_round_trip_keeps_unicode(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given accepted Unicode text, When queued and read back, Then it is unchanged
    producer.enqueue(TARGET, [{**GOOD, "firstName": "Zoë 日本"}])
    (rec,) = queued(redis_client, keys, TARGET)
    assert QueuedRecord.loads(rec.dumps()).payload["firstName"] == "Zoë 日本"
