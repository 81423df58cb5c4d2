"""Pure readings of LiveVox answers for the doctor: malformed campaign entries, which key carries
a transaction's phones, key names, the clock offset from a Date header.

They look at shapes only; no value leaves here except status words, type ids, key names and
masked phone numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from appendq.redact import mask_phone

#: Keys appendq reads from each answer.
SEARCH_ENTRY_KEYS = ("id", "typeId", "serviceId", "status", "uploadDate")
DETAILS_KEYS = ("typeId", "serviceId", "status")
TRANSACTION_ENTRY_KEYS = ("accountTransactionId",)
#: Status words public clients show that never take appends (anything else is "unknown").
KNOWN_CLOSED_WORDS = frozenset(
    {
        "LOADING",
        "SCHEDULED_UNBUILT",
        "READY_UNBUILT",
        "SCHEDULED",
        "STOPPED",
        "DONE",
        "REPORTED",
        "UNASSIGNED",
        "COMPLETED",
        "INVALID",
    }
)
#: Phone shapes appendq's reconciliation can read.
READABLE_PHONE_KEYS = ("phone", "phones", "phone_strings", "phones_strings")


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


def campaign_problem(entry: Any) -> str | None:
    """Why a search entry cannot be used (appendq skips it), or None."""
    if not isinstance(entry, Mapping):
        return "not an object"
    if not _is_int(entry.get("id")):
        return "id missing or not a number"
    status = entry.get("status", entry.get("state"))
    if not isinstance(status, str) or not status.strip():
        return "status missing"
    if not _is_int(entry.get("typeId")):
        return "typeId missing or not a number"
    return None


def status_of(entry: Mapping[str, Any]) -> str:
    return str(entry.get("status", entry.get("state"))).strip().upper()


def key_names(entries: Iterable[Any]) -> list[str]:
    """The sorted union of the keys of the entries that are objects."""
    names: set[str] = set()
    for entry in entries:
        if isinstance(entry, Mapping):
            names.update(str(k) for k in entry)
    return sorted(names)


def missing_keys(present: Iterable[str], expected: Iterable[str]) -> list[str]:
    have = set(present)
    return [k for k in expected if k not in have and not (k == "status" and "state" in have)]


def entry_phone_shape(entry: Any) -> str:
    """phone / phones (``{"phone", "ordinal"}`` objects), phone_strings / phones_strings, or
    none (no readable phone)."""
    if not isinstance(entry, Mapping):
        return "none"
    for key in ("phone", "phones"):
        value = entry.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return f"{key}_strings"
        if not isinstance(value, list) or not value:
            continue
        if all(isinstance(p, Mapping) and _phone_text(p.get("phone")) for p in value):
            return key
        if all(_phone_text(p) for p in value):
            return f"{key}_strings"
    return "none"


def phone_shape(entries: list[Any]) -> str | None:
    """The shape every entry shares, ``mixed`` if they differ, None if there is no entry."""
    shapes = {entry_phone_shape(e) for e in entries}
    if not shapes:
        return None
    return shapes.pop() if len(shapes) == 1 else "mixed"


def masked_sample(entries: list[Any]) -> str | None:
    """The first readable phone of the entries, masked (``******1234``)."""
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        for key in ("phone", "phones"):
            value = entry.get(key)
            items = value if isinstance(value, list) else [value]
            for item in items:
                text = _phone_text(item.get("phone") if isinstance(item, Mapping) else item)
                if text:
                    return mask_phone(text)
    return None


def _phone_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None


def clock_offset_s(date_header: str | None, sent: float, received: float) -> float | None:
    """LiveVox's clock minus ours, from an answer's Date header (1 s resolution), or None."""
    if not date_header:
        return None
    try:
        theirs: datetime = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    return round(theirs.timestamp() - (sent + received) / 2, 1)


def built_word(words: Iterable[str]) -> str | None:
    """The word this LiveVox seems to use for a Built campaign, if one was seen."""
    seen = set(words)
    for word in ("ACTIVE", "PREBUILT", "READY"):
        if word in seen:
            return word
    return None
