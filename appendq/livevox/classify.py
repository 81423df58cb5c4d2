"""How LiveVox's answers and transport failures are classified, once, for the whole project, and
how error text is cleaned before it reaches a log line or an exception: secrets blanked, phone
numbers masked, length capped. Pure functions, unit-tested with ``httpx.MockTransport``.

Which status LiveVox gives a refusal is unconfirmed (see "Unconfirmed corners" in
livevox-api.md), so an error answer is read by its *meaning* before its status:

- a message about the rate limit ("rate limit", "too many requests/calls", "throttled") is
  ``RateLimited`` whatever the status (403, 409, 503 ...);
- an Append refusal (400/403/404/409) whose message is about the campaign (appends not allowed,
  the campaign's state, not today's, its type, requeue) and names no record is
  ``CampaignUnavailable``: never a content refusal, so no record is ever rejected for it;
- a 502 to an Append is a gateway's answer: LiveVox may have the body, ``AnswerLost``.

What a message names (record numbers, phone numbers) is read from the raw text, before phone
numbers are masked, into ``LiveVoxError.named`` (never logged).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import httpx

from appendq.errors import (
    AnswerLost,
    CampaignUnavailable,
    Configuration,
    Forbidden,
    LiveVoxError,
    Named,
    NotSent,
    RateLimited,
    Rejected,
    SessionExpired,
    Transient,
)
from appendq.redact import phone_runs, scrub

MESSAGE_MAX = 500
_NAMED_RECORD = re.compile(
    r"\b(?:records?|rows?|lines?|items?|entry|entries|index|element)\s*"
    r"(?:#|no\.?|number|index|at)?\s*[\[(]?\s*(\d{1,6})\b(?!\s*(?:records|characters|phone))",
    re.IGNORECASE,
)
_BRACKET_INDEX = re.compile(r"\brecords?\s*\[\s*(\d{1,6})\s*\]", re.IGNORECASE)
_RATE = re.compile(
    r"rate[\s_-]*limit|too\s+many\s+(?:requests|calls|append)|throttl|calls?\s+per\s+minute",
    re.IGNORECASE,
)
_PHONE_WORD = re.compile(r"phone|number", re.IGNORECASE)
_CAMPAIGN_WORD = re.compile(r"\bcampaigns?\b", re.IGNORECASE)
#: With the word "campaign": what a refusal about the campaign (not a record) talks about.
_CAMPAIGN_MEANING = re.compile(
    r"allow[\s_-]*appends?|appends?\b.*\b(?:not|no|never)\b|\b(?:not|no)\b.*\bappends?|"
    r"requeue|\btype\b|today|\bstate\b|\bstatus\b|stopped|completed|closed|ended|expired|"
    r"inactive|not\s+(?:active|running|playing|open|found|available|built)|invalid\s+campaign",
    re.IGNORECASE,
)
#: Without the word "campaign": phrases only a campaign-level refusal uses.
_APPEND_REFUSED = re.compile(
    r"allow[\s_-]*appends?|requeue|appends?\s+(?:are\s+|is\s+)?(?:not\s+allowed|"
    r"not\s+permitted|disabled|not\s+enabled|closed)|no\s+appends|not\s+today",
    re.IGNORECASE,
)
#: Append refusals that may be about the campaign rather than the records (status unconfirmed).
_REFUSAL_STATUSES = frozenset({400, 403, 404, 409, 422})
_SESSION_PATH = re.compile(r"(/session/(?:[^/?\s]+/)?(?:logout|validate)/)[^/?\s\"']+")
_BY_STATUS: dict[int, type[LiveVoxError]] = {
    401: SessionExpired,
    403: Forbidden,
    405: Configuration,
    409: CampaignUnavailable,
    429: RateLimited,
    502: Configuration,  # "configuration error" in LiveVox's status table
}
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.LocalProtocolError,
    httpx.ProxyError,
)


def classify(
    response: httpx.Response,
    *,
    mutating: bool = True,
    campaign: bool = True,
    secrets: Sequence[str] = (),
) -> LiveVoxError | None:
    """The error an answer means, or None for success (2xx but 202).

    ``mutating``: the call changes LiveVox (Append), so an unknown outcome is ``AnswerLost`` and a
    4xx is ``Rejected``; for read-only calls they are ``Transient`` and ``Configuration``.
    ``campaign``: the path names a campaign, so 404 is ``CampaignUnavailable`` (else configuration).
    ``secrets`` are blanked out of the message LiveVox echoes back.
    """
    status = response.status_code
    if 200 <= status < 300 and status != 202:
        return None
    code, message = error_body(response, secrets)
    raw = _raw_message(response)
    named = named_in(raw)
    if status == 202:
        message = "partial success (202)" + (f": {message}" if message else "")
    kind = _by_meaning(status, raw, named, mutating=mutating)
    if kind is None:
        kind = _error_class(status, mutating=mutating, campaign=campaign)
    return kind(
        message or response.reason_phrase or "no message", status=status, code=code, named=named
    )


def _by_meaning(
    status: int, raw: str, named: Named, *, mutating: bool
) -> type[LiveVoxError] | None:
    """The class a message's meaning decides, whatever its status; None: decide by status."""
    if status >= 400 and _RATE.search(raw):
        return RateLimited
    if mutating and status in _REFUSAL_STATUSES and is_campaign_refusal(raw, named):
        return CampaignUnavailable
    return None


