"""Every error appendq raises on purpose, classified once so that retrying can depend on the class.

AppendqError
├── ConfigError                 bad settings; refused at start
├── InputError                  a record or a submission is invalid (never retried)
│   └── RecordInvalid           carries one FieldError per bad field
└── LiveVoxError                anything the LiveVox client reports (status, code, message)
    ├── Transient               retry with backoff: 5xx, 429, connect failures
    │   ├── RateLimited         429: pause a full rate window
    │   ├── NotSent             nothing reached LiveVox (connect error/timeout): safe to resend
    │   └── AnswerLost          the body was sent, the answer was lost: batch is in doubt
    ├── SessionExpired          401 on an ordinary call: log in again, repeat once
    ├── Rejected                4xx about the content of the batch: reject, don't retry as is
    └── Configuration           no retry will fix it: operator must act
        ├── LoginDenied         bad access token or credentials
        ├── Forbidden           403: role may not append
        └── CampaignUnavailable 404 campaign, or it refuses appends (state, type, allow-append)
"""

from __future__ import annotations

from dataclasses import dataclass


class AppendqError(Exception):
    """Base of every error appendq raises on purpose."""


class ConfigError(AppendqError):
    pass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of one record. ``index`` is 0-based in the submission;
    ``row`` is the 1-based line of the input file where there is one."""

    index: int
    field: str
    message: str
    row: int | None = None

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else f"record {self.index}"
        return f"{where}: {self.field}: {self.message}"


class InputError(AppendqError):
    pass


class RecordInvalid(InputError):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


class LiveVoxError(AppendqError):
    """``status`` is the HTTP status (None when no answer came); ``code`` and ``message`` come
    from LiveVox's error body."""

    kind = "livevox"

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{message} (HTTP {status})" if status is not None else message)


class Transient(LiveVoxError):
    kind = "transient"


class RateLimited(Transient):
    kind = "rate_limited"


class NotSent(Transient):
    kind = "not_sent"


class AnswerLost(Transient):
    kind = "answer_lost"


class SessionExpired(LiveVoxError):
    kind = "session"


class Rejected(LiveVoxError):
    kind = "rejected"


class Configuration(LiveVoxError):
    kind = "configuration"


class LoginDenied(Configuration):
    kind = "login_denied"


class Forbidden(Configuration):
    kind = "forbidden"


class CampaignUnavailable(Configuration):
    kind = "campaign_unavailable"
