"""The dedupe policy: which records count as the same lead, and which day they belong to.

LiveVox never dedupes appended records, so the producer does: per target (LiveVox service or
pinned campaign) and per day in APPENDQ_TIMEZONE, a record whose key was already accepted is not
sent again. It is still queued, marked ``duplicate_of`` the first record with that key, so that the
drain writes it to the audit (status ``duplicate``, reason "duplicate of <id>") and never sends it.
The atomic check-and-queue is ``RecordQueue.push_deduped`` (one Lua script per chunk, on the hash
``Keys.dedupe(target, day)``, which expires after ``TTL_S``).

The key is the normalised phone1 (default) or the account (APPENDQ_DEDUPE=phone1|account|off).
Payloads reach here already normalised by ``appendq.records.validate_record``, so ``(212)
555-1234`` and ``+1 212 555 1234`` share one key. Keys carry their mode (``phone1:2125551234``,
``account:A17``) so that switching the setting mid-day cannot make an account collide with a
phone number.

Known limit: the first record with a key blocks the key for the day whatever happens to it later.
A record accepted here and then rejected by LiveVox (or failed, or held and never sent) still makes
later copies duplicates; the audit explains it, because each duplicate names that first record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

Mode = Literal["phone1", "account", "off"]
MODES: tuple[str, ...] = get_args(Mode)

#: Lifetime of a day's dedupe hash: the day itself plus a margin for records pushed near midnight.
TTL_S = 2 * 24 * 3600


def dedupe_key(payload: Mapping[str, Any], mode: Mode) -> str | None:
    """The field of the day's dedupe hash for this record, or None when it can never be a duplicate
    (mode ``off``, or mode ``account`` and the record has no account)."""
    if mode == "phone1":
        return f"phone1:{payload['phone1']}"
    if mode == "account":
        account = payload.get("account")
        return f"account:{account}" if account else None
    if mode == "off":
        return None
    raise ValueError(f"unknown dedupe mode {mode!r}: use one of {', '.join(MODES)}")


def day_of(now: datetime, tz: ZoneInfo) -> str:
    """The dedupe day (YYYY-MM-DD) of an aware instant, in the client's time zone."""
    if now.tzinfo is None:
        raise ValueError("day_of needs an aware datetime")
    return now.astimezone(tz).date().isoformat()
