"""The LiveVox client's calls over ``httpx.MockTransport``: campaign search, Append,
transactionList, paging on ``next``, and what the client logs (never a secret or a full phone)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from appendq.errors import AnswerLost, CampaignUnavailable, Transient
from appendq.livevox.client import Campaign, Transaction
from tests.support.livevox_fake import (
    APPEND_PATH,
    DAY,
    LIST_PATH,
    PASSWORD,
    PHONE,
    SEARCH_PATH,
    SESSION,
    SESSION_2,
    TOKEN,
    FakeLiveVox,
    campaign_json,
    ok,
    search_page,
    transaction_page,
)


def test_search_pages_with_offset_and_sends_epoch_ms() -> None:
    # Given 3 pages of 2, 2 and 1 campaigns / When find_campaigns(page_size=2) / Then 5 campaigns
    # from offsets 0, 2, 4 and a body with dateRange in epoch ms and the filters.
    pages = iter([search_page([1, 2], "/p2"), search_page([3, 4], "/p3"), search_page([5], "")])
    fake = FakeLiveVox(lambda r: next(pages, httpx.Response(200)))
    start = datetime(2024, 11, 28, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    end = start + timedelta(days=1) - timedelta(milliseconds=1)
    with fake.client() as client:
        found = client.find_campaigns(service_id=123, start=start, end=end, page_size=2)
    assert [c.id for c in found] == [1, 2, 3, 4, 5]
    assert found[0] == Campaign(1, "c1", 1, 123, "PLAYING", None)
    searches = fake.to(SEARCH_PATH)
    assert [r.url.params["offset"] for r in searches] == ["0", "2", "4"]
    assert {r.url.params["count"] for r in searches} == {"2"}
    assert all(r.method == "POST" for r in searches)
    assert json.loads(searches[0].content) == {
        "dateRange": {"from": 1732770000000, "to": 1732856399999},
        "service": {"service": [{"id": 123}]},
        "type": {"type": [{"id": 1}]},
        "state": ["READY", "PAUSED", "PLAYING"],
    }


def test_search_stops_on_empty_next_even_when_page_is_full() -> None:
    # Given a full page whose next is absent / When searching / Then no further page is asked for.
    fake = FakeLiveVox(lambda r: httpx.Response(200, json={"campaign": [campaign_json(1)]}))
    with fake.client() as client:
        found = client.find_campaigns(service_id=None, start=DAY, end=DAY, page_size=1)
    assert [c.id for c in found] == [1]
    assert len(fake.to(SEARCH_PATH)) == 1
    assert "service" not in json.loads(fake.to(SEARCH_PATH)[0].content)


def search_entry(ident: int, **fields: object) -> dict[str, object]:
    return {"id": ident, "name": f"c{ident}", "typeId": 1, "serviceId": 123, **fields}


def test_search_reads_state_alias_and_upload_date() -> None:
    # Given entries with "state" (not "status") in any case, an uploadDate, one without an id /
    # When searching / Then the status upper-cased, the upload date read, the id-less one skipped.
    entries = [
        search_entry(77, state=" paused ", uploadDate=1732811000000),
        {"name": "x", "typeId": 1, "serviceId": 5, "status": "PLAYING"},
    ]
    answer = httpx.Response(200, json={"campaign": entries})
    with FakeLiveVox(lambda r: answer).client() as client:
        found = client.find_campaigns(service_id=None, start=DAY, end=DAY)
        assert client.skipped_campaigns == 1
    assert found == [Campaign(77, "c77", 1, 123, "PAUSED", 1732811000000)]


def test_search_refuses_naive_datetimes() -> None:
    # Given a naive datetime / When searching / Then ValueError before any request.
    fake = FakeLiveVox(ok)
    with fake.client() as client, pytest.raises(ValueError):
        client.find_campaigns(service_id=1, start=datetime(2024, 11, 28), end=DAY)
    assert not fake.requests


def test_append_sends_compact_body_and_returns_elapsed() -> None:
    # Given records / When append() / Then one PUT of exactly the compact JSON of the records;
    # the seconds it took returned.
    records = [{"phone1": PHONE, "account": "A-1", "phone2": ["2125550000"], "city": "Zürich"}]
    fake = FakeLiveVox(ok)
    with fake.client() as client:
        elapsed = client.append(9001, records)
    (put,) = fake.to(APPEND_PATH)
    assert put.method == "PUT"
    body = json.dumps({"records": records}, separators=(",", ":"), ensure_ascii=False)
    assert put.content == body.encode()
    assert put.headers["Content-Type"] == "application/json"
    assert isinstance(elapsed, float) and elapsed >= 0


def test_append_refuses_no_records() -> None:
    # Given no records / When append() / Then ValueError, and no request (not even a login).
    fake = FakeLiveVox(ok)
    with fake.client() as client, pytest.raises(ValueError, match="no records"):
        client.append(9001, [])
    assert not fake.requests


def test_transactions_page_on_with_offset() -> None:
    # Given 3 pages of transactions (2, 2, 1, the last with no next) / When iterating
    # transactions(page_size=2) / Then 5 transactions from offsets 0, 2, 4, ids as text and
    # phones in ordinal order.
    def page(start: int, count: int, next_uri: str) -> httpx.Response:
        phones = [{"phone": "2125550002", "ordinal": 2}, {"phone": PHONE, "ordinal": 1}]
        items = [
            {"accountTransactionId": n, "account": f"A-{n}", "phone": phones}
            for n in range(start, start + count)
        ]
        return httpx.Response(200, json={"next": next_uri, "transaction": items})

    pages = iter([page(0, 2, "/n"), page(2, 2, "/n"), page(4, 1, "")])
    fake = FakeLiveVox(lambda r: next(pages, httpx.Response(200)))
    with fake.client() as client:
        got = list(client.transactions(9001, page_size=2))
    assert [t.transaction_id for t in got] == ["0", "1", "2", "3", "4"]
    assert got[0] == Transaction("0", "A-0", (PHONE, "2125550002"))
    listed = fake.to(LIST_PATH)
    assert [r.url.params["offset"] for r in listed] == ["0", "2", "4"]
    assert all(r.url.params["count"] == "2" for r in listed)


def test_transactions_follow_next_past_a_short_page() -> None:
    # Given pages of 2, 1 (short, but next set) and 2 (next empty) with page_size=3 / When
    # iterating transactions / Then all 5 are read, from offsets 0, 2, 3: only next ends paging.
    pages = iter(
        [transaction_page(0, 2, "/n"), transaction_page(2, 1, "/n"), transaction_page(3, 2, "")]
    )
    fake = FakeLiveVox(lambda r: next(pages, httpx.Response(204)))
    with fake.client() as client:
        got = list(client.transactions(9001, page_size=3))
    assert [t.transaction_id for t in got] == ["0", "1", "2", "3", "4"]
    assert [r.url.params["offset"] for r in fake.to(LIST_PATH)] == ["0", "2", "3"]


def test_search_follows_next_past_a_short_page() -> None:
    # Given a short first page with next set, then a last page / When find_campaigns(page_size=5)
    # / Then the second page is asked for too, at offset 1.
    pages = iter([search_page([1], "/p2"), search_page([2, 3], None)])
    fake = FakeLiveVox(lambda r: next(pages, httpx.Response(204)))
    with fake.client() as client:
        found = client.find_campaigns(service_id=123, start=DAY, end=DAY, page_size=5)
    assert [c.id for c in found] == [1, 2, 3]
    assert [r.url.params["offset"] for r in fake.to(SEARCH_PATH)] == ["0", "1"]


def test_empty_page_ends_paging_even_with_next_set() -> None:
    # Given a server that always sets next / When the listing runs dry / Then the empty page ends
    # it (no loop on offset that no longer moves).
    pages = iter([transaction_page(0, 2, "/n"), transaction_page(2, 0, "/n")])
    fake = FakeLiveVox(lambda r: next(pages, httpx.Response(204)))
    with fake.client() as client:
        got = list(client.transactions(9001, page_size=1000))
    assert len(got) == 2
    assert len(fake.to(LIST_PATH)) == 2


def test_endless_next_hits_the_page_cap_as_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a server whose every page holds a record and sets next, and a cap of 3 pages / When
    # iterating / Then Transient after exactly 3 pages, not an endless loop.
    monkeypatch.setattr("appendq.livevox.client.MAX_PAGES", 3)

    def endless(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":  # the logout on close
            return httpx.Response(204)
        return transaction_page(int(request.url.params["offset"]), 1, "/n")

    fake = FakeLiveVox(endless)
    with fake.client() as client, pytest.raises(Transient, match="3 pages"):
        list(client.transactions(9001, page_size=1))
    assert len(fake.to(LIST_PATH)) == 3


def _script_of_a_bad_day() -> FakeLiveVox:
    """A search answered 401 then a page, an Append refused with 409 echoing a phone, then every
    call lost (read timeout); the logout answered 200."""
    answers = iter(
        [
            httpx.Response(401),
            search_page([1], ""),
            httpx.Response(409, json={"code": 409, "message": f"phone {PHONE} refused"}),
        ]
    )

    def on_call(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(200)
        answer = next(answers, None)
        if answer is None:
            raise httpx.ReadTimeout("slow")
        return answer

    return FakeLiveVox(on_call, (SESSION, SESSION_2))


def test_no_secret_or_full_phone_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Given DEBUG logging everywhere (httpx too) / When login, search, a 401 re-login, a refused
    # append echoing a phone, a lost answer and a logout / Then no token, password, session id or
    # full phone number in any log line, while the calls themselves were logged.
    caplog.set_level(logging.DEBUG)
    client = _script_of_a_bad_day().client()
    client.find_campaigns(service_id=1, start=DAY, end=DAY)
    for expected in (CampaignUnavailable, AnswerLost):
        with pytest.raises(expected) as caught:
            client.append(9001, [{"phone1": PHONE}])
        logging.getLogger("test").warning("append failed: %s", caught.value)
    client.close()
    text = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    for secret in (TOKEN, PASSWORD, SESSION, SESSION_2, PHONE):
        assert secret not in text
    assert "logout/<session>" in caplog.text  # httpx's own request line, redacted
    for line in (
        f"POST {SEARCH_PATH} -> 401",  # every exchange of the session's flow, one line each
        f"session expired on POST {SEARCH_PATH}; logging in again",
        f"POST {SEARCH_PATH} -> 200",
        f"PUT {APPEND_PATH} -> 409",
        f"PUT {APPEND_PATH} failed after",
        "DELETE /session/v6.0/logout/<session> -> 200",
    ):
        assert line in caplog.text, line
    assert "******1234" in caplog.text
