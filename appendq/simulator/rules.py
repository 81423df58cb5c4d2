"""LiveVox's rules for the Append Campaign Record call, as pure functions.

Each refusal raises :class:`SimError` with the status the simulator answers:

- 400 the batch itself: not a ``records`` array, empty, more than 10,000 records, a record without
  ``phone1``, more than 30 phone numbers, an unknown field, a field too long or of the wrong type,
  a poisoned record (a field equal to ``POISON`` or ``phone1`` in the configured poison list).
- 409 the campaign refuses appends: client setting off, no Allow Append, requeue campaign, type
  other than Outbound, not one of today's campaigns, state other than READY/PAUSED/PLAYING.

The dialect (:mod:`appendq.simulator.dialect`) changes the campaign refusal's status, how a
refused record is named, and whether unknown fields are refused or dropped.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date
from typing import Any

from appendq.simulator.config import ClientSpec, Status
from appendq.simulator.dialect import DEFAULT, Dialect
from appendq.simulator.model import Campaign, SimError

MAX_RECORDS = 10_000
MAX_PHONES = 30  # phone1 counts
POISON = "POISON"
APPENDABLE_STATES = (Status.READY, Status.PAUSED, Status.PLAYING)
APPENDABLE_TYPES = {1: "Outbound"}
TYPE_NAMES = {
    1: "Outbound",
    2: "Callback",
    4: "Scheduled Callback",
    5: "Manual",
    6: "SMS",
    7: "HCI",
    8: "10DMT",
    9: "Manual SMS",
    10: "Inbound SMS",
    11: "Email",
    12: "Manual Email",
    13: "Inbound Email",
    14: "Chat",
}

#: Every field of an appended record and its maximum length (None: no documented limit).
FIELD_LIMITS: dict[str, int | None] = {
    "phone1": 32,
    "account": 50,
    "firstName": 50,
    "lastName": 50,
    "email": 50,
    "dob": 4,
    "ssn": None,
    "lastPaymentDate": None,
    "minimumPaymentAmount": None,
    "accountToSpeak": None,
    "amountToSpeak": None,
    "originalAccountNumber": None,
    "language": None,
    "totalAmount": None,
    **{f"extra{i}": 50 for i in range(1, 20)},
    "extra20": 150,
}
_DOB = re.compile(r"^(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")


def batch_records(body: Any) -> list[Any]:
    """The ``records`` array of an Append body, or 400 for the batch as a whole."""
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SimError(400, 'body must be a JSON object {"records": [...]}')
    records: list[Any] = body["records"]
    if not records:
        raise SimError(400, "records is empty: at least one record is required")
    if len(records) > MAX_RECORDS:
        raise SimError(
            400, f"{len(records)} records in one call: at most {MAX_RECORDS} are allowed"
        )
    return records


def check_records(
    records: list[Any], poison_phones: Collection[str], dialect: Dialect = DEFAULT
) -> None:
    """400 naming the first bad record (as the dialect numbers it) and field."""
    for index, record in enumerate(records):
        problem = record_problem(record) or _poisoned(record, poison_phones)
        if problem:
            raise SimError(400, f"{dialect.record_label(index, record)}{problem}")


def drop_unknown(records: list[Any]) -> list[Any]:
    """The records without the fields outside LiveVox's list (the "drop" dialect)."""
    return [
        {k: v for k, v in r.items() if k in FIELD_LIMITS or k == "phone2"}
        if isinstance(r, dict)
        else r
        for r in records
    ]


def record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "must be a JSON object"
    phone1 = record.get("phone1")
    if phone1 is None or (isinstance(phone1, str) and not phone1.strip()):
        return "phone1 is required"
    phone2 = record.get("phone2", [])
    if phone2 is None:
        phone2 = []
    if not isinstance(phone2, list):
        return "phone2 must be an array of phone numbers"
    if 1 + len(phone2) > MAX_PHONES:
        return f"{1 + len(phone2)} phone numbers: at most {MAX_PHONES} per record (phone1 included)"
    for position, phone in enumerate(phone2):
        problem = _value_problem(f"phone2[{position}]", phone, FIELD_LIMITS["phone1"])
        if problem:
            return problem
    for name, value in record.items():
        if name == "phone2":
            continue
        if name not in FIELD_LIMITS:
            return f"field {name!r} is not a LiveVox record field"
        problem = _value_problem(name, value, FIELD_LIMITS[name])
        if problem:
            return problem
    return None


def _value_problem(name: str, value: Any, limit: int | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"{name} must be text"
    text = str(value)
    if limit is not None and len(text) > limit:
        return f"{name} is longer than {limit} characters"
    if name == "dob" and not _DOB.match(text):
        return "dob must be MMDD"
    return None


def _poisoned(record: dict[str, Any], poison_phones: Collection[str]) -> str | None:
    if str(record.get("phone1")) in poison_phones:
        return "phone1 rejected"
    for name, value in record.items():
        values = value if isinstance(value, list) else [value]
        if POISON in values:
            return f"{name} rejected"
    return None


def refusal(campaign: Campaign, *, upload_day: date, today: date, client: ClientSpec) -> str | None:
    """Why a campaign refuses appends (answered 409, or the dialect's refusal_status), or None
    if it takes them."""
    ident = campaign.id
    if not client.appends_allowed:
        return f"campaign appends are not allowed for client {client.name} (client setting is off)"
    if not campaign.allow_append:
        return f"campaign {ident} was not created with Allow Append"
    if campaign.requeue:
        return f"campaign {ident} is a requeue campaign: requeue campaigns take no appends"
    if campaign.type_id not in APPENDABLE_TYPES:
        name = TYPE_NAMES.get(campaign.type_id, "unknown")
        return f"campaign {ident} is of type {campaign.type_id} ({name}): only Outbound appends"
    if upload_day != today:
        return (
            f"campaign {ident} is not one of today's campaigns "
            f"(uploaded {upload_day.isoformat()}, today is {today.isoformat()})"
        )
    if campaign.status not in APPENDABLE_STATES:
        allowed = ", ".join(s.value for s in APPENDABLE_STATES)
        return f"campaign {ident} is {campaign.status.value}: appends need one of {allowed}"
    return None
