"""How LiveVox's answers are classified, table-driven: ``classify`` by status at the edge of every
range, for an Append and for reads, by meaning before status; ``classify_exception`` by whether
the body left; what a message names, canonical phones, and how a message is cleaned. Pure
functions over ``httpx.Response`` values: no network."""

from __future__ import annotations

import httpx
import pytest

from appendq import errors
from appendq.livevox.classify import (
    MESSAGE_MAX,
    canonical_phone,
    classify,
    classify_exception,
    clean_message,
    error_body,
    is_campaign_refusal,
    named_in,
)

E = errors


A, T, C, R = E.AnswerLost, E.Transient, E.Configuration, E.Rejected


@pytest.mark.parametrize(
    ("status", "append", "read", "read_no_campaign"),
    [
        (199, A, T, T),
        (200, None, None, None),
        (201, None, None, None),
        (202, A, T, T),
        (204, None, None, None),
        (299, None, None, None),
        (300, C, C, C),
        (301, C, C, C),
        (399, C, C, C),
        (400, R, C, C),
        (401, E.SessionExpired, E.SessionExpired, E.SessionExpired),
        (403, E.Forbidden, E.Forbidden, E.Forbidden),
        (404, E.CampaignUnavailable, E.CampaignUnavailable, C),
        (405, C, C, C),
        (408, A, T, T),
        (409, E.CampaignUnavailable, E.CampaignUnavailable, E.CampaignUnavailable),
        (422, R, C, C),
        (429, E.RateLimited, E.RateLimited, E.RateLimited),
        (499, R, C, C),
        (500, A, T, T),
        (502, A, C, C),
        (503, A, T, T),
        (504, A, T, T),
        (599, A, T, T),
    ],
)
def test_classify_by_status_at_every_edge(
    status: int,
    append: type[errors.LiveVoxError] | None,
    read: type[errors.LiveVoxError] | None,
    read_no_campaign: type[errors.LiveVoxError] | None,
) -> None:
    # Given an answer with this status and a message that means nothing in particular / When
    # classified for an Append, a read of a campaign, a read of anything else / Then this class.
    answer = httpx.Response(status, json={"code": 7, "message": "boom"})
    for mutating, campaign, expected in (
        (True, True, append),
        (False, True, read),
        (False, False, read_no_campaign),
    ):
        got = classify(answer, mutating=mutating, campaign=campaign)
        assert type(got) is expected if expected else got is None, (mutating, campaign, got)
        if got is not None:
            assert (got.status, got.code) == (status, 7)


@pytest.mark.parametrize(
    ("status", "message", "mutating", "expected"),
    [
        (399, "rate limit exceeded", True, C),  # the rate's meaning needs an error status
        (400, "rate limit exceeded", True, E.RateLimited),
        (400, "rate limit exceeded", False, E.RateLimited),
        (400, "appends are not allowed", False, C),  # a campaign refusal is an Append's
        (422, "appends are not allowed", True, E.CampaignUnavailable),
        (500, "appends are not allowed", True, A),  # not a refusal status
        (400, "campaign 5001 is stopped", True, E.CampaignUnavailable),
        (400, "record 3: campaign field too long", True, R),  # names a record
        (400, "phone 2125551234: campaign rejects it", True, R),  # names a phone
        (400, "record 3: appends are not allowed", True, R),  # about a record, not the campaign
        (400, "phone 2125551234: appends are not allowed", True, R),
        (400, "campaign 2125551234 is closed", True, E.CampaignUnavailable),  # no phone word
        (400, "campaign number 5001 is closed", True, E.CampaignUnavailable),  # no phone
    ],
)
def test_classify_by_meaning_before_status(
    status: int, message: str, mutating: bool, expected: type[errors.LiveVoxError]
) -> None:
    answer = httpx.Response(status, json={"message": message})
    assert type(classify(answer, mutating=mutating)) is expected


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(202, json={"message": "2 of 3"}), "partial success (202): 2 of 3"),
        (httpx.Response(202), "partial success (202)"),
        (httpx.Response(500, text="oops"), "oops"),
        (httpx.Response(500, json={"message": None}), '{"message":null}'),
        (httpx.Response(503), "Service Unavailable"),
        (
            httpx.Response(503, json={"message": "key s3cret in 2125551234"}),
            "key *** in ******1234",
        ),
    ],
)
def test_classify_keeps_a_clean_message(answer: httpx.Response, message: str) -> None:
    got = classify(answer, secrets=["s3cret"])
    assert got is not None and got.message == message


@pytest.mark.parametrize(
    ("body", "expected", "numbers"),
    [
        ({"message": "refused", "detail": "appends are not allowed"}, R, ()),  # message only
        ({"detail": "appends are not allowed"}, E.CampaignUnavailable, ()),  # else the body
        ({"message": "x" * 1995 + " record 7 bad"}, R, ()),  # read up to 2,000 characters
        ({"message": "x" * 1980 + " record 7 bad"}, R, (7,)),
    ],
)
def test_the_meaning_is_read_from_the_message_field_capped(
    body: dict[str, str], expected: type[errors.LiveVoxError], numbers: tuple[int, ...]
) -> None:
    # Given an Append refused (400) with this body / When classified / Then its meaning and the
    # records it names are read from the message field (the whole body without one), and only
    # from its first 2,000 characters.
    got = classify(httpx.Response(400, json=body))
    assert type(got) is expected and got is not None and got.named.numbers == numbers


