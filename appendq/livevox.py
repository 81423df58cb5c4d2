"""The LiveVox API client: session, campaign search and details, Append, transactionList.

Errors are classified here, once: ``classify`` for answers, ``classify_exception`` for transport
failures. A read-only call that meets a 401 logs in again and is repeated once; an Append never is:
it raises ``SessionExpired``, because the caller must take another rate-limit slot first.

No secret (access token, password, session id) and no full phone number reaches a log line or an
error message. The logout URL carries the session id, so a filter on httpx's logger hides it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from appendq.errors import (
    LiveVoxError,
    LoginDenied,
    SessionExpired,
    Transient,
)
from appendq.livevox_errors import (
    classify,
    classify_exception,
    error_body,
    install_httpx_redaction,
    redact_session_path,
)
from appendq.settings import Settings

log = logging.getLogger(__name__)

MAX_PAGE = 1000  # LiveVox's largest page for search and transactionList
MAX_PAGES = 10_000  # a listing longer than this is taken for a paging loop
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    type_id: int
    service_id: int
    status: str
    upload_date_ms: int | None


@dataclass(frozen=True)
class Transaction:
    transaction_id: str | None
    account: str | None
    phones: tuple[str, ...]


# -- classification: pure functions ------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, coerce_numbers_to_str=True)


class _LoginOut(_Payload):
    session_id: str = Field(alias="sessionId", min_length=1)


class _CampaignOut(_Payload):
    id: int | None = None  # the details answer may leave it out
    name: str = ""
    type_id: int = Field(alias="typeId")
    service_id: int = Field(alias="serviceId")
    status: str = Field(validation_alias=AliasChoices("status", "state"))
    upload_date: int | None = Field(default=None, alias="uploadDate")

    def to_campaign(self, default_id: int) -> Campaign:
        ident = default_id if self.id is None else self.id
        status = self.status.strip().upper()
        return Campaign(ident, self.name, self.type_id, self.service_id, status, self.upload_date)


class _SearchCampaignOut(_CampaignOut):
    id: int


_PHONE_KEYS = ("phone", "phoneNumber", "number", "value")
_ORDINAL_KEYS = ("ordinal", "order", "index", "position")


def read_phones(*sources: Any) -> tuple[str, ...]:
    """The phones of a transaction, phone1 first, from the first source that yields any.

    LiveVox's key and shape are unconfirmed: ``phone`` (the .NET client) or ``phones`` (the Java
    client), a list of ``{"phone", "ordinal"}`` objects or of plain strings, or one of either.
    Where entries carry an ordinal, the lowest is phone1; else list order decides. An entry
    without a digit is no phone. ``()`` means no readable phone: never evidence of absence.
    """
    for source in sources:
        entries = [_phone_entry(item) for item in _as_list(source)]
        found = [(order, n, phone) for n, (order, phone) in enumerate(entries) if phone]
        if found:
            found.sort(key=lambda e: (e[0] is None, e[0] if e[0] is not None else 0, e[1]))
            return tuple(phone for _, _, phone in found)
    return ()


def _as_list(source: Any) -> list[Any]:
    if source is None:
        return []
    return list(source) if isinstance(source, list | tuple) else [source]


def _phone_entry(item: Any) -> tuple[float | None, str | None]:
    """(ordinal, phone) of one entry, either None where absent or unreadable."""
    value: Any = item
    order: Any = None
    if isinstance(item, dict):
        value = next((item[k] for k in _PHONE_KEYS if item.get(k) not in (None, "")), None)
        order = next((item[k] for k in _ORDINAL_KEYS if item.get(k) is not None), None)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, None
    phone = str(value).strip()
    if not any(ch.isdigit() for ch in phone):
        return None, None
    try:
        ordinal = float(order) if order is not None and not isinstance(order, bool) else None
    except (TypeError, ValueError):
        ordinal = None
    return ordinal, phone


class _TransactionOut(_Payload):
    transaction_id: str | None = Field(default=None, alias="accountTransactionId")
    account: str | None = None
    phone: Any = None
    phones: Any = None
    phone1: Any = None

    def to_transaction(self) -> Transaction:
        phones = read_phones(self.phone, self.phones, self.phone1)
        return Transaction(self.transaction_id, self.account or None, phones)


_UNREADABLE = Transaction(None, None, ())


class _Page(_Payload):
    """A page of campaign search (``campaign``) or of transactionList (``transaction``). Entries
    are read one by one: one malformed entry never fails the page."""

    next: str | None = None
    campaign: list[Any] = Field(default_factory=list)
    transaction: list[Any] = Field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.campaign) + len(self.transaction)

    def transactions(self) -> Iterator[Transaction]:
        """Every entry; one that can't be read is a transaction without phones (unreadable)."""
        for entry in self.transaction:
            try:
                yield _TransactionOut.model_validate(entry).to_transaction()
            except ValidationError:
                yield _UNREADABLE

    def campaigns(self) -> tuple[list[Campaign], int]:
        """The well-formed campaigns, and how many malformed entries were skipped."""
        good: list[Campaign] = []
        for entry in self.campaign:
            try:
                parsed = _SearchCampaignOut.model_validate(entry)
            except ValidationError:
                continue
            if parsed.status:
                good.append(parsed.to_campaign(parsed.id))
        return good, len(self.campaign) - len(good)


