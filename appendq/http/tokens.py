"""The HTTP API's tokens as ``APPENDQ_API_TOKENS`` configures them: ``name:role:secret``, comma
separated.

- **name**: 1 to 48 characters of ``A-Z a-z 0-9 _ . -``; the audit records the caller as
  ``api:<name>``.
- **role**: ``intake``, ``auditor`` or ``operator`` (``Role``; what each may do is in
  ``appendq.http.auth``), optionally limited to some LiveVox accounts: ``intake@acme`` or
  ``operator@acme+beta`` (account names: ``appendq.accounts``). A token limited to accounts may
  only enqueue to, read and act on those; without ``@`` it may on every account.
- **secret**: the rest of the entry (it may hold ``:``), the bearer token itself.

A bare token (no ``:`` at all, as before roles existed) is an ``intake`` token named
``token-<N>``, N its 1-based position in the list: least privilege. An entry with a ``:`` that is
not ``name:role:secret``, a name or a secret given twice, is a configuration error naming the entry
by its position (and its name once that is known to be one), never by its secret.

``ApiToken`` is a ``SecretStr`` whose ``get_secret_value()`` is the secret alone: whatever blanks
the settings' secrets (``appendq.redact.settings_secrets``) blanks it, and it never shows in a repr.
``Settings.api_tokens`` is read by ``parse_tokens``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import StrEnum

from pydantic import SecretStr

NAME = re.compile(r"[A-Za-z0-9_.-]{1,48}")
#: An account name as ``appendq.accounts.NAME`` has it (kept here: settings read tokens).
ACCOUNT = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SETTING = "APPENDQ_API_TOKENS"


class Role(StrEnum):
    INTAKE = "intake"
    AUDITOR = "auditor"
    OPERATOR = "operator"


ROLES = ", ".join(r.value for r in Role)


class ApiToken(SecretStr):
    """One configured token: ``name`` (for the audit), ``role``, and the secret. ``bare``: it was
    configured without a name and role."""

    def __init__(
        self,
        secret: str,
        name: str,
        role: Role,
        *,
        bare: bool = False,
        accounts: frozenset[str] | None = None,
    ) -> None:
        super().__init__(secret)
        self.name = name
        self.role = role
        self.bare = bare
        #: The LiveVox accounts this token may act on; None: every one.
        self.accounts = accounts

    def __repr__(self) -> str:
        limited = f", accounts={sorted(self.accounts)!r}" if self.accounts is not None else ""
        return f"ApiToken(name={self.name!r}, role={self.role.value!r}{limited})"


def parse_entry(entry: str, position: int) -> ApiToken:
    """One entry of the setting (``position`` 1-based): a named token or a bare one;
    ``ValueError`` saying what is wrong without echoing any part that may be secret."""
    if ":" not in entry:
        return ApiToken(entry, f"token-{position}", Role.INTAKE, bare=True)
    name, _, rest = entry.partition(":")
    role_text, _, secret = rest.partition(":")
    role, at, limits = role_text.partition("@")
    where = f"{SETTING} entry {position}"
    expected = "expected name:role:secret; a bare token has no ':'"
    if not NAME.fullmatch(name):
        raise ValueError(f"{where}: the name is not 1-48 of A-Z a-z 0-9 _ . - ({expected})")
    if role not in {r.value for r in Role}:
        # not named: an entry that is not name:role:... may be a secret holding ':'
        raise ValueError(f"{where}: the role is not one of {ROLES} ({expected})")
    accounts = frozenset(limits.split("+")) if at else None
    if accounts is not None and not all(ACCOUNT.fullmatch(a) for a in accounts):
        raise ValueError(
            f"{where} ({name!r}): after {role}@ come account names joined by + (a-z, 0-9, _ and -)"
        )
    if not secret.strip():
        raise ValueError(f"{where} ({name!r}): the secret is empty")
    return ApiToken(secret.strip(), name, Role(role), accounts=accounts)


def parse_tokens(value: object) -> object:
    """The setting as given (comma-separated text, or a list of texts, SecretStrs or tokens) ->
    a list of ``ApiToken``; empty entries are skipped, positions count the others. Raises
    ``ValueError`` for a malformed entry or a name or secret given twice."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        return value  # pydantic refuses it, by type
    tokens: list[ApiToken] = []
    for item in value:
        text = item.get_secret_value() if isinstance(item, SecretStr) else item
        if isinstance(item, ApiToken):
            tokens.append(item)
        elif not isinstance(text, str):
            return value  # pydantic refuses it, by type
        elif text.strip():
            tokens.append(parse_entry(text.strip(), len(tokens) + 1))
    return check_unique(tokens)


def check_unique(tokens: Sequence[ApiToken]) -> list[ApiToken]:
    """``ValueError`` for a name or a secret given twice (naming the entries, never a secret)."""
    names: dict[str, int] = {}
    secrets: dict[str, ApiToken] = {}
    for position, token in enumerate(tokens, 1):
        if token.name in names:
            raise ValueError(
                f"{SETTING}: the name {token.name!r} is given twice (entries "
                f"{names[token.name]} and {position})"
            )
        names[token.name] = position
        twin = secrets.setdefault(token.get_secret_value(), token)
        if twin is not token:
            raise ValueError(
                f"{SETTING}: {twin.name!r} and {token.name!r} have the same secret (entries "
                f"{names[twin.name]} and {position}): give each caller its own"
            )
    return list(tokens)


def as_tokens(items: Iterable[SecretStr]) -> list[ApiToken]:
    """The tokens of ``Settings.api_tokens``; a plain ``SecretStr`` there (settings built without
    validation, as ``model_copy`` does) is read as an entry of the setting."""
    parsed = parse_tokens([i for i in items if i.get_secret_value()])
    assert isinstance(parsed, list)
    return parsed