def test_a_body_read_for_its_message_is_capped_too() -> None:
    # Given answers without a message field whose text has words only past 2,000 characters /
    # When classified / Then they are not read: the message is the reason phrase (the text read
    # is blank), and a campaign refusal that late is no campaign refusal.
    got = classify(httpx.Response(500, text=" " * 2100 + "boom"))
    assert got is not None and got.message == "Internal Server Error"
    late = classify(httpx.Response(400, text="x" * 2000 + " appends are not allowed"))
    early = classify(httpx.Response(400, text="x" * 1900 + " appends are not allowed"))
    assert (type(late), type(early)) == (R, E.CampaignUnavailable)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, R), (404, E.CampaignUnavailable), (500, A), (502, A), (409, E.CampaignUnavailable)],
)
def test_classify_reads_an_append_to_a_campaign_by_default(
    status: int, expected: type[errors.LiveVoxError]
) -> None:
    assert type(classify(httpx.Response(status, json={"message": "boom"}))) is expected
    assert type(classify_exception(httpx.ReadTimeout("x"))) is A


@pytest.mark.parametrize(
    ("raw", "campaign"),
    [
        ("appends are not allowed", True),
        ("campaign 5001 is stopped", True),
        ("record 3: appends are not allowed", False),
        ("phone 2125551234: appends are not allowed", False),
        ("invalid data", False),
    ],
)
def test_is_campaign_refusal_reads_the_raw_text_alone(raw: str, campaign: bool) -> None:
    assert is_campaign_refusal(raw) is campaign
    assert is_campaign_refusal(raw, named_in(raw)) is campaign


@pytest.mark.parametrize(
    ("exc", "append", "read"),
    [
        (httpx.ConnectError("x"), E.NotSent, E.NotSent),
        (httpx.ConnectTimeout("x"), E.NotSent, E.NotSent),
        (httpx.PoolTimeout("x"), E.NotSent, E.NotSent),
        (httpx.WriteError("x"), E.NotSent, E.NotSent),
        (httpx.WriteTimeout("x"), E.NotSent, E.NotSent),
        (httpx.LocalProtocolError("x"), E.NotSent, E.NotSent),
        (httpx.ProxyError("x"), E.NotSent, E.NotSent),
        (httpx.ReadTimeout("x"), A, T),
        (httpx.ReadError("x"), A, T),
        (httpx.RemoteProtocolError("x"), A, T),
        (httpx.UnsupportedProtocol("x"), C, C),
        (httpx.InvalidURL("x"), C, C),
    ],
)
def test_classify_exception_by_whether_the_body_left(
    exc: Exception, append: type[errors.LiveVoxError], read: type[errors.LiveVoxError]
) -> None:
    for mutating, expected in ((True, append), (False, read)):
        got = classify_exception(exc, mutating=mutating)
        assert type(got) is expected and type(exc).__name__ in got.message


@pytest.mark.parametrize(
    ("raw", "numbers", "phones"),
    [
        ("record 4 and record 4 and row 9", (4, 9), ()),
        ("records[12].phone1 and record 3", (12, 3), ()),
        (
            "call +1 (212) 555-1234 or 2125551234, or 4479111234567",
            (),
            ("2125551234", "4479111234567"),
        ),
        ("uploaded 2026-11-29 or 11/29/2026", (), ()),
        ("12 characters", (), ()),
    ],
)
def test_named_in_reads_numbers_and_phones_once_each(
    raw: str, numbers: tuple[int, ...], phones: tuple[str, ...]
) -> None:
    assert named_in(raw) == errors.Named(numbers, phones)


@pytest.mark.parametrize(
    ("phone", "digits"),
    [
        ("+1 212 555 1234", "2125551234"),
        ("12125551234", "2125551234"),
        ("2125551234", "2125551234"),
        ("22125551234", "22125551234"),  # 11 digits, not the NANP country code
        ("1212555123", "1212555123"),  # 10 digits starting with 1
        ("+447911123456", "447911123456"),
    ],
)
def test_canonical_phone(phone: str, digits: str) -> None:
    assert canonical_phone(phone) == digits


def test_clean_message_blanks_masks_and_caps() -> None:
    # Given a message with a secret, a phone, runs of blanks / When cleaned / Then blanked,
    # masked, one blank each; one over 500 characters is cut to 500 with "...", one of 500 kept.
    assert clean_message("a  s3cret\n 2125551234", ["s3cret", ""]) == "a *** ******1234"
    assert MESSAGE_MAX == 500
    assert clean_message("x" * 500) == "x" * 500
    long = clean_message("x" * 501)
    assert len(long) == 500 and long.endswith("x...")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"code": 12}, 12),
        ({"code": "12"}, 12),
        ({"code": "-3"}, -3),
        ({"code": "x"}, None),
        ({"code": 1.5}, None),
        ({}, None),
    ],
)
def test_error_body_reads_a_numeric_code(body: dict[str, object], code: int | None) -> None:
    assert error_body(httpx.Response(400, json={**body, "message": "m"}), ())[0] == code
