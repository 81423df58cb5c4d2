"""Narrow unit tests of the LiveVox client over ``httpx.MockTransport``.

End-to-end behaviour is tested against the real HTTP simulator elsewhere; these pin the client's
own contract: headers, session handling, paging, error classification and secret hygiene.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from appendq.errors import (
    AnswerLost,
    CampaignUnavailable,
    Configuration,
    Forbidden,
    LiveVoxError,
    LoginDenied,
    NotSent,
    RateLimited,
    Rejected,
    SessionExpired,
    Transient,
)
from appendq.livevox import Campaign, LiveVoxClient, Transaction, classify, classify_exception
from appendq.settings import Settings

TOKEN = "tok-7Hq2-SECRET"
PASSWORD = "pw-Zx9!-SECRET"
SESSION = "0f4c5d7e-2b1a-4c3d-9e8f-a1b2c3d4e5f6"
SESSION_2 = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
PHONE = "2125551234"
BASE = "http://livevox.test"
LOGIN_PATH = "/session/v6.0/login"
SEARCH_PATH = "/campaign/v6.0/campaigns/search"
APPEND_PATH = "/campaign/v6.0/campaigns/9001/transactions"
Handler = Callable[[httpx.Request], httpx.Response]


def _settings() -> Settings:
    return Settings(
        livevox_base_url=BASE,
        livevox_access_token=TOKEN,  # type: ignore[arg-type]  # pydantic coerces str -> SecretStr
        livevox_password=PASSWORD,  # type: ignore[arg-type]
        livevox_client_name="ACME",
        livevox_username="feeder",
        livevox_connect_timeout_s=1.5,
        livevox_read_timeout_s=7.0,
    )


class FakeLiveVox:
    """Answers login itself (scripted session ids); everything else goes to ``on_call``."""

    def __init__(self, on_call: Handler, sessions: tuple[str, ...] = (SESSION,)) -> None:
        self.on_call = on_call
        self.sessions = list(sessions)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == LOGIN_PATH:
            session = self.sessions.pop(0) if len(self.sessions) > 1 else self.sessions[0]
            return httpx.Response(200, json={"sessionId": session, "userId": 1, "clientId": 2})
        return self.on_call(request)

    def to(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def client(self) -> LiveVoxClient:
        return LiveVoxClient(_settings(), transport=httpx.MockTransport(self))


def _ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(204)


def _campaign_json(ident: int) -> dict[str, object]:
    return {"id": ident, "name": f"c{ident}", "typeId": 1, "serviceId": 123, "status": "PLAYING"}


def _search_page(ids: list[int], next_uri: str | None) -> httpx.Response:
    return httpx.Response(
        200, json={"next": next_uri, "campaign": [_campaign_json(i) for i in ids]}
    )


DAY = datetime(2024, 11, 28, tzinfo=UTC)


# -- session ---------------------------------------------------------------------------------


def test_login_sends_access_token_and_credentials() -> None:
    # Given no session / When login() / Then a POST with LV-Access, the documented JSON, no session.
    fake = FakeLiveVox(_ok)
    with fake.client() as client:
        client.login()
        assert client.session_id == SESSION
    (login,) = fake.to(LOGIN_PATH)
    assert login.method == "POST"
    assert login.headers["LV-Access"] == TOKEN
    assert "LV-Session" not in login.headers
    assert json.loads(login.content) == {
        "clientName": "ACME",
        "userName": "feeder",
        "password": PASSWORD,
        "agent": False,
    }


def test_client_uses_explicit_timeouts_and_base_url() -> None:
    # Given 1.5 s connect / 7 s read settings / When the client is built / Then httpx uses them.
    with FakeLiveVox(_ok).client() as client:
        timeout = client._http.timeout
        assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (1.5, 7.0, 7.0, 1.5)
        assert str(client._http.base_url).rstrip("/") == BASE


def test_calls_log_in_lazily_once_and_carry_the_session() -> None:
    # Given a fresh client / When two calls / Then one login; both send LV-Session and LV-Access.
    fake = FakeLiveVox(lambda r: httpx.Response(200, json=_campaign_json(9001)))
    with fake.client() as client:
        client.get_campaign(9001)
        client.get_campaign(9001)
    calls = fake.to("/campaign/v6.0/campaigns/9001")
    assert len(fake.to(LOGIN_PATH)) == 1
    assert len(calls) == 2
    assert all(r.headers["LV-Session"] == SESSION for r in calls)
    assert all(r.headers["LV-Access"] == TOKEN for r in calls)


def test_read_call_401_logs_in_again_and_repeats_once() -> None:
    # Given the session expires / When a search meets 401 / Then login again, repeat once, succeed.
    answers = iter([httpx.Response(401, json={"code": 401, "message": "expired"})])
    fake = FakeLiveVox(lambda r: next(answers, _search_page([1], "")), (SESSION, SESSION_2))
    with fake.client() as client:
        found = client.find_campaigns(service_id=123, start=DAY, end=DAY)
        assert client.session_id == SESSION_2
    searches = fake.to(SEARCH_PATH)
    assert [c.id for c in found] == [1]
    assert len(fake.to(LOGIN_PATH)) == 2
    assert [r.headers["LV-Session"] for r in searches] == [SESSION, SESSION_2]


def test_read_call_second_401_raises_session_expired() -> None:
    # Given every search answers 401 / When searching / Then two tries, SessionExpired, no session.
    fake = FakeLiveVox(lambda r: httpx.Response(401, json={"code": 401, "message": "expired"}))
    with fake.client() as client:
        with pytest.raises(SessionExpired) as caught:
            client.find_campaigns(service_id=None, start=DAY, end=DAY)
        assert client.session_id is None
    assert caught.value.status == 401
    assert len(fake.to(SEARCH_PATH)) == 2
    assert len(fake.to(LOGIN_PATH)) == 2


def test_append_401_is_not_repeated_and_next_call_logs_in() -> None:
    # Given an expired session / When append meets 401 / Then SessionExpired, one PUT, session
    # cleared; the next append logs in first.
    answers = iter([httpx.Response(401, json={"code": 401, "message": "expired"})])
    fake = FakeLiveVox(lambda r: next(answers, httpx.Response(204)))
    with fake.client() as client:
        with pytest.raises(SessionExpired):
            client.append(9001, [{"phone1": PHONE}])
        assert client.session_id is None
        assert len(fake.to(APPEND_PATH)) == 1
        assert len(fake.to(LOGIN_PATH)) == 1
        client.append(9001, [{"phone1": PHONE}])
    assert len(fake.to(APPEND_PATH)) == 2
    assert len(fake.to(LOGIN_PATH)) == 2


def test_close_logs_out_and_ignores_logout_failure() -> None:
    # Given a session / When close() and logout answers 500 / Then a DELETE went out, no raise.
    fake = FakeLiveVox(lambda r: httpx.Response(500 if r.method == "DELETE" else 204))
    client = fake.client()
    client.append(9001, [{"phone1": PHONE}])
    client.close()
    (logout,) = fake.to(f"/session/v6.0/logout/{SESSION}")
    assert logout.method == "DELETE"
    assert logout.headers["LV-Session"] == SESSION
    assert client.session_id is None


def test_close_without_session_or_with_logout_off_sends_nothing() -> None:
    # Given no session, or logout_on_close=False / When close() / Then no logout request is made.
    fake = FakeLiveVox(_ok)
    fake.client().close()
    quiet = LiveVoxClient(_settings(), transport=httpx.MockTransport(fake), logout_on_close=False)
    quiet.login()
    quiet.close()
    assert [r.method for r in fake.requests] == ["POST"]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_login_refused_is_login_denied_without_secrets(status: int) -> None:
    # Given a refused login echoing secrets / When login() / Then LoginDenied, secrets blanked.
    echo = {"code": status, "message": f"bad token {TOKEN} or password {PASSWORD}"}
    transport = httpx.MockTransport(lambda r: httpx.Response(status, json=echo))
    client = LiveVoxClient(_settings(), transport=transport)
    with pytest.raises(LoginDenied) as caught:
        client.login()
    client.close()
    assert caught.value.status == status
    assert TOKEN not in str(caught.value) and PASSWORD not in str(caught.value)
    assert "feeder" in str(caught.value)
    assert client.session_id is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(500), Transient),
        (httpx.Response(503), Transient),
        (httpx.Response(429), RateLimited),
        (httpx.ConnectError("refused"), NotSent),
        (httpx.ConnectTimeout("slow"), NotSent),
        (httpx.ReadTimeout("slow"), Transient),
    ],
)
def test_login_failure_that_is_not_a_refusal(
    answer: httpx.Response | Exception, expected: type[LiveVoxError]
) -> None:
    # Given login meets a server or network failure / When append logs in lazily / Then a transient
    # class (never AnswerLost: the PUT was not sent) and no PUT went out.
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = LiveVoxClient(_settings(), transport=httpx.MockTransport(handler))
    with pytest.raises(LiveVoxError) as caught:
        client.append(9001, [{"phone1": PHONE}])
    client.close()
    assert type(caught.value) is expected
    assert [r.url.path for r in seen] == [LOGIN_PATH]


# -- classification ----------------------------------------------------------------------------


def _answer(status: int, body: object = None) -> httpx.Response:
    request = httpx.Request("PUT", BASE + APPEND_PATH)
    if body is None:
        return httpx.Response(status, request=request)
    if isinstance(body, str):
        return httpx.Response(status, text=body, request=request)
    return httpx.Response(status, json=body, request=request)


@pytest.mark.parametrize("status", [200, 201, 204])
def test_classify_success(status: int) -> None:
    # Given a 200/201/204 / When classified / Then no error.
    assert classify(_answer(status)) is None


@pytest.mark.parametrize(
    ("status", "mutating", "campaign", "expected"),
    [
        (202, True, True, AnswerLost),
        (202, False, True, Transient),
        (400, True, True, Rejected),
        (413, True, True, Rejected),
        (422, True, True, Rejected),
        (418, True, True, Rejected),
        (400, False, False, Configuration),
        (401, True, True, SessionExpired),
        (401, False, False, SessionExpired),
        (403, True, True, Forbidden),
        (404, True, True, CampaignUnavailable),
        (404, False, False, Configuration),
        (405, True, True, Configuration),
        (408, True, True, AnswerLost),
        (409, True, True, CampaignUnavailable),
        (429, True, True, RateLimited),
        (500, True, True, AnswerLost),
        (503, True, True, AnswerLost),
        (504, True, True, AnswerLost),
        (500, False, True, Transient),
        (503, False, False, Transient),
        (502, True, True, AnswerLost),  # a gateway's answer to an Append: may have landed
        (502, False, False, Configuration),
        (301, True, True, Configuration),
    ],
)
def test_classify_status(
    status: int, mutating: bool, campaign: bool, expected: type[LiveVoxError]
) -> None:
    # Given an answer with this status / When classified for this call kind / Then this class.
    error = classify(_answer(status), mutating=mutating, campaign=campaign)
    assert type(error) is expected
    assert error is not None and error.status == status


@pytest.mark.parametrize(
    ("exc", "mutating", "expected"),
    [
        (httpx.ConnectError("refused"), True, NotSent),
        (httpx.ConnectTimeout("slow"), True, NotSent),
        (httpx.PoolTimeout("busy"), True, NotSent),
        (httpx.WriteError("broken pipe"), True, NotSent),
        (httpx.WriteTimeout("slow"), True, NotSent),
        (httpx.ReadTimeout("slow"), True, AnswerLost),
        (httpx.ReadError("reset"), True, AnswerLost),
        (httpx.RemoteProtocolError("dropped"), True, AnswerLost),
        (httpx.ReadTimeout("slow"), False, Transient),
        (httpx.RemoteProtocolError("dropped"), False, Transient),
        (httpx.ConnectError("refused"), False, NotSent),
        (httpx.UnsupportedProtocol("ftp"), True, Configuration),
    ],
)
def test_classify_exception(exc: Exception, mutating: bool, expected: type[LiveVoxError]) -> None:
    # Given a transport failure / When classified / Then exactly this class, with no HTTP status.
    error = classify_exception(exc, mutating=mutating)
    assert type(error) is expected
    assert error.status is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(202), AnswerLost),
        (httpx.Response(400, json={"code": 400, "message": "phone1 missing"}), Rejected),
        (httpx.Response(403), Forbidden),
        (httpx.Response(404), CampaignUnavailable),
        (
            httpx.Response(409, json={"code": 4091, "message": "not appendable"}),
            CampaignUnavailable,
        ),
        (httpx.Response(429), RateLimited),
        (httpx.Response(500), AnswerLost),
        (httpx.Response(502), AnswerLost),
        (httpx.ConnectError("refused"), NotSent),
        (httpx.ConnectTimeout("slow"), NotSent),
        (httpx.PoolTimeout("busy"), NotSent),
        (httpx.WriteError("pipe"), NotSent),
        (httpx.WriteTimeout("slow"), NotSent),
        (httpx.ReadTimeout("slow"), AnswerLost),
        (httpx.ReadError("reset"), AnswerLost),
        (httpx.RemoteProtocolError("dropped after body"), AnswerLost),
    ],
)
def test_append_raises_the_classified_error(
    answer: httpx.Response | Exception, expected: type[LiveVoxError]
) -> None:
    # Given the append PUT meets this answer or failure / When append() / Then exactly this class.
    def on_call(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    with FakeLiveVox(on_call).client() as client, pytest.raises(LiveVoxError) as caught:
        client.append(9001, [{"phone1": PHONE}])
    assert type(caught.value) is expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(500), Transient),
        (httpx.Response(504), Transient),
        (httpx.Response(404), CampaignUnavailable),
        (httpx.ReadTimeout("slow"), Transient),
        (httpx.ConnectError("refused"), NotSent),
    ],
)
def test_read_calls_never_raise_answer_lost(
    answer: httpx.Response | Exception, expected: type[LiveVoxError]
) -> None:
    # Given get_campaign meets a 5xx or lost answer / When called / Then Transient, not AnswerLost.
    def on_call(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    with FakeLiveVox(on_call).client() as client, pytest.raises(LiveVoxError) as caught:
        client.get_campaign(9001)
    assert type(caught.value) is expected


def test_error_carries_code_and_message_from_body() -> None:
    # Given a 409 body {"code", "message"} / When classified / Then status, code, message carried.
    error = classify(_answer(409, {"code": 4091, "message": "Campaign does not allow append"}))
    assert error is not None
    assert (error.status, error.code, error.message) == (
        409,
        4091,
        "Campaign does not allow append",
    )


def test_partial_success_message() -> None:
    # Given a 202 with a body / When classified / Then AnswerLost "partial success (202): ...".
    error = classify(_answer(202, {"code": 202, "message": "3 records failed"}))
    assert isinstance(error, AnswerLost)
    assert error.message == "partial success (202): 3 records failed"
    assert classify(_answer(202)) is not None


def test_non_json_error_body_falls_back_to_text_truncated() -> None:
    # Given a 500 with a long HTML body / When classified / Then the message is its text, 500 chars.
    error = classify(_answer(500, "<html>" + "x" * 5000 + "</html>"))
    assert error is not None and error.code is None
    assert error.message.startswith("<html>xxx")
    assert len(error.message) == 500


@pytest.mark.parametrize(
    "echoed", [PHONE, "+1 212 555 1234", "(212) 555-1234", "212-555-1234", "12125551234"]
)
def test_phone_numbers_are_masked_in_error_messages(echoed: str) -> None:
    # Given LiveVox echoes a phone number / When classified / Then only its last 4 digits remain.
    error = classify(_answer(400, {"code": 400, "message": f"record 3: phone1 {echoed} invalid"}))
    assert error is not None
    assert "5551234" not in error.message.replace(" ", "").replace("-", "")
    assert "555" not in error.message
    assert error.message.endswith("1234 invalid")
    assert error.message.startswith("record 3: phone1 ")


def test_secrets_echoed_by_livevox_are_blanked() -> None:
    # Given a 400 echoing session id, token, password / When append raises / Then none appear.
    body = {"code": 400, "message": f"session {SESSION} token {TOKEN} password {PASSWORD}"}
    fake = FakeLiveVox(lambda r: httpx.Response(400, json=body))
    with fake.client() as client, pytest.raises(Rejected) as caught:
        client.append(9001, [{"phone1": PHONE}])
    for secret in (SESSION, TOKEN, PASSWORD):
        assert secret not in str(caught.value)
        assert secret not in repr(caught.value)
    assert "***" in caught.value.message


def test_malformed_answer_is_transient_and_not_quoted() -> None:
    # Given a 200 transactionList that is not the documented shape (no list of transactions) /
    # When read / Then Transient, and the message does not quote the body (it may hold phones).
    answer = httpx.Response(200, json={"transaction": {"phone": PHONE}})
    with FakeLiveVox(lambda r: answer).client() as client, pytest.raises(Transient) as caught:
        list(client.transactions(9001))
    assert PHONE not in str(caught.value)


# -- search, append, transactions ------------------------------------------------------------


def test_search_pages_with_offset_and_sends_epoch_ms() -> None:
    # Given 3 pages of 2, 2 and 1 campaigns / When find_campaigns(page_size=2) / Then 5 campaigns
    # from offsets 0, 2, 4 and a body with dateRange in epoch ms and the filters.
    pages = iter([_search_page([1, 2], "/p2"), _search_page([3, 4], "/p3"), _search_page([5], "")])
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
    fake = FakeLiveVox(lambda r: httpx.Response(200, json={"campaign": [_campaign_json(1)]}))
    with fake.client() as client:
        found = client.find_campaigns(service_id=None, start=DAY, end=DAY, page_size=1)
    assert [c.id for c in found] == [1]
    assert len(fake.to(SEARCH_PATH)) == 1
    assert "service" not in json.loads(fake.to(SEARCH_PATH)[0].content)


def test_search_refuses_naive_datetimes() -> None:
    # Given a naive datetime / When searching / Then ValueError before any request.
    fake = FakeLiveVox(_ok)
    with fake.client() as client, pytest.raises(ValueError):
        client.find_campaigns(service_id=1, start=datetime(2024, 11, 28), end=DAY)
    assert not fake.requests


def test_get_campaign_fills_missing_id_and_reads_upload_date() -> None:
    # Given details without id / When get_campaign(77) / Then Campaign(id=77, ...) with uploadDate.
    body = {
        "name": "x",
        "typeId": 1,
        "serviceId": 5,
        "status": "PAUSED",
        "uploadDate": 1732811000000,
    }
    with FakeLiveVox(lambda r: httpx.Response(200, json=body)).client() as client:
        assert client.get_campaign(77) == Campaign(77, "x", 1, 5, "PAUSED", 1732811000000)


def test_append_sends_compact_body_and_returns_elapsed() -> None:
    # Given records / When append() / Then a PUT of exactly append_body(records); seconds returned.
    records = [{"phone1": PHONE, "account": "A-1", "phone2": ["2125550000"]}]
    fake = FakeLiveVox(_ok)
    with fake.client() as client:
        elapsed = client.append(9001, records)
        client.append(9001, body=client.append_body(records))
    first, second = fake.to(APPEND_PATH)
    assert first.method == "PUT"
    assert first.content == second.content == LiveVoxClient.append_body(records)
    assert first.content == json.dumps({"records": records}, separators=(",", ":")).encode()
    assert first.headers["Content-Type"] == "application/json"
    assert isinstance(elapsed, float) and elapsed >= 0


def test_append_needs_exactly_one_of_records_and_body() -> None:
    # Given both/neither of records and body, or no records / When append() / Then ValueError.
    fake = FakeLiveVox(_ok)
    with fake.client() as client:
        with pytest.raises(ValueError, match="exactly one"):
            client.append(9001)
        with pytest.raises(ValueError, match="exactly one"):
            client.append(9001, [{"phone1": PHONE}], body=b"{}")
        with pytest.raises(ValueError, match="no records"):
            client.append(9001, [])
    assert not fake.requests


def test_transactions_page_on_with_offset() -> None:
    # Given 3 pages of transactions (2, 2, 1, the last with no next) / When iterating
    # transactions(page_size=2) / Then 5
    # transactions from offsets 0, 2, 4, ids as text and phones in ordinal order.
    def page(start: int, count: int, next_uri: str) -> httpx.Response:
        items = [
            {
                "accountTransactionId": n,
                "account": f"A-{n}",
                "phone": [{"phone": "2125550002", "ordinal": 2}, {"phone": PHONE, "ordinal": 1}],
            }
            for n in range(start, start + count)
        ]
        return httpx.Response(200, json={"next": next_uri, "transaction": items})

    pages = iter([page(0, 2, "/n"), page(2, 2, "/n"), page(4, 1, "")])
    fake = FakeLiveVox(lambda r: next(pages, httpx.Response(200)))
    with fake.client() as client:
        got = list(client.transactions(9001, page_size=2))
    assert [t.transaction_id for t in got] == ["0", "1", "2", "3", "4"]
    assert got[0] == Transaction("0", "A-0", (PHONE, "2125550002"))
    listed = fake.to("/campaign/v6.0/campaigns/9001/transactionList")
    assert [r.url.params["offset"] for r in listed] == ["0", "2", "4"]
    assert all(r.url.params["count"] == "2" for r in listed)


def _transaction_page(start: int, count: int, next_uri: str | None) -> httpx.Response:
    items = [
        {"accountTransactionId": n, "account": f"A-{n}", "phone": [{"phone": PHONE}]}
        for n in range(start, start + count)
    ]
    return httpx.Response(200, json={"next": next_uri, "transaction": items})


def test_transactions_follow_next_past_a_short_page() -> None:
    # Given pages of 2, 1 (short, but next set) and 2 (next empty) with page_size=3 / When
    # iterating transactions / Then all 5 are read, from offsets 0, 2, 3: only next ends paging.
    pages = iter(
        [_transaction_page(0, 2, "/n"), _transaction_page(2, 1, "/n"), _transaction_page(3, 2, "")]
    )
    fake = FakeLiveVox(lambda r: next(pages, httpx.Response(204)))
    with fake.client() as client:
        got = list(client.transactions(9001, page_size=3))
    assert [t.transaction_id for t in got] == ["0", "1", "2", "3", "4"]
    listed = fake.to("/campaign/v6.0/campaigns/9001/transactionList")
    assert [r.url.params["offset"] for r in listed] == ["0", "2", "3"]


def test_search_follows_next_past_a_short_page() -> None:
    # Given a short first page with next set, then a last page / When find_campaigns(page_size=5)
    # / Then the second page is asked for too, at offset 1.
    pages = iter([_search_page([1], "/p2"), _search_page([2, 3], None)])
    fake = FakeLiveVox(lambda r: next(pages, httpx.Response(204)))
    with fake.client() as client:
        found = client.find_campaigns(service_id=123, start=DAY, end=DAY, page_size=5)
    assert [c.id for c in found] == [1, 2, 3]
    assert [r.url.params["offset"] for r in fake.to(SEARCH_PATH)] == ["0", "1"]


def test_empty_page_ends_paging_even_with_next_set() -> None:
    # Given a server that always sets next / When the listing runs dry / Then the empty page ends
    # it (no loop on offset that no longer moves).
    pages = iter([_transaction_page(0, 2, "/n"), _transaction_page(2, 0, "/n")])
    fake = FakeLiveVox(lambda r: next(pages, httpx.Response(204)))
    with fake.client() as client:
        got = list(client.transactions(9001, page_size=1000))
    assert len(got) == 2
    assert len(fake.to("/campaign/v6.0/campaigns/9001/transactionList")) == 2


def test_endless_next_hits_the_page_cap_as_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a server whose every page holds a record and sets next, and a cap of 3 pages / When
    # iterating / Then Transient after exactly 3 pages, not an endless loop.
    monkeypatch.setattr("appendq.livevox.MAX_PAGES", 3)

    def endless(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":  # the logout on close
            return httpx.Response(204)
        return _transaction_page(int(request.url.params["offset"]), 1, "/n")

    fake = FakeLiveVox(endless)
    with fake.client() as client, pytest.raises(Transient, match="3 pages"):
        list(client.transactions(9001, page_size=1))
    assert len(fake.to("/campaign/v6.0/campaigns/9001/transactionList")) == 3


# -- logging -----------------------------------------------------------------------------------


def test_no_secret_or_full_phone_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Given DEBUG logging everywhere (httpx too) / When login, search, a 401 re-login, a refused
    # append echoing a phone, a lost answer and a logout / Then no token, password, session id or
    # full phone number in any log line, while the calls themselves were logged.
    answers = iter(
        [
            httpx.Response(401),
            _search_page([1], ""),
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

    caplog.set_level(logging.DEBUG)
    client = FakeLiveVox(on_call, (SESSION, SESSION_2)).client()
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
    assert "PUT /campaign/v6.0/campaigns/9001/transactions -> 409" in caplog.text
    assert "******1234" in caplog.text
