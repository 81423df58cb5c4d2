"""LiveVox's session as an httpx auth flow, shaped like httpx's ``DigestAuth``: send, see the 401,
log in, resend.

Every request carries the access token (``LV-Access``); a request in the session also carries the
session id (``LV-Session``), after a login when there is none yet. A read-only request that meets a
401 logs in again and is resent, once; a second 401 comes back to the caller. A request sent with
``once()`` (an Append, the logout) is never resent here, whatever the answer: an Append's 401 comes
back as it is (the client raises ``SessionExpired``: nothing was appended, and the caller takes
another rate-limit slot before it sends again), and a doubtful answer is never repeated.

Each exchange the flow makes is logged in one line: method, path (a session id in it hidden),
status and time; never a header, a body or a secret. A login's answer is read here: a 4xx but 429
is ``LoginDenied``; anything else that is not a session id is classified like any read.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Generator
from functools import partial

import httpx

from appendq.errors import LoginDenied
from appendq.livevox.classify import classify, error_body, redact_session_path
from appendq.livevox.wire import LoginOut, parse
from appendq.redact import settings_secrets
from appendq.settings import Settings

log = logging.getLogger(__name__)

Flow = Generator[httpx.Request, httpx.Response, None]


class LiveVoxSession(httpx.Auth):
    """Holds the session id (secret: never log it) and logs in. Its own ``auth_flow`` is the one
    for read-only requests; ``once()`` and ``logging_in`` give the others. Not thread-safe."""

    requires_response_body = True  # a login's answer is read inside the flow

    def __init__(self, settings: Settings, login_request: Callable[[], httpx.Request]) -> None:
        self._settings = settings
        self._login_request = login_request
        self._session: str | None = None
        # Every session id seen, blanked from error text; a few suffice (a session lives hours).
        self._seen: deque[str] = deque(maxlen=8)

    @property
    def session_id(self) -> str | None:
        return self._session

    def forget(self) -> None:
        """Drop the session id: the next request in the session logs in first."""
        self._session = None

    def secrets(self) -> tuple[str, ...]:
        """What no error text may show: the settings' secrets and the session ids seen."""
        return (*settings_secrets(self._settings), *self._seen)

    def auth_flow(self, request: httpx.Request) -> Flow:
        """A read-only request: in the session; after a 401, a new login and one resend."""
        return self._in_session(request, resend=True, level=logging.DEBUG)

    def once(self, *, level: int = logging.DEBUG) -> httpx.Auth:
        """The flow of a request never resent here (an Append, the logout), logged at ``level``."""
        return _Bound(partial(self._in_session, resend=False, level=level))

    @property
    def logging_in(self) -> httpx.Auth:
        """The flow of a login request: the access token only; the answer opens the session."""
        return _Bound(self._login)

    def _in_session(self, request: httpx.Request, *, resend: bool, level: int) -> Flow:
        if self._session is None:
            yield from self._login(self._login_request())
        response = yield from self._exchange(self._sign(request), level)
        if response.status_code != 401 or not resend:
            return
        shown = _shown(request)
        log.info("LiveVox session expired on %s %s; logging in again", request.method, shown)
        self._session = None
        yield from self._login(self._login_request())
        yield from self._exchange(self._sign(_copy(request)), level)

    def _login(self, request: httpx.Request) -> Flow:
        request.headers["LV-Access"] = self._settings.livevox_access_token.get_secret_value()
        response = yield from self._exchange(request, logging.DEBUG)
        session = self._read_login(response)
        self._session = session
        if session not in self._seen:
            self._seen.append(session)

    def _sign(self, request: httpx.Request) -> httpx.Request:
        assert self._session is not None
        request.headers["LV-Access"] = self._settings.livevox_access_token.get_secret_value()
        request.headers["LV-Session"] = self._session
        return request

    def _read_login(self, response: httpx.Response) -> str:
        """The session id a login answer opens, or the error it means."""
        status = response.status_code
        if 400 <= status < 500 and status != 429:
            code, message = error_body(response, self.secrets())
            s = self._settings
            raise LoginDenied(
                f"LiveVox login denied for client {s.livevox_client_name!r} user "
                f"{s.livevox_username!r}: {message}",
                status=status,
                code=code,
            )
        error = classify(response, mutating=False, campaign=False, secrets=self.secrets())
        if error is not None:
            raise error
        return parse(LoginOut, response, "login").session_id

    @staticmethod
    def _exchange(
        request: httpx.Request, level: int
    ) -> Generator[httpx.Request, httpx.Response, httpx.Response]:
        """Send one request (the client does) and log the exchange in one line."""
        started = time.perf_counter()
        response = yield request
        ms = (time.perf_counter() - started) * 1000
        method, shown, status = request.method, _shown(request), response.status_code
        extra = {"lv_method": method, "lv_path": shown, "lv_status": status, "lv_ms": round(ms)}
        log.log(level, "LiveVox %s %s -> %s in %.0f ms", method, shown, status, ms, extra=extra)
        return response


class _Bound(httpx.Auth):
    """One of the session's flows with its options bound, for one request (``auth=``)."""

    requires_response_body = True

    def __init__(self, flow: Callable[[httpx.Request], Flow]) -> None:
        self._flow = flow

    def auth_flow(self, request: httpx.Request) -> Flow:
        return self._flow(request)


def _copy(request: httpx.Request) -> httpx.Request:
    """The same request, to send again: the first one stays as it was sent."""
    return httpx.Request(
        request.method,
        request.url,
        headers=request.headers,
        content=request.content,
        extensions=request.extensions,
    )


def _shown(request: httpx.Request) -> str:
    """The path as logged: the logout's carries the session id, hidden."""
    return redact_session_path(request.url.path)
