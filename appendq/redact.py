"""What must not be shown whole, hidden in one place: phone numbers (in logs, errors, reports) and
known secrets (access token, password, API tokens, session ids).

- ``mask_phone``: one phone number, its last 4 characters kept.
- ``phone_runs`` / ``mask_phones``: the phone-like runs of free text (7+ digits, maybe punctuated,
  a date aside), found or masked to their last 4 digits.
- ``scrub`` / ``scrub_value``: known secrets blanked, then phone numbers masked, in a text or in
  a structured value however nested (a log record's ``extra`` fields, a JSON report).
- ``settings_secrets``: the secrets the settings hold, which every scrubber blanks.

Used by the log filter (``appendq.logs``), LiveVox's error messages (``appendq.livevox.classify``),
the doctor's report and every place that shows a phone number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from appendq.accounts import load_accounts
from appendq.errors import ConfigError

if TYPE_CHECKING:
    from appendq.settings import Settings

#: A run that looks like a phone number: 7+ digits, at most two of `` ().-`` between two digits.
PHONE_LIKE = re.compile(r"(?<!\w)\+?\d(?:[ ().-]{0,2}\d){6,}")
#: A run of that shape that is a date, not a phone number.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[/-]\d{2}[/-]\d{4}")
SECRET_MASK = "***"
_MAX_DEPTH = 20


def mask_phone(phone: str) -> str:
    """Keep the last 4 characters: ``2125551234`` -> ``******1234``."""
    digits = len(phone)
    return "*" * max(digits - 4, 0) + phone[-4:] if digits > 4 else "*" * digits


def phone_runs(text: str) -> Iterator[re.Match[str]]:
    """Every phone-like run of ``text`` that is not a date, in order."""
    for match in PHONE_LIKE.finditer(text):
        if not _DATE.fullmatch(match.group()):
            yield match


def mask_phones(text: str) -> str:
    """Every phone-like run (a date aside) replaced by its digits, all but the last 4 masked."""
    return PHONE_LIKE.sub(_mask_run, text)


def _mask_run(match: re.Match[str]) -> str:
    run = match.group()
    return run if _DATE.fullmatch(run) else mask_phone(re.sub(r"\D", "", run))


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``secrets`` blanked (empty ones ignored), then phone numbers masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, SECRET_MASK)
    return mask_phones(text)


def scrub_value(value: object, secrets: Iterable[str] = (), depth: int = 0) -> object:
    """``scrub`` applied to a structured value, however nested (Celery's ``data.traceback`` is a
    dict): strings and keys scrubbed, containers walked (a tuple or set becomes a list), any other
    object by its text. Numbers, booleans and None pass unchanged."""
    if value is None or isinstance(value, bool | int | float):
        return value
    secrets = secrets if isinstance(secrets, list | tuple) else list(secrets)
    if isinstance(value, str):
        return scrub(value, secrets)
    if depth >= _MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, dict):
        return {
            scrub(str(k), secrets): scrub_value(v, secrets, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_value(v, secrets, depth + 1) for v in value]
    return scrub(str(value), secrets)


def settings_secrets(settings: Settings) -> list[str]:
    """The secrets the settings hold: LiveVox's password and access token (of every account of
    APPENDQ_ACCOUNTS_FILE too), the API tokens, the data keys."""
    return [
        *_account_secrets(settings),
        settings.livevox_password.get_secret_value(),
        settings.livevox_access_token.get_secret_value(),
        *(t.get_secret_value() for t in settings.api_tokens),
        *(k.get_secret_value() for k in settings.data_keys),
    ]


def _account_secrets(settings: Settings) -> list[str]:
    """Every account's password and access token. A bad accounts file hides none: it holds no
    secret, and the entry point refuses to start on it right after logging is set up."""
    try:
        accounts = load_accounts(settings)
    except ConfigError:
        return []
    return [
        secret.get_secret_value()
        for account in accounts.values()
        for secret in (account.settings.livevox_password, account.settings.livevox_access_token)
    ]
