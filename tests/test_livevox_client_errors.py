"""How the LiveVox client classifies answers and transport failures, and what its error messages
may show (over ``httpx.MockTransport``). The status table at every range edge is in
``test_classify_table.py``; these pin the classes each client call raises."""

from __future__ import annotations

import httpx
import pytest

from appendq.errors import (
    AnswerLost,
    CampaignUnavailable,
    Configuration,
    Forbidden,
    LiveVoxError,
    NotSent,
    RateLimited,
    Rejected,
    SessionExpired,
    Transient,
)
from appendq.livevox.classify import classify, classify_exception
from tests.support.livevox_fake import (
    APPEND_PATH,
    BASE,
    PASSWORD,
    PHONE,
    SESSION,
    TOKEN,
    FakeLiveVox,
    answering,
)


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
def test_append_raises_the_classified_error_and_is_sent_once(
    answer: httpx.Response | Exception, expected: type[LiveVoxError]
) -> None:
    # Given the append PUT meets this answer or failure / When append() / Then exactly this class,
    # and the PUT went out once: a doubtful answer is never re-sent by the client.
    fake = FakeLiveVox(answering(answer))
    with fake.client() as client, pytest.raises(LiveVoxError) as caught:
        client.append(9001, [{"phone1": PHONE}])
    assert type(caught.value) is expected
    assert len(fake.to(APPEND_PATH)) == 1


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
    # Given transactionList meets a 5xx or lost answer / When read / Then Transient (or the
    # campaign's 404), not AnswerLost.
    with FakeLiveVox(answering(answer)).client() as client, pytest.raises(LiveVoxError) as caught:
        list(client.transactions(9001))
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