def is_campaign_refusal(raw: str, named: Named | None = None) -> bool:
    """Whether a refusal's text is about the campaign (not one record): it names no record and
    talks about appends being refused, the campaign's state, day, type or requeue."""
    if named is None:
        named = named_in(raw)
    if named.numbers or (named.phones and _PHONE_WORD.search(raw)):
        return False
    if _APPEND_REFUSED.search(raw):
        return True
    return bool(_CAMPAIGN_WORD.search(raw) and _CAMPAIGN_MEANING.search(raw))


def named_in(raw: str) -> Named:
    """The record numbers and phone numbers a raw message names, in order, without repeats."""
    numbers: list[int] = []
    for pattern in (_BRACKET_INDEX, _NAMED_RECORD):
        for match in pattern.finditer(raw):
            number = int(match.group(1))
            if number not in numbers:
                numbers.append(number)
    phones: list[str] = []
    for match in phone_runs(raw):
        digits = canonical_phone(match.group())
        if digits not in phones:
            phones.append(digits)
    return Named(tuple(numbers), tuple(phones))


def canonical_phone(phone: str) -> str:
    """A phone number in the one form both sides are compared in: its digits, without the NANP
    country code (11 digits starting with 1). So "+1 212 555 1234", "12125551234" and
    "2125551234" are one number, and "+447911123456" is "447911123456" as LiveVox may hold it."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) == 11 and digits.startswith("1"):
        return digits[1:]
    return digits


def _raw_message(response: httpx.Response) -> str:
    """The error text as LiveVox sent it (message field, else the body), capped; never logged."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("message") is not None:
        return str(data["message"])[: MESSAGE_MAX * 4]
    return response.text[: MESSAGE_MAX * 4]


def _error_class(status: int, *, mutating: bool, campaign: bool) -> type[LiveVoxError]:
    if mutating and status == 502:  # a gateway's answer: the body may have reached LiveVox
        return AnswerLost
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status == 404:
        return CampaignUnavailable if campaign else Configuration
    if 300 <= status < 400:  # redirects are not followed: the base URL is wrong
        return Configuration
    if 400 <= status < 500 and status != 408:
        return Rejected if mutating else Configuration
    return AnswerLost if mutating else Transient  # 202, 408, 5xx, anything unexpected


def classify_exception(exc: Exception, *, mutating: bool = True) -> LiveVoxError:
    """The error a transport failure means. Before the body left: ``NotSent``. After: the answer
    was lost, and for a mutating call it may have landed (``AnswerLost``)."""
    name = type(exc).__name__
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return Configuration(f"bad LiveVox base URL ({name})")
    if isinstance(exc, _NOT_SENT):
        return NotSent(f"request not sent: {name}")
    if mutating:
        return AnswerLost(f"answer lost after the request was sent: {name}")
    return Transient(f"answer lost: {name}")


def clean_message(text: str, secrets: Sequence[str] = ()) -> str:
    """Text fit for an error message: ``secrets`` blanked and phone numbers masked
    (``appendq.redact.scrub``), on one line, cut to MESSAGE_MAX characters."""
    text = " ".join(scrub(text, secrets).split())
    return text[: MESSAGE_MAX - 3] + "..." if len(text) > MESSAGE_MAX else text


def error_body(response: httpx.Response, secrets: Sequence[str]) -> tuple[int | None, str]:
    try:
        data = response.json()
    except ValueError:  # also UnicodeDecodeError
        data = None
    code: int | None = None
    message = ""
    if isinstance(data, dict):
        raw_code, raw_message = data.get("code"), data.get("message")
        if isinstance(raw_code, int | str) and str(raw_code).strip().lstrip("-").isdigit():
            code = int(raw_code)
        if raw_message is not None:
            message = str(raw_message)
    if not message:
        message = response.text[: MESSAGE_MAX * 4]
    return code, clean_message(message, secrets)


def redact_session_path(text: str) -> str:
    return _SESSION_PATH.sub(r"\1<session>", text)


class _RedactSessionPaths(logging.Filter):
    """httpx logs every request URL at INFO; the logout and validate URLs carry the session id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_session_path(str(a)) if isinstance(a, httpx.URL | str) else a
                for a in record.args
            )
        return True


def install_httpx_redaction() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactSessionPaths) for f in httpx_log.filters):
        httpx_log.addFilter(_RedactSessionPaths())
