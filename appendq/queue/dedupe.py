"""The dedupe policy: which records count as the same lead, and which day they belong to.

LiveVox never dedupes appended records, so the producer does: per target (LiveVox service or
pinned campaign) and per day in APPENDQ_TIMEZONE, a record whose key was already accepted is not
sent again. It is still queued, marked ``duplicate_of`` the first record with that key, so that the
drain writes it to the audit (status ``duplicate``, reason "duplicate of <id>") and never sends it.
The atomic check-and-queue is ``RecordQueue.push_deduped`` (one Lua script per chunk, on the hash
``Keys.dedupe(target, day)``, which expires after ``TTL_S``).

The key is the normalised phone1 (default) or the account (APPENDQ_DEDUPE=phone1|account|off).
Payloads reach here already normalised by ``appendq.leads.validate_record``, so ``(212)
555-1234`` and ``+1 212 555 1234`` share one key. Keys carry their mode (``phone1:2125551234``,
``account:A17``) so that switching the setting mid-day cannot make an account collide with a
phone number.

A record that ends rejected gives its key back (``RecordQueue.release_reservations``, right after
the rejection commits, and only while the key still holds that record's id): the upstream
system's corrected resubmission is accepted, not made a duplicate of a lead LiveVox never took.
A record that failed, or is held or in doubt, keeps its key: it may still go out (or have landed).

Which day: a record's dedupe belongs to the day it was *accepted*, in APPENDQ_TIMEZONE. A record
accepted at 23:59 and a copy accepted at 00:01 are on two days and both go out; the first may land
in the new day's campaign when it is drained after midnight. That window is the queue's latency at
midnight (normally one tick), and it is the price of a rule that never blocks today's lead because
of yesterday's campaign, which has ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, cast, get_args
from zoneinfo import ZoneInfo

Mode = Literal["phone1", "account", "off"]
MODES: tuple[str, ...] = get_args(Mode)

#: Lifetime of a day's dedupe hash: the day itself plus a margin for records pushed near midnight.
TTL_S = 2 * 24 * 3600


def check_mode(mode: str) -> Mode:
    """``mode`` if it is a dedupe mode, else ``ValueError`` naming the modes."""
    if mode not in MODES:
        raise ValueError(f"unknown dedupe mode {mode!r}: use one of {', '.join(MODES)}")
    return cast(Mode, mode)


def dedupe_key(payload: Mapping[str, Any], mode: Mode) -> str | None:
    """The field of the day's dedupe hash for this record, or None when it can never be a duplicate
    (mode ``off``, or mode ``account`` and the record has no account)."""
    mode = check_mode(mode)
    if mode == "phone1":
        return f"phone1:{payload['phone1']}"
    if mode == "account":
        account = payload.get("account")
        return f"account:{account}" if account else None
    return None


def day_of(now: datetime, tz: ZoneInfo) -> str:
    """The dedupe day (YYYY-MM-DD) of an aware instant, in the client's time zone."""
    if now.tzinfo is None:
        raise ValueError("day_of needs an aware datetime")
    return now.astimezone(tz).date().isoformat()


def reservations(
    payload: Mapping[str, Any], *, target: str, day: str, record_id: str
) -> list[tuple[str, str, str, str]]:
    """The dedupe reservations a record may hold, as ``release_reservations`` takes them: the key
    of every mode that gives one (the mode in force when it was accepted is not stored; a key
    held by another record's id is never released)."""
    modes: tuple[Mode, ...] = ("phone1", "account")
    fields = sorted({f for m in modes if (f := dedupe_key(payload, m)) is not None})
    return [(target, day, f, record_id) for f in fields]
