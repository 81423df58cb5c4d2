"""The pure policies behind the unconfirmed corners, table-driven: how a transaction's phones are
read, how a refusal is read (by meaning, whatever its status), which records a refusal may name,
how reconciliation counts a key, when "none found" is believed, how long an in-doubt batch
waits, which campaign status words are appendable, and the API paths."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from appendq.batches.history import Calibration, KnownRecord
from appendq.batches.store import BatchView, RecordRef
from appendq.db.models import BatchStatus
from appendq.drain.isolate import refusal_shape, suspects
from appendq.drain.reconcile import Evidence, ListCounts, match, verdict
from appendq.drain.settle import in_doubt_wait_s
from appendq.errors import (
    AnswerLost,
    CampaignUnavailable,
    Forbidden,
    LiveVoxError,
    Named,
    RateLimited,
    Rejected,
)
from appendq.livevox.campaigns import choose
from appendq.livevox.classify import classify, named_in
from appendq.livevox.client import Campaign, LiveVoxClient, read_phones
from appendq.settings import Settings


@pytest.mark.parametrize(
    ("sources", "phones"),
    [
        ([[{"phone": "2125550001", "ordinal": 1}, {"phone": "2125550002", "ordinal": 2}]], 2),
        ([None, [{"phone": "2125550002", "ordinal": 2}, {"phone": "2125550001", "ordinal": 1}]], 2),
        ([None, ["2125550001", "2125550002"]], 2),
        (["2125550001"], 1),
        ([{"phoneNumber": "2125550001"}], 1),
        ([[{"ordinal": 1}], None, None], 0),
        ([[{"phone": "n/a"}]], 0),
        ([None, None, "2125550001"], 1),
        ([[True, 3.5, None]], 0),
    ],
)
def test_read_phones_accepts_every_plausible_shape(sources: list[Any], phones: int) -> None:
    # Given a transaction's phones under phone/phones/phone1, as objects or strings / When read
    # / Then phone1 is the lowest ordinal (else the first), and no digit means no phone.
    got = read_phones(*sources)
    assert len(got) == phones
    if phones:
        assert got[0] == "2125550001"


def _answer(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": 1, "message": message})


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, "campaign 5001 was not created with Allow Append", CampaignUnavailable),
        (403, "campaign 5001 is STOPPED: appends need one of READY, PAUSED", CampaignUnavailable),
        (404, "campaign 5001 not found", CampaignUnavailable),
        (409, "campaign 5001 is a requeue campaign", CampaignUnavailable),
        (
            400,
            "campaign 5001 is not one of today's campaigns (uploaded 2026-11-29)",
            CampaignUnavailable,
        ),
        (400, "Appends are not allowed for this client", CampaignUnavailable),
        (400, "campaign 5001 is of type 2 (Inbound): only Outbound appends", CampaignUnavailable),
        (400, "record 3: phone1 rejected", Rejected),
        (400, "phone 2125551234: invalid number", Rejected),
        (400, "invalid data", Rejected),
        (403, "role AGENT may not append records", Forbidden),
        (403, "rate limit: 6 calls in the last 60 s", RateLimited),
        (409, "Too many requests", RateLimited),
        (503, "rate limit exceeded", RateLimited),
        (503, "service unavailable", AnswerLost),
        (502, "bad gateway", AnswerLost),
    ],
)
def test_append_refusals_are_read_by_meaning(
    status: int, message: str, expected: type[LiveVoxError]
) -> None:
    # Given an Append answered with this status and message / When classified / Then by its
    # meaning first: about the campaign, the rate limit, or the records.
    assert type(classify(_answer(status, message), mutating=True)) is expected


@pytest.mark.parametrize(
    ("message", "numbers", "phones"),
    [
        ("record 17: extra1 too long", (17,), 0),
        ("records[4].phone1 invalid", (4,), 0),
        ("Invalid data in row 12", (12,), 0),
        ("phone 2125551234: rejected", (), 1),
        ("campaign 5001 is not today's (uploaded 2026-11-29)", (), 0),
        ("10001 records in one call", (), 0),
    ],
)
def test_named_in_reads_record_numbers_and_phones(
    message: str, numbers: tuple[int, ...], phones: int
) -> None:
    # Given a refusal's raw text / When read / Then the record numbers and phones it names.
    named = named_in(message)
    assert named.numbers == numbers and len(named.phones) == phones


def ref(position: int, phone1: str, account: str | None = None) -> RecordRef:
    return RecordRef(uuid.uuid4(), position, phone1, account)


def test_suspects_are_every_record_a_refusal_may_mean() -> None:
    # Given 5 records and refusals naming "record 2", "record 5", a phone, "record 0" / When
    # weighed / Then 2 -> index 2 (0-based) or 1 (1-based); 5 -> index 4 (1-based) only; the
    # phone -> its record; 0 -> index 0 (0-based) only.
    records = [ref(i, f"212555000{i}") for i in range(5)]
    assert suspects(records, Named((2,))) == {1: ["one"], 2: ["zero"]}
    assert suspects(records, Named((5,))) == {4: ["one"]}
    assert suspects(records, Named((), ("2125550003",))) == {3: ["phone"]}
    assert suspects(records, Named((0,))) == {0: ["zero"]}


def test_refusal_shape_ignores_numbers() -> None:
    # Given two refusals differing in numbers only / Then alike; another message / Then not.
    assert refusal_shape("Record 3: BAD  value") == refusal_shape("record 17: bad value")
    assert refusal_shape("record 3: bad value") != refusal_shape("campaign closed")


def counts(*transactions: tuple[str | None, str]) -> ListCounts:
    by_account: Counter[tuple[str | None, str]] = Counter()
    by_phone: Counter[str] = Counter()
    for account, phone in transactions:
        by_phone[phone] += 1
        if account:
            by_account[(account, phone)] += 1
    return ListCounts(by_account, by_phone, len(transactions))


P = "2125550199"


@pytest.mark.parametrize(
    ("listed", "known", "expect"),
    [
        # Alice (pinned target, appended) holds P; Bob (no account) is not in the list.
        ([("ALICE", P)], [KnownRecord(1, P, "ALICE", True)], "missing"),
        # Both landed: two transactions with P.
        ([("ALICE", P), (None, P)], [KnownRecord(1, P, "ALICE", True)], "present"),
        # Another in-doubt batch with P: one transaction could be either's.
        ([(None, P)], [KnownRecord(1, P, None, False)], "ambiguous"),
        # No other batch: the one transaction is Bob's.
        ([(None, P)], [], "present"),
    ],
)
def test_a_key_counts_only_past_what_other_batches_account_for(
    listed: list[tuple[str | None, str]], known: list[KnownRecord], expect: str
) -> None:
    # Given Bob (phone1 P, no account) and the list's transactions with P / When matched
    # against other batches' records with P / Then present only if the list shows more.
    bob = ref(0, P)
    present, missing, ambiguous = match(counts(*listed), [bob], known)
    got = {"present": present, "missing": missing, "ambiguous": ambiguous}
    assert got[expect] == [bob]


def view() -> BatchView:
    return BatchView(7, "service:1001", BatchStatus.IN_DOUBT, 1, 3, 5001, None, 2)  # type: ignore[arg-type]


def none_found(cal: Calibration | None, shown: bool) -> Evidence:
    records = [ref(i, f"212555000{i}") for i in range(3)]
    return Evidence([], records, 10, calibration=cal, calibrated=shown)


@pytest.mark.parametrize(
    ("cal", "shown", "status", "says"),
    [
        (None, False, BatchStatus.OPERATOR_HOLD, "no batch of this campaign answered 204"),
        (Calibration(3, 40.0, False), True, BatchStatus.READY, "sending again"),
        (Calibration(3, 40.0, True), True, BatchStatus.READY, "sent after this one"),
        (Calibration(3, 400.0, False), False, BatchStatus.OPERATOR_HOLD, "does not show batch 3"),
        (Calibration(3, 2.0, False), False, None, "looking again"),
    ],
)
def test_none_found_is_believed_only_when_calibrated(
    cal: Calibration | None, shown: bool, status: BatchStatus | None, says: str
) -> None:
    # Given none of a batch's records in the list / When judged with or without a calibration
    # batch shown in the same read / Then re-sent only when shown; held (or looked at again
    # while the calibration batch is young) otherwise, and the reason says why.
    got = verdict(view(), none_found(cal, shown), wait_s=70.0)
    assert got.status == status and says in got.reason


@pytest.mark.parametrize(
    ("status", "wait"),
    [(500, 5.0), (503, 5.0), (202, 5.0), (502, 70.0), (504, 70.0), (None, 70.0)],
)
def test_an_answered_5xx_waits_a_settle_a_lost_answer_the_deadline(
    status: int | None, wait: float
) -> None:
    # Given an Append whose answer was a 5xx / a gateway's / none / When settled / Then the
    # in-doubt batch waits the 5 s settle or the whole 70 s call deadline.
    settings = Settings()
    assert in_doubt_wait_s(AnswerLost("x", status=status), settings) == wait


def campaign(ident: int, status: str, type_id: int = 1) -> Campaign:
    return Campaign(ident, "c", type_id, 1001, status, ident)


@pytest.mark.parametrize(
    ("found", "states", "chosen"),
    [
        ([campaign(1, "ACTIVE"), campaign(2, "PAUSED")], Settings().livevox_appendable_states, 2),
        ([campaign(1, "ACTIVE")], Settings().livevox_appendable_states, 1),
        ([campaign(1, "PREBUILT"), campaign(2, "READY")], Settings().livevox_appendable_states, 2),
        ([campaign(1, "PREBUILT")], ["PLAYING", "READY"], None),
        ([campaign(1, "playing", type_id=2)], ["PLAYING"], None),
    ],
)
def test_appendable_status_words_are_a_setting(
    found: list[Campaign], states: list[str], chosen: int | None
) -> None:
    # Given today's campaigns with these status words / When chosen with this setting / Then
    # the preferred appendable outbound one, or none.
    best = choose(found, set(), states)
    assert (best.id if best else None) == chosen


@pytest.mark.parametrize(
    ("version", "path"),
    [("v6.0", "/session/v6.0/login"), ("", "/session/login"), ("/v7/", "/session/v7/login")],
)
def test_api_paths_never_carry_an_empty_segment(version: str, path: str) -> None:
    # Given APPENDQ_LIVEVOX_API_VERSION / When logging in and out / Then these paths (never //).
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"sessionId": "s"})

    settings = Settings(livevox_base_url="http://lv.test", livevox_api_version=version)
    with LiveVoxClient(settings, transport=httpx.MockTransport(answer)) as client:
        client.login()
    assert seen == [path, path.replace("login", "logout/s")]


def test_a_malformed_campaign_entry_skips_that_entry_not_the_page() -> None:
    # Given a search page with a good campaign, one without id and one with a null status /
    # When searched / Then the good one is returned, two skipped and counted.
    good = {"id": 1, "name": "a", "typeId": 1, "serviceId": 1001, "status": "Playing"}
    page = {"campaign": [good, {**good, "id": None}, {**good, "id": 2, "status": None}]}
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, json={"sessionId": "s"} if "login" in r.url.path else page)
    )
    settings = Settings(livevox_base_url="http://lv.test")
    with LiveVoxClient(settings, transport=transport) as client:
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        found = client.find_campaigns(service_id=1001, start=now, end=now)
        assert [(c.id, c.status) for c in found] == [(1, "PLAYING")]
        assert client.skipped_campaigns == 2


def test_an_unreadable_transaction_list_entry_has_no_phones() -> None:
    # Given a transactionList page with a readable entry, one without phones and one that is not
    # an object / When read / Then three transactions, the last two without phones.
    page = {
        "transaction": [
            {"account": "A", "phones": [{"phone": "2125550001", "ordinal": 1}]},
            {"account": "B"},
            "garbage",
        ]
    }
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, json={"sessionId": "s"} if "login" in r.url.path else page)
    )
    with LiveVoxClient(Settings(livevox_base_url="http://lv.test"), transport=transport) as c:
        got = list(c.transactions(5001))
    assert [t.phones for t in got] == [("2125550001",), (), ()]


def test_records_with_accounts_are_never_missing_when_their_phones_are_shown() -> None:
    # Given a calibrated list that shows every phone of an in-doubt batch whose records carry
    # accounts, but echoes no account (or another form of it), When it is weighed, Then those
    # records are ambiguous and the batch is held: never "none present", never sent again.
    import uuid
    from datetime import UTC, datetime

    from appendq.batches.history import Calibration, KnownRecord
    from appendq.batches.store import BatchView, RecordRef
    from appendq.db.models import BatchStatus
    from appendq.drain.reconcile import gather, verdict
    from appendq.livevox.client import Transaction

    class Client:
        def __init__(self, txs: list[Transaction]) -> None:
            self.txs = txs

        def transactions(self, campaign_id: int, /) -> list[Transaction]:
            return self.txs

    cal = [RecordRef(uuid.uuid4(), i, f"212555000{i}", None) for i in range(2)]
    mine = [RecordRef(uuid.uuid4(), i, f"212555010{i}", f"A{i}") for i in range(2)]
    known = [KnownRecord(1, r.phone1, None, True) for r in cal]
    for echoed in (None, "a0"):
        txs = [Transaction(None, echoed, (r.phone1,)) for r in cal + mine]
        evidence = gather(Client(txs), 5001, mine, known, (Calibration(1, 100.0, False), cal))
        assert evidence.missing == [] and len(evidence.ambiguous) == 2
        batch = BatchView(2, "service:1001", BatchStatus.IN_DOUBT, 1, 2, 5001, datetime.now(UTC))
        assert verdict(batch, evidence, wait_s=70).status == BatchStatus.OPERATOR_HOLD
