"""The LiveVox client's session, over ``httpx.MockTransport``: login, the access token and session
headers, the auth flow's login and resend after a 401 (never for an Append), logout on close.

Classification is in ``test_livevox_client_errors.py``; search, Append, paging and logging in
``test_livevox_client_calls.py``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from appendq.errors import (
    LiveVoxError,
    LoginDenied,
    NotSent,
    RateLimited,
    SessionExpired,
    Transient,
)
from appendq.livevox.client import LiveVoxClient
from tests.support.livevox_fake import (
    APPEND_PATH,
    BASE,
    DAY,
    LIST_PATH,
    LOGIN_PATH,
    PASSWORD,
    PHONE,
    SEARCH_PATH,
    SESSION,
    SESSION_2,
    TOKEN,
    FakeLiveVox,
    lv_settings,
    ok,
    search_page,
    transaction_page,
)

EXPIRED = {"code": 401, "message": "expired"}


def test_login_sends_access_token_and_credentials() -> None:
    # Given no session / When login() / Then a POST with LV-Access, the documented JSON, no session.
    fake = FakeLiveVox(ok)
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
    with FakeLiveVox(ok).client() as client:
        timeout = client._http.timeout
        assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (1.5, 7.0, 7.0, 1.5)
        assert str(client._http.base_url).rstrip("/") == BASE


def test_calls_log_in_lazily_once_and_carry_the_session() -> None:
    # Given a fresh client / When two reads / Then one login; both send LV-Session and LV-Access.
    fake = FakeLiveVox(lambda r: transaction_page(0, 1, None))
    with fake.client() as client:
        list(client.transactions(9001))
        list(client.transactions(9001))
    calls = fake.to(LIST_PATH)
    assert len(fake.to(LOGIN_PATH)) == 1
    assert len(calls) == 2
    assert all(r.headers["LV-Session"] == SESSION for r in calls)
    assert all(r.headers["LV-Access"] == TOKEN for r in calls)


def test_read_call_401_logs_in_again_and_repeats_once() -> None:
    # Given the session expires / When a search meets 401 / Then login again, repeat once, succeed.
    answers = iter([httpx.Response(401, json=EXPIRED)])
    fake = FakeLiveVox(lambda r: next(answers, search_page([1], "")), (SESSION, SESSION_2))
    with fake.client() as client:
        found = client.find_campaigns(service_id=123, start=DAY, end=DAY)
        assert client.session_id == SESSION_2
    searches = fake.to(SEARCH_PATH)
    assert [c.id for c in found] == [1]
    assert len(fake.to(LOGIN_PATH)) == 2
    assert [r.headers["LV-Session"] for r in searches] == [SESSION, SESSION_2]
    assert searches[0].content == searches[1].content  # the same search, resent


def test_read_call_second_401_raises_session_expired() -> None:
    # Given every search answers 401 / When searching / Then two tries, SessionExpired, no session.
    fake = FakeLiveVox(lambda r: httpx.Response(401, json=EXPIRED))
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
    answers = iter([httpx.Response(401, json=EXPIRED)])
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


def test_a_401_with_a_rate_limit_message_keeps_the_session() -> None:
    # Given an Append answered 401 "rate limit exceeded" / When append() / Then RateLimited (by
    # meaning), one PUT, and the session is kept: only a SessionExpired drops it.
    rate = httpx.Response(401, json={"code": 401, "message": "rate limit exceeded"})
    fake = FakeLiveVox(lambda r: rate)
    with fake.client() as client:
        with pytest.raises(RateLimited):
            client.append(9001, [{"phone1": PHONE}])
        assert client.session_id == SESSION
    assert len(fake.to(APPEND_PATH)) == 1


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


def test_logout_answered_401_is_not_repeated() -> None:
    # Given a session / When close() and logout answers 401 / Then one DELETE, no new login.
    fake = FakeLiveVox(lambda r: httpx.Response(401 if r.method == "DELETE" else 204))
    client = fake.client()
    client.login()
    client.close()
    assert [r.method for r in fake.requests] == ["POST", "DELETE"]
    assert client.session_id is None


def test_close_without_session_or_with_logout_off_sends_nothing() -> None:
    # Given no session, or logout_on_close=False / When close() / Then no logout request is made.
    fake = FakeLiveVox(ok)
    fake.client().close()
    quiet = LiveVoxClient(lv_settings(), transport=httpx.MockTransport(fake), logout_on_close=False)
    quiet.login()
    quiet.close()
    assert [r.method for r in fake.requests] == ["POST"]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_login_refused_is_login_denied_without_secrets(status: int) -> None:
    # Given a refused login echoing secrets / When login() / Then LoginDenied, secrets blanked.
    echo = {"code": status, "message": f"bad token {TOKEN} or password {PASSWORD}"}
    transport = httpx.MockTransport(lambda r: httpx.Response(status, json=echo))
    client = LiveVoxClient(lv_settings(), transport=transport)
    with pytest.raises(LoginDenied) as caught:
        client.login()
    client.close()
    assert caught.value.status == status
    assert TOKEN not in str(caught.value) and PASSWORD not in str(caught.value)
    assert "feeder" in str(caught.value)
    assert client.session_id is None


def test_login_refused_during_a_read_is_login_denied() -> None:
    # Given a search that meets 401 and a login then refused (403) / When searching / Then
    # LoginDenied from the flow's second login: one search sent, no session left.
    logins = iter([httpx.Response(200, json={"sessionId": SESSION}), httpx.Response(403)])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == LOGIN_PATH:
            return next(logins)
        return httpx.Response(401, json=EXPIRED)

    client = LiveVoxClient(lv_settings(), transport=httpx.MockTransport(handler))
    with pytest.raises(LoginDenied):
        client.find_campaigns(service_id=1, start=DAY, end=DAY)
    assert client.session_id is None
    client.close()
    assert seen == [LOGIN_PATH, SEARCH_PATH, LOGIN_PATH]


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

    client = LiveVoxClient(lv_settings(), transport=httpx.MockTransport(handler))
    with pytest.raises(LiveVoxError) as caught:
        client.append(9001, [{"phone1": PHONE}])
    client.close()
    assert type(caught.value) is expected
    assert [r.url.path for r in seen] == [LOGIN_PATH]
