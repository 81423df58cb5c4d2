"""Every error appendq raises on purpose, classified once so that retrying can depend on the class.

AppendqError
├── ConfigError                 bad settings; refused at start
├── InputError                  a record or a submission is invalid (never retried)
│   ├── RecordInvalid           carries one FieldError per bad field
│   ├── InvalidValue            an id, a search term or operator text that cannot be used (field)
│   │   └── TooManyTargets      a new target past APPENDQ_MAX_TARGETS
│   ├── PhoneBudgetExceeded     more phones in one submission than APPENDQ_INTAKE_MAX_PHONES
│   └── ValidationBudgetExceeded  validating one submission past APPENDQ_INTAKE_VALIDATION_BUDGET_S
└── LiveVoxError                anything the LiveVox client reports (status, code, message)
    ├── Transient               retry with backoff: 5xx, 429, connect failures
    │   ├── RateLimited         429: pause a full rate window
    │   ├── NotSent             nothing reached LiveVox (connect error/timeout): safe to resend
    │   ├── AnswerLost          the body was sent, the answer was lost: batch is in doubt
    │   └── SearchDeferred      a campaign search not in the account's budget: no call made
    ├── SessionExpired          401 on an ordinary call: log in again, repeat once
    ├── Rejected                4xx about the content of the batch: reject, don't retry as is
    ├── CampaignUnavailable     404 campaign, or it refuses appends (state, type, allow-append),
    │                           whatever the status (400/403/404/409), recognised by meaning:
    │                           skip that campaign a while, the batch waits for another one
    └── Configuration           no retry will fix it: operator must act
        ├── LoginDenied         bad access token or credentials
        ├── Forbidden           403: role may not append
        └── TargetRefused       403 on the campaign search of one service: set that target aside

``CampaignUnavailable`` is neither transient (the same call to the same campaign would fail the
same way) nor configuration (nothing is wrong with the account): the Append is retried on another
campaign, or later on the same one (held while a pinned campaign refuses). Code that treats a
refused *read* about a campaign like a configuration error names both classes.
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


class InvalidValue(InputError, ValueError):
    """A value the caller gave that cannot be used: an id outside the column it is stored in,
    text with a control character, an operator's reason too long. ``field`` names it (the
    parameter or option). HTTP: 422; CLI: a one-line error, exit 2."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class TooManyTargets(InvalidValue):
    """A submission would create a target past APPENDQ_MAX_TARGETS (``field``: service or
    campaign). Existing targets keep working. HTTP: 429 or 422."""


class PhoneBudgetExceeded(InputError):
    """One submission holds more phone numbers than APPENDQ_INTAKE_MAX_PHONES: refused whole,
    before any validation. HTTP: 413."""

    def __init__(self, phones: int, limit: int) -> None:
        self.phones = phones
        self.limit = limit
        super().__init__(
            f"{phones:,} phone numbers in one submission: at most {limit:,} "
            "(APPENDQ_INTAKE_MAX_PHONES); split it"
        )


class ValidationBudgetExceeded(InputError):
    """Validating one submission took longer than APPENDQ_INTAKE_VALIDATION_BUDGET_S: refused
    whole, nothing queued (one request never holds an intake worker for seconds). HTTP: 413."""

    def __init__(self, budget_s: float, checked: int, total: int) -> None:
        self.budget_s = budget_s
        super().__init__(
            f"validating this submission took over {budget_s:g} s (checked {checked:,} of "
            f"{total:,} records; APPENDQ_INTAKE_VALIDATION_BUDGET_S): nothing was queued; send "
            "fewer records, or fewer phone numbers a record, per request"
        )


@dataclass(frozen=True)
class Named:
    """What an error message named, read from the raw text before it was cleaned: record numbers
    (as written: 0- or 1-based is unknown) and phone numbers (canonical digits). Phone numbers
    are personal data: never log or print this."""

    numbers: tuple[int, ...] = ()
    phones: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.numbers or self.phones)

    def __repr__(self) -> str:  # never show the phones
        return f"Named(numbers={self.numbers}, phones={len(self.phones)})"


class LiveVoxError(AppendqError):
    """``status`` is the HTTP status (None when no answer came); ``code`` and ``message`` come
    from LiveVox's error body; ``named`` is what the raw message named (see ``Named``)."""

    kind = "livevox"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        named: Named | None = None,
    ):
        self.status = status
        self.code = code
        self.message = message
        self.named = named or Named()
        super().__init__(f"{message} (HTTP {status})" if status is not None else message)


class Transient(LiveVoxError):
    kind = "transient"


class RateLimited(Transient):
    kind = "rate_limited"


class NotSent(Transient):
    kind = "not_sent"


class AnswerLost(Transient):
    kind = "answer_lost"

    @property
    def answered(self) -> bool:
        """LiveVox answered (a 500, 503, 202...): its work on the call is over, so it can be
        reconciled after a short settle. A timeout, a dropped connection or a gateway's 502/504
        (LiveVox may still be working behind it) waits the whole call deadline."""
        return self.status is not None and self.status not in (502, 504)


class SearchDeferred(Transient):
    """A campaign search that is not in the account's search budget: no call was made; the
    target waits (``retry_after_s``)."""

    kind = "search_deferred"

    def __init__(self, message: str, *, retry_after_s: float):
        self.retry_after_s = retry_after_s
        super().__init__(message)


class SessionExpired(LiveVoxError):
    kind = "session"


class Rejected(LiveVoxError):
    kind = "rejected"


class CampaignUnavailable(LiveVoxError):
    """The campaign refuses appends, or is gone: about that campaign, not the records nor the
    account (see the module docstring)."""

    kind = "campaign_unavailable"


class Configuration(LiveVoxError):
    kind = "configuration"


class LoginDenied(Configuration):
    kind = "login_denied"


class Forbidden(Configuration):
    kind = "forbidden"


class TargetRefused(Configuration):
    """A 403 on the campaign search of one service: about that service (the caller sets the
    target aside), not about the account."""

    kind = "target_refused"
