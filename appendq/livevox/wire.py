"""LiveVox's payloads, read at the edge: the values the client returns (``Campaign``,
``Transaction``), the pydantic models of the answers, the bytes it sends and the paths it sends
them to (the doctor's probe uses the same).

An answer that is not the documented shape is ``Transient`` and never quoted (it may hold phone
numbers). One malformed entry never fails a page: a campaign entry is skipped (counted), a
transaction entry becomes one without phones (unreadable).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from appendq.errors import Transient
from appendq.settings import Settings

MAX_PAGE = 1000  # LiveVox's largest page for search and transactionList
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


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, coerce_numbers_to_str=True)


class LoginOut(_Payload):
    session_id: str = Field(alias="sessionId", min_length=1)


class _CampaignOut(_Payload):
    """One entry of a campaign search."""

    id: int
    name: str = ""
    type_id: int = Field(alias="typeId")
    service_id: int = Field(alias="serviceId")
    status: str = Field(validation_alias=AliasChoices("status", "state"))
    upload_date: int | None = Field(default=None, alias="uploadDate")

    def to_campaign(self) -> Campaign:
        status = self.status.strip().upper()
        return Campaign(self.id, self.name, self.type_id, self.service_id, status, self.upload_date)


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


class Page(_Payload):
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
                parsed = _CampaignOut.model_validate(entry)
            except ValidationError:
                continue
            if parsed.status:
                good.append(parsed.to_campaign())
        return good, len(self.campaign) - len(good)


_P = TypeVar("_P", bound=BaseModel)


def parse(model: type[_P], response: httpx.Response, what: str) -> _P:
    """Validate an answer; the message never quotes it (it may hold phone numbers)."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError:
        raise Transient(
            f"unexpected answer to {what}: not the documented shape", status=response.status_code
        ) from None


def epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def check_page_size(page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE:
        raise ValueError(f"page_size must be 1..{MAX_PAGE}, not {page_size}")


def api_path(version: str, service: str, rest: str) -> str:
    """``/service/version/rest``, or ``/service/rest`` when the version is empty (LiveVox's
    overview shows unversioned paths): never an empty segment."""
    ver = version.strip().strip("/")
    return "/" + "/".join(part for part in (service, ver, rest) if part)


def login_body(settings: Settings) -> dict[str, object]:
    """The login request's JSON (it holds the password: never log it)."""
    return {
        "clientName": settings.livevox_client_name,
        "userName": settings.livevox_username,
        "password": settings.livevox_password.get_secret_value(),
        "agent": False,
    }


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON: the exact bytes sent."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
