"""Who is calling the HTTP API, and what they may do.

A caller shows ``Authorization: Bearer <secret>``; the secret is compared with every configured
token (``appendq.http.tokens``), each in constant time. No token or an unknown one: 401. A known
token whose role may not use the endpoint: 403, naming the roles that may.

| role       | may                                                                          |
|------------|------------------------------------------------------------------------------|
| `intake`   | submit leads; look up the records it submitted itself (phones masked)        |
| `auditor`  | read: the audit, any lead (full phones), the retry preview, the status       |
| `operator` | what an auditor may, and act: retry batches                                  |

Health and metrics need no token. With no tokens configured (``--insecure-no-auth``, local demos
only) every caller is ``anonymous`` with every role. The audit records a caller as
``api:<token name>`` (``Caller.actor``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from appendq.http.refused import Refused
from appendq.http.tokens import ApiToken, Role

#: Who may call each kind of endpoint (``appendq.http.app`` puts them on its routes and in the
#: OpenAPI document). Empty: open, no token needed.
SUBMIT: tuple[Role, ...] = (Role.INTAKE,)
LOOKUP: tuple[Role, ...] = (Role.INTAKE, Role.AUDITOR, Role.OPERATOR)
READ: tuple[Role, ...] = (Role.AUDITOR, Role.OPERATOR)
ACT: tuple[Role, ...] = (Role.OPERATOR,)
OPEN: tuple[Role, ...] = ()

#: The roles that see every record and full phone numbers; intake sees only its own, masked.
READERS = frozenset(READ)


@dataclass(frozen=True)
class Caller:
    """Who called: ``name`` (the token's), its ``roles``, and ``scope``, a hash of its secret
    that keeps one caller's Idempotency-Keys apart from another's."""

    name: str
    roles: frozenset[Role]
    scope: str
    #: The LiveVox accounts this caller may act on; None: every one.
    accounts: frozenset[str] | None = None

    def may_use(self, account: str) -> bool:
        return self.accounts is None or account in self.accounts

    def require_account(self, account: str) -> Caller:
        """This caller if it may act on ``account``, else 403 naming it."""
        if self.may_use(account):
            return self
        assert self.accounts is not None
        raise Refused(
            403,
            f"the token {self.name!r} may not act on account {account!r} "
            f"(only {', '.join(sorted(self.accounts))})",
            field="account",
        )

    @property
    def actor(self) -> str:
        """The caller as the audit and the access log record it."""
        return f"api:{self.name}"

    @property
    def reads_all(self) -> bool:
        """Sees every record and full phone numbers (auditor, operator); else only the records
        it submitted, phones masked."""
        return bool(self.roles & READERS)

    def require(self, allowed: Sequence[Role]) -> Caller:
        """This caller if one of its roles is ``allowed`` (or nothing is required), else 403."""
        if not allowed or self.roles & set(allowed):
            return self
        names = [r.value for r in allowed]
        raise Refused(
            403,
            f"the token {self.name!r} ({', '.join(sorted(self.roles))}) may not do this: "
            f"it needs the role {' or '.join(names)}",
            extra={"roles": names},
        )


def roles_sentence(roles: Sequence[Role]) -> str:
    """Who may call an endpoint, as its OpenAPI description says it."""
    if not roles:
        return "Roles: none, no token needed."
    return f"Roles: {', '.join(r.value for r in roles)} (APPENDQ_API_TOKENS name:role:secret)."


ANONYMOUS = Caller("anonymous", frozenset(Role), "anonymous")


def authenticate(tokens: Sequence[ApiToken], authorization: str | None) -> Caller:
    """The caller behind ``Authorization: Bearer <token>``; every token is compared, each in
    constant time. With no tokens configured (``--insecure-no-auth``) everyone is anonymous."""
    if not tokens:
        return ANONYMOUS
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Refused(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    candidate = given.strip().encode()
    found: ApiToken | None = None
    for token in tokens:
        if hmac.compare_digest(candidate, token.get_secret_value().encode()):
            found = token
    if found is None:
        raise Refused(401, "invalid token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return caller_of(found)


def caller_of(token: ApiToken) -> Caller:
    """The caller a configured token makes."""
    digest = hashlib.sha256(token.get_secret_value().encode()).hexdigest()
    return Caller(token.name, frozenset({token.role}), digest, token.accounts)
