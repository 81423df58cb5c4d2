"""Signing in to the console: a token (one of APPENDQ_API_TOKENS) for a session cookie.

- ``POST /ui/login`` with the form field ``token``: the token is checked as the API checks a
  bearer token (``appendq.http.auth``, constant time). An auditor or an operator gets a session;
  an intake token is refused (it may only submit leads and read back its own).
- The session is a random 256-bit id in an HttpOnly, SameSite=Lax session cookie (Secure over
  HTTPS or with APPENDQ_CONSOLE_SECURE_COOKIE), scoped to ``/ui``: a link from a ticket or a chat
  opens the page signed in, and no other site can post a form (each carries the CSRF value).
  Redis keeps, under the SHA-256 of that id (``Keys.console_session``), only the token's *name*,
  the SHA-256 of its secret, the CSRF secret and the sign-in time: no token, no cookie. Each
  request finds the token again by name and checks its secret's hash, so a token removed from
  APPENDQ_API_TOKENS, given another role or another secret ends its sessions. A session ends
  after ``IDLE_S`` without a page asked by the visitor (the overview's own refreshes do not
  count), after ``MAX_S`` in all, or at sign-out; signing in again ends the previous session.
- CSRF: every state-changing form carries the session's CSRF secret (``csrf``), compared in
  constant time; the sign-in form carries a one-time value also set as a short-lived cookie
  (double submit), so that no other site can sign a browser in as someone else.
- With no tokens configured (``--insecure-no-auth``) the console needs no sign-in and every
  visitor is ``anonymous`` with every role, as the API is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from appendq.http.auth import ANONYMOUS, Caller, authenticate, caller_of
from appendq.http.refused import Refused
from appendq.http.tokens import ApiToken, Role
from appendq.keys import Keys

COOKIE = "appendq_console"
LOGIN_COOKIE = "appendq_console_login"
#: A session ends after this long without a request...
IDLE_S = 3600
#: ...and after this long in all.
MAX_S = 12 * 3600
#: The roles that may use the console (auditors read, operators also act).
CONSOLE_ROLES = frozenset({Role.AUDITOR, Role.OPERATOR})


@dataclass(frozen=True)
class Signed:
    """A signed-in visitor: who (``caller``) and the session's CSRF secret."""

    caller: Caller
    csrf: str

    @property
    def actor(self) -> str:
        """The visitor as the audit records an action in the console."""
        return f"console:{self.caller.name}"

    @property
    def may_act(self) -> bool:
        return Role.OPERATOR in self.caller.roles


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleSessions:
    """The console's sessions, in Redis under ``keys`` (the deployment's prefix)."""

    def __init__(self, client: redis.Redis, keys: Keys, tokens: Sequence[ApiToken]) -> None:
        self.redis = client
        self.keys = keys
        self.tokens = list(tokens)

    @property
    def open(self) -> bool:
        """No tokens configured: no sign-in, everyone is anonymous."""
        return not self.tokens

    def sign_in(self, secret: str) -> tuple[str, Signed]:
        """(the new session's cookie value, who signed in); ``Refused`` 401 for an unknown
        token, 403 for one whose role may not use the console."""
        caller = authenticate(self.tokens, f"Bearer {secret.strip()}")
        if not caller.roles & CONSOLE_ROLES:
            raise Refused(
                403,
                f"the token {caller.name!r} is an intake token: it may submit leads, not use "
                "the console (sign in with an auditor or operator token)",
            )
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        key = self.keys.console_session(_digest(session_id))
        with self.redis.pipeline() as pipe:
            pipe.hset(key, "name", caller.name)
            pipe.hset(key, "scope", caller.scope)
            pipe.hset(key, "csrf", csrf)
            pipe.hset(key, "at", str(int(time.time())))
            pipe.expire(key, IDLE_S)
            pipe.execute()
        return session_id, Signed(caller, csrf)

    def find(self, session_id: str | None, *, touch: bool = True) -> Signed | None:
        """Who holds this cookie, if its session is alive and its token still configured with
        the same role and secret; with ``touch`` (a page the visitor asked for) the idle end is
        pushed back."""
        if self.open:
            return Signed(ANONYMOUS, _open_csrf(self.redis, self.keys))
        if not session_id or len(session_id) > 128:
            return None
        key = self.keys.console_session(_digest(session_id))
        found = {_text(k): _text(v) for k, v in self.redis.hgetall(key).items()}
        if not found or time.time() - int(found.get("at", "0")) > MAX_S:
            return None
        token = next((t for t in self.tokens if t.name == found.get("name")), None)
        caller = caller_of(token) if token is not None else None
        if (
            caller is None
            or not caller.roles & CONSOLE_ROLES
            or not same(found.get("scope"), caller.scope)
        ):
            self.redis.delete(key)
            return None
        if touch:
            self.redis.expire(key, IDLE_S)
        return Signed(caller, found["csrf"])

    def sign_out(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 128:
            self.redis.delete(self.keys.console_session(_digest(session_id)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _open_csrf(client: redis.Redis, keys: Keys) -> str:
    """Without sign-in there is no session to hold a CSRF secret: one kept in Redis for the
    deployment (every ``--workers`` process shares it) keeps other sites' forms out all the
    same."""
    key = keys.console_session("open-csrf")
    client.set(key, secrets.token_urlsafe(32), nx=True)
    found = client.get(key)
    return _text(found) if found is not None else ""


def same(given: str | None, expected: str) -> bool:
    """``given`` equals ``expected``, compared in constant time (a missing value never does)."""
    return (
        bool(expected)
        and given is not None
        and hmac.compare_digest(given.encode(), expected.encode())
    )