_P = TypeVar("_P", bound=BaseModel)


def _parse(model: type[_P], response: httpx.Response, what: str) -> _P:
    """Validate an answer; the message never quotes it (it may hold phone numbers)."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError:
        raise Transient(
            f"unexpected answer to {what}: not the documented shape", status=response.status_code
        ) from None


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _check_page_size(page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE:
        raise ValueError(f"page_size must be 1..{MAX_PAGE}, not {page_size}")


# -- the client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """One request as the client means it: ``mutating`` and ``campaign`` steer ``classify``."""

    method: str
    path: str
    params: Mapping[str, int] | None = None
    content: bytes | None = None
    mutating: bool = False
    campaign: bool = True
    log_path: str | None = None  # the path as logged, where the real one carries the session id


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
        self._ver = settings.livevox_api_version.strip().strip("/")
        self._logout_on_close = logout_on_close
        self._session: str | None = None
        # Every session id seen, blanked from error text; a few suffice (a session lives hours).
        self._seen_sessions: deque[str] = deque(maxlen=8)
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
        return self._session

    def close(self) -> None:
        """Log out if a session exists (errors ignored), then close the connection pool.

        LiveVox hands the same session to every login of one user, so logging out also ends the
        session of any other process using the same user: pass ``logout_on_close=False`` to
        short-lived clients (CLI commands) that share a user with running workers.
        """
        session, self._session = self._session, None
        try:
            if session is not None and self._logout_on_close:
                path = self._path("session", f"logout/{session}")
                self._send(_Call("DELETE", path, log_path=redact_session_path(path)), session)
        except LiveVoxError as exc:
            log.debug("LiveVox logout failed (ignored): %s", exc.kind)
        finally:
            self._http.close()

    def login(self) -> None:
        """Open a session (LiveVox returns the current one if it is still valid)."""
        s = self._settings
        body = {
            "clientName": s.livevox_client_name,
            "userName": s.livevox_username,
            "password": s.livevox_password.get_secret_value(),
            "agent": False,
        }
        path = self._path("session", "login")
        response = self._send(_Call("POST", path, content=_dumps(body), campaign=False), None)
        status = response.status_code
        if 400 <= status < 500 and status != 429:
            code, message = error_body(response, self._secrets())
            raise LoginDenied(
                f"LiveVox login denied for client {s.livevox_client_name!r} user "
                f"{s.livevox_username!r}: {message}",
                status=status,
                code=code,
            )
        error = classify(response, mutating=False, campaign=False, secrets=self._secrets())
        if error is not None:
            raise error
        session = _parse(_LoginOut, response, "login").session_id
        self._session = session
        if session not in self._seen_sessions:
            self._seen_sessions.append(session)

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
        _check_page_size(page_size)
        body: dict[str, Any] = {"dateRange": {"from": _epoch_ms(start), "to": _epoch_ms(end)}}
        if service_id is not None:
            body["service"] = {"service": [{"id": service_id}]}
        if type_ids:
            body["type"] = {"type": [{"id": t} for t in type_ids]}
        if states:
            body["state"] = list(states)
        call = _Call("POST", self._path("campaign", "campaigns/search"), content=_dumps(body))
        found: list[Campaign] = []
        for page in self._pages(call, page_size):
            good, skipped = page.campaigns()
            found += good
            if skipped:
                self.skipped_campaigns += skipped
                log.warning(
                    "campaign search: %d malformed campaign entr%s skipped (no id, type, service "
                    "or status)",
                    skipped,
                    "y" if skipped == 1 else "ies",
                    extra={"skipped": skipped, "service": service_id},
                )
        return found

    def get_campaign(self, campaign_id: int) -> Campaign:
        response = self._call(_Call("GET", self._path("campaign", f"campaigns/{campaign_id}")))
        return _parse(_CampaignOut, response, "campaign details").to_campaign(campaign_id)

    @staticmethod
    def append_body(records: Sequence[Mapping[str, Any]]) -> bytes:
        """The exact bytes ``append`` sends for ``records``: compact UTF-8 JSON."""
        return _dumps({"records": list(records)})

    def append(
        self,
        campaign_id: int,
        records: Sequence[Mapping[str, Any]] | None = None,
        *,
        body: bytes | None = None,
    ) -> float:
        """Append Campaign Record; return the seconds the PUT took. Pass ``records`` or a ``body``
        made by ``append_body`` (exactly one).

        Never repeated here: a 401 clears the session and raises ``SessionExpired`` (nothing was
        appended; take another rate slot, the next call logs in). ``AnswerLost`` means the records
        may have landed; ``NotSent`` that they did not; ``Transient`` (neither) that the login
        before the PUT failed, so the PUT was not sent either.
        """
        if (records is None) == (body is None):
            raise ValueError("pass exactly one of records and body")
        if body is None:
            if not records:
                raise ValueError("no records to append")
            body = self.append_body(records)
        path = self._path("campaign", f"campaigns/{campaign_id}/transactions")
        if self._session is None:
            self.login()  # before the clock starts: the caller times the PUT alone
        started = time.perf_counter()
        self._call(_Call("PUT", path, content=body, mutating=True))
        return time.perf_counter() - started

    def transactions(self, campaign_id: int, *, page_size: int = 1000) -> Iterator[Transaction]:
        """Every account transaction of a campaign, page by page (lazily)."""
        _check_page_size(page_size)
        call = _Call("GET", self._path("campaign", f"campaigns/{campaign_id}/transactionList"))
        for page in self._pages(call, page_size):
            yield from page.transactions()

    # -- plumbing ------------------------------------------------------------------------------

    def _path(self, service: str, rest: str) -> str:
        """``/service/version/rest``, or ``/service/rest`` when the version setting is empty
        (LiveVox's overview shows unversioned paths): never an empty segment."""
        return "/" + "/".join(part for part in (service, self._ver, rest) if part)

    def _pages(self, call: _Call, page_size: int) -> Iterator[_Page]:
        """Page on with ``offset`` while ``next`` is set and the page held something.

        A short page does not end the listing: LiveVox may cap a page below ``count``, and only
        an empty ``next`` says there is no more. An empty page ends it too (``next`` or not), so
        a server that always sets ``next`` cannot loop us; ``MAX_PAGES`` bounds the rest.
        """
        offset = 0
        for _ in range(MAX_PAGES):
            params = {"count": page_size, "offset": offset}
            page = _parse(_Page, self._call(replace(call, params=params)), call.path)
            yield page
            offset += page.size
            if not page.next or page.size == 0:
                return
        raise Transient(f"{call.path}: still a next page after {MAX_PAGES} pages; giving up")

    def _call(self, call: _Call) -> httpx.Response:
        """One call in the session, logging in first if needed; on 401 log in again and repeat
        once, unless the call is mutating."""
        response = self._send_in_session(call)
        if response.status_code == 401 and not call.mutating:
            log.info("LiveVox session expired on %s %s; logging in again", call.method, call.path)
            self._session = None
            response = self._send_in_session(call)
        error = classify(
            response, mutating=call.mutating, campaign=call.campaign, secrets=self._secrets()
        )
        if error is None:
            return response
        if isinstance(error, SessionExpired):
            self._session = None
        raise error

    def _send_in_session(self, call: _Call) -> httpx.Response:
        if self._session is None:
            self.login()
        return self._send(call, self._session)

    def _send(self, call: _Call, session: str | None) -> httpx.Response:
        """One HTTP exchange; transport failures become LiveVox errors. Logs one line."""
        headers = {"LV-Access": self._settings.livevox_access_token.get_secret_value()}
        if session is not None:
            headers["LV-Session"] = session
        if call.content is not None:
            headers["Content-Type"] = "application/json"
        shown = call.log_path or call.path
        started = time.perf_counter()
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, content=call.content, headers=headers
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = classify_exception(exc, mutating=call.mutating)
            ms = (time.perf_counter() - started) * 1000
            name = type(exc).__name__
            log.warning("LiveVox %s %s failed after %.0f ms: %s", call.method, shown, ms, name)
            raise error from exc
        ms = (time.perf_counter() - started) * 1000
        status = response.status_code
        extra = {
            "lv_method": call.method,
            "lv_path": shown,
            "lv_status": status,
            "lv_ms": round(ms),
        }
        level = logging.INFO if call.mutating else logging.DEBUG
        log.log(
            level, "LiveVox %s %s -> %s in %.0f ms", call.method, shown, status, ms, extra=extra
        )
        return response

    def _secrets(self) -> tuple[str, ...]:
        token, password = self._settings.livevox_access_token, self._settings.livevox_password
        return (token.get_secret_value(), password.get_secret_value(), *self._seen_sessions)


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
