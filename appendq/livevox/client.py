"""The LiveVox API client: session, campaign search, Append, transactionList.

The session is an httpx auth flow (``appendq.livevox.session``): it logs in when needed, and a
read-only call that meets a 401 logs in again and is repeated once; an Append never is: it raises
``SessionExpired``, because the caller must take another rate-limit slot first. Errors are
classified here, once: ``classify`` for answers, ``classify_exception`` for transport failures.
Payloads are read in ``appendq.livevox.wire``.

No secret (access token, password, session id) and no full phone number reaches a log line or an
error message. The logout URL carries the session id, so a filter on httpx's logger hides it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from appendq.errors import LiveVoxError, SessionExpired, Transient
from appendq.livevox.classify import (
    classify,
    classify_exception,
    install_httpx_redaction,
    redact_session_path,
)
from appendq.livevox.session import LiveVoxSession
from appendq.livevox.wire import (
    MAX_PAGE,
    Campaign,
    Page,
    Transaction,
    api_path,
    check_page_size,
    dumps,
    epoch_ms,
    login_body,
    parse,
    read_phones,
)
from appendq.settings import Settings

__all__ = ["MAX_PAGE", "MAX_PAGES", "Campaign", "LiveVoxClient", "Transaction", "read_phones"]

log = logging.getLogger(__name__)

MAX_PAGES = 10_000  # a listing longer than this is taken for a paging loop


@dataclass(frozen=True)
class _Call:
    """One request as the client means it: ``mutating`` and ``campaign`` steer ``classify``."""

    method: str
    path: str
    params: Mapping[str, int] | None = None
    content: bytes | None = None
    mutating: bool = False
    campaign: bool = True


class LiveVoxClient:
    """One LiveVox session over one keep-alive ``httpx.Client``. Not thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        logout_on_close: bool = True,
    ) -> None:
        self._settings = settings
        self._logout_on_close = logout_on_close
        self._session = LiveVoxSession(settings, self._login_request)
        #: Malformed campaign entries skipped by searches so far (each one logged).
        self.skipped_campaigns = 0
        timeout = httpx.Timeout(
            connect=settings.livevox_connect_timeout_s,
            read=settings.livevox_read_timeout_s,
            write=settings.livevox_read_timeout_s,
            pool=settings.livevox_connect_timeout_s,
        )
        # Keep-alive with httpx's 5 s idle expiry: shorter than any server's idle timeout, so an
        # Append never goes out on a connection the server already closed (that would look lost).
        self._http = httpx.Client(
            base_url=settings.livevox_base_url,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
            auth=self._session,
        )
        install_httpx_redaction()

    def __enter__(self) -> LiveVoxClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def session_id(self) -> str | None:
        """The current LiveVox session id (secret: never log it)."""
        return self._session.session_id

    def close(self) -> None:
        """Log out if a session exists (errors ignored), then close the connection pool.

        LiveVox hands the same session to every login of one user, so logging out also ends the
        session of any other process using the same user: pass ``logout_on_close=False`` to
        short-lived clients (CLI commands) that share a user with running workers.
        """
        session = self._session.session_id
        try:
            if session is not None and self._logout_on_close:
                path = self._path("session", f"logout/{session}")
                self._send(_Call("DELETE", path), self._session.once())
        except LiveVoxError as exc:
            log.debug("LiveVox logout failed (ignored): %s", exc.kind)
        finally:
            self._session.forget()
            self._http.close()

    def login(self) -> None:
        """Open a session (LiveVox returns the current one if it is still valid). Raises
        ``LoginDenied`` when LiveVox refuses the credentials."""
        self._send(self._login_call(), self._session.logging_in)

    def find_campaigns(
        self,
        *,
        service_id: int | None,
        start: datetime,
        end: datetime,
        states: Sequence[str] = ("READY", "PAUSED", "PLAYING"),
        type_ids: Sequence[int] = (1,),
        page_size: int = 100,
    ) -> list[Campaign]:
        """Find Matching Campaigns whose date falls in [start, end] (timezone-aware), all pages."""
        check_page_size(page_size)
        body: dict[str, Any] = {"dateRange": {"from": epoch_ms(start), "to": epoch_ms(end)}}
        if service_id is not None:
            body["service"] = {"service": [{"id": service_id}]}
        if type_ids:
            body["type"] = {"type": [{"id": t} for t in type_ids]}
        if states:
            body["state"] = list(states)
        call = _Call("POST", self._path("campaign", "campaigns/search"), content=dumps(body))
        found: list[Campaign] = []
        for page in self._pages(call, page_size):
            good, skipped = page.campaigns()
            found += good
            if skipped:
                self._skipped(skipped, service_id)
        return found

    def _skipped(self, skipped: int, service_id: int | None) -> None:
        self.skipped_campaigns += skipped
        log.warning(
            "campaign search: %d malformed campaign entr%s skipped (no id, type, service or "
            "status)",
            skipped,
            "y" if skipped == 1 else "ies",
            extra={"skipped": skipped, "service": service_id},
        )

    def append(self, campaign_id: int, records: Sequence[Mapping[str, Any]]) -> float:
        """Append Campaign Record; return the seconds the PUT took.

        Never repeated here: a 401 clears the session and raises ``SessionExpired`` (nothing was
        appended; take another rate slot, the next call logs in). ``AnswerLost`` means the records
        may have landed; ``NotSent`` that they did not; ``Transient`` (neither) that the login
        before the PUT failed, so the PUT was not sent either.
        """
        if not records:
            raise ValueError("no records to append")
        body = dumps({"records": list(records)})  # compact UTF-8 JSON
        path = self._path("campaign", f"campaigns/{campaign_id}/transactions")
        if self._session.session_id is None:
            self.login()  # before the clock starts: the caller times the PUT alone
        started = time.perf_counter()
        self._call(_Call("PUT", path, content=body, mutating=True))
        return time.perf_counter() - started

    def transactions(self, campaign_id: int, *, page_size: int = 1000) -> Iterator[Transaction]:
        """Every account transaction of a campaign, page by page (lazily)."""
        check_page_size(page_size)
        call = _Call("GET", self._path("campaign", f"campaigns/{campaign_id}/transactionList"))
        for page in self._pages(call, page_size):
            yield from page.transactions()

    # -- plumbing ------------------------------------------------------------------------------

    def _path(self, service: str, rest: str) -> str:
        return api_path(self._settings.livevox_api_version, service, rest)

    def _pages(self, call: _Call, page_size: int) -> Iterator[Page]:
        """Page on with ``offset`` while ``next`` is set and the page held something.

        A short page does not end the listing: LiveVox may cap a page below ``count``, and only
        an empty ``next`` says there is no more. An empty page ends it too (``next`` or not), so
        a server that always sets ``next`` cannot loop us; ``MAX_PAGES`` bounds the rest.
        """
        offset = 0
        for _ in range(MAX_PAGES):
            params = {"count": page_size, "offset": offset}
            page = parse(Page, self._call(replace(call, params=params)), call.path)
            yield page
            offset += page.size
            if not page.next or page.size == 0:
                return
        raise Transient(f"{call.path}: still a next page after {MAX_PAGES} pages; giving up")

    def _call(self, call: _Call) -> httpx.Response:
        """One call in the session; the session's flow logs in as needed and, on a 401, logs in
        again and repeats the call once, unless it is mutating (``once``: never repeated)."""
        auth = self._session.once(level=logging.INFO) if call.mutating else self._session
        response = self._send(call, auth)
        secrets = self._session.secrets()
        error = classify(response, mutating=call.mutating, campaign=call.campaign, secrets=secrets)
        if error is None:
            return response
        if isinstance(error, SessionExpired):
            self._session.forget()
        raise error

    def _send(self, call: _Call, auth: httpx.Auth) -> httpx.Response:
        """One call through ``auth``'s flow (which logs each exchange); a transport failure
        becomes a LiveVox error, classified for this call, and is logged."""
        started = time.perf_counter()
        try:
            return self._http.send(self._request(call), auth=auth)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = classify_exception(exc, mutating=call.mutating)
            ms = (time.perf_counter() - started) * 1000
            shown, name = redact_session_path(call.path), type(exc).__name__
            log.warning("LiveVox %s %s failed after %.0f ms: %s", call.method, shown, ms, name)
            raise error from exc

    def _request(self, call: _Call) -> httpx.Request:
        headers = {"Content-Type": "application/json"} if call.content is not None else None
        return self._http.build_request(
            call.method, call.path, params=call.params, content=call.content, headers=headers
        )

    def _login_call(self) -> _Call:
        body = dumps(login_body(self._settings))
        return _Call("POST", self._path("session", "login"), content=body, campaign=False)

    def _login_request(self) -> httpx.Request:
        """The login request the session's flow sends when it must log in."""
        return self._request(self._login_call())
