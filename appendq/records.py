"""The LiveVox record, its validation at the door, and the queued form that carries it.

``validate_record`` turns raw mappings (a JSON object, a CSV row) into LiveVox payloads, one
``FieldError`` per bad field naming the record and the field; good records never wait for bad ones.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import phonenumbers
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from appendq.errors import FieldError

MAX_PHONES = 30  # phone1 counts: phone2 holds at most 29 (livevox-api.md)
PHONE_MAX_LEN = 32
_DOB = re.compile(r"^(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")


def normalise_phone(value: object, region: str = "US") -> str:
    """A valid phone number as LiveVox dials it: national digits for ``region``, else E.164."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be a phone number as text")
    text = value.strip()
    if not text:
        raise ValueError("is empty")
    if _CONTROL.search(text):
        raise ValueError("contains a control character (NUL, escape, ...)")
    if len(text) > PHONE_MAX_LEN:
        raise ValueError(f"is longer than {PHONE_MAX_LEN} characters")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{mask_phone(text)!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{mask_phone(text)!r} is not a valid phone number")
    if phonenumbers.region_code_for_number(number) == region:
        return str(number.national_number)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(phone: str) -> str:
    """Keep the last 4 digits: ``2125551234`` -> ``******1234``."""
    digits = len(phone)
    return "*" * max(digits - 4, 0) + phone[-4:] if digits > 4 else "*" * digits


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _blank_to_none(value: object) -> object:
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise ValueError("contains a control character (NUL, escape, ...)")
        value = value.strip()
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _phone_list(value: object) -> object:
    if value is None:
        return []
    if isinstance(value, str):
        return [p for p in (s.strip() for s in value.split(";")) if p]
    return value


Text50 = Annotated[Annotated[str, Field(max_length=50)] | None, BeforeValidator(_blank_to_none)]
Text150 = Annotated[Annotated[str, Field(max_length=150)] | None, BeforeValidator(_blank_to_none)]


class LeadRecord(BaseModel):
    """One record of LiveVox's Append Campaign Record body, field names as LiveVox spells them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phone1: Annotated[str, BeforeValidator(_blank_to_none)]
    phone2: Annotated[list[str], BeforeValidator(_phone_list)] = Field(default_factory=list)
    account: Text50 = None
    firstName: Text50 = None
    lastName: Text50 = None
    email: Text50 = None
    dob: Text50 = None
    ssn: Text50 = None
    lastPaymentDate: Text50 = None
    minimumPaymentAmount: Text50 = None
    accountToSpeak: Text50 = None
    amountToSpeak: Text50 = None
    originalAccountNumber: Text50 = None
    language: Text50 = None
    totalAmount: Text50 = None
    extra1: Text50 = None
    extra2: Text50 = None
    extra3: Text50 = None
    extra4: Text50 = None
    extra5: Text50 = None
    extra6: Text50 = None
    extra7: Text50 = None
    extra8: Text50 = None
    extra9: Text50 = None
    extra10: Text50 = None
    extra11: Text50 = None
    extra12: Text50 = None
    extra13: Text50 = None
    extra14: Text50 = None
    extra15: Text50 = None
    extra16: Text50 = None
    extra17: Text50 = None
    extra18: Text50 = None
    extra19: Text50 = None
    extra20: Text150 = None

    @model_validator(mode="after")
    def _checks(self) -> LeadRecord:
        if 1 + len(self.phone2) > MAX_PHONES:
            raise ValueError(
                f"phone2: {1 + len(self.phone2)} phone numbers, LiveVox takes at most {MAX_PHONES} "
                "per record (phone1 included)"
            )
        if self.dob is not None and not _DOB.match(self.dob):
            raise ValueError("dob: must be MMDD")
        if self.email is not None and "@" not in self.email:
            raise ValueError("email: is not an e-mail address")
        return self


LEAD_FIELDS = frozenset(LeadRecord.model_fields)


def validate_record(
    raw: Mapping[str, Any], index: int, *, region: str = "US", row: int | None = None
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Return (LiveVox payload, []) for a good record, (None, errors) for a bad one."""
    if not isinstance(raw, Mapping):
        return None, [FieldError(index, "record", "must be an object of LiveVox fields", row)]
    try:
        lead = LeadRecord.model_validate(raw)
    except ValidationError as exc:
        return None, [_field_error(e, index, row) for e in exc.errors()]
    errors: list[FieldError] = []
    phones: list[str] = []
    numbers = [("phone1", lead.phone1)] + [(f"phone2[{i}]", p) for i, p in enumerate(lead.phone2)]
    for name, value in numbers:
        try:
            phones.append(normalise_phone(value, region))
        except ValueError as exc:
            errors.append(FieldError(index, name, str(exc), row))
    if errors:
        return None, errors
    payload = lead.model_dump(exclude_none=True, exclude_defaults=True)
    payload["phone1"] = phones[0]
    if phones[1:]:
        payload["phone2"] = phones[1:]
    return payload, []


def _field_error(err: Any, index: int, row: int | None) -> FieldError:
    loc = [str(part) for part in err.get("loc", ())]
    message = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        message = "is not a LiveVox record field"
    elif err.get("type") == "missing" or (loc == ["phone1"] and err.get("input") is None):
        message = "is required"
    if not loc and ": " in message:  # our own model-level checks say "field: message"
        field, _, message = message.removeprefix("Value error, ").partition(": ")
        return FieldError(index, field, message, row)
    field = loc[0] if loc else "record"
    if len(loc) > 1:
        field = f"{loc[0]}[{loc[1]}]"
    return FieldError(index, field, message.removeprefix("Value error, "), row)


_last_id = 0  # (milliseconds << 74) | 74 random bits of the last id made in this process
_id_lock = threading.Lock()


def new_record_id() -> str:
    """A time-ordered UUID (version 7 layout: 48-bit milliseconds, version, 74 random bits),
    strictly increasing within a process, so ids sort in the order records were accepted."""
    global _last_id
    stamp = ((time.time_ns() // 1_000_000) << 74) | int.from_bytes(os.urandom(10), "big") >> 6
    with _id_lock:
        stamp = max(stamp, _last_id + 1)
        _last_id = stamp
    ms, rand = stamp >> 74, stamp & ((1 << 74) - 1)
    rand_a, rand_b = rand >> 62, rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0x2 << 62) | rand_b
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class Target:
    """Where records go: today's campaign of a LiveVox service, or a campaign pinned by an
    operator."""

    kind: str  # "service" | "campaign"
    id: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Target:
        kind, _, ident = text.partition(":")
        if kind not in ("service", "campaign") or not ident.isdigit():
            raise ValueError(f"target must be service:ID or campaign:ID, not {text!r}")
        return cls(kind, int(ident))


@dataclass(frozen=True)
class QueuedRecord:
    """A validated record as it waits in Redis: stable id, enqueue time, LiveVox payload.

    ``duplicate_of`` names the record it repeats (same service, same day): it travels through the
    queue so that it is audited with its batch, and is never sent to LiveVox.
    """

    id: str
    enqueued_at: float
    payload: dict[str, Any]
    duplicate_of: str | None = None

    def dumps(self) -> str:
        obj: dict[str, Any] = {"id": self.id, "t": self.enqueued_at, "r": self.payload}
        if self.duplicate_of is not None:
            obj["d"] = self.duplicate_of
        return json.dumps(obj, separators=(",", ":"))

    @classmethod
    def loads(cls, data: str | bytes) -> QueuedRecord:
        obj = json.loads(data)
        return cls(obj["id"], obj["t"], obj["r"], obj.get("d"))
