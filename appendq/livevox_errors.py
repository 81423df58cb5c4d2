"""How LiveVox's answers and transport failures are classified, once, for the whole project, and
how error text is cleaned before it reaches a log line or an exception: secrets blanked, phone
numbers masked, length capped. Pure functions, unit-tested with ``httpx.MockTransport``."""

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
    NotSent,
    RateLimited,
    Rejected,
    SessionExpired,
    Transient,
)
from appendq.records import mask_phone

MESSAGE_MAX = 500
_PHONE_LIKE = re.compile(r"(?<!\w)\+?\d(?:[ ().-]{0,2}\d){6,}")  # 7+ digits, maybe punctuated
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
    if status == 202:
        message = "partial success (202)" + (f": {message}" if message else "")
    return _error_class(status, mutating=mutating, campaign=campaign)(
        message or response.reason_phrase or "no message", status=status, code=code
    )


def _error_class(status: int, *, mutating: bool, campaign: bool) -> type[LiveVoxError]:
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
    """Blank out ``secrets``, mask phone-like digit runs, cut to MESSAGE_MAX characters."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _PHONE_LIKE.sub(lambda m: mask_phone(re.sub(r"\D", "", m.group())), text)
    text = " ".join(text.split())
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


# -- LiveVox payloads (the edge: pydantic) -----------------------------------------------------
