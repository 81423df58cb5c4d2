"""A record as it waits in Redis: its id, its enqueue time and its LiveVox payload."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_last_id = 0  # (milliseconds << 74) | 74 random bits of the last id made in this process
_id_lock = threading.Lock()


def new_record_id() -> str:
    """A time-ordered UUID (version 7 layout: 48-bit milliseconds, version, 74 random bits),
    strictly increasing within a process, so ids sort in the order records were accepted."""
    return new_record_ids(1)[0]


def new_record_ids(count: int) -> list[str]:
    """``count`` ids as ``new_record_id`` describes them (each after every id made before in this
    process), for a whole submission at once: one clock read, one call for the random bits and
    one lock, not one each per record."""
    global _last_id
    if count <= 0:
        return []
    noise = os.urandom(10 * count)
    now_ms = time.time_ns() // 1_000_000
    with _id_lock:
        last = _last_id
        stamps = []
        for k in range(count):
            stamp = (now_ms << 74) | int.from_bytes(noise[10 * k : 10 * k + 10], "big") >> 6
            last = stamp if stamp > last else last + 1
            stamps.append(last)
        _last_id = last
    return [_uuid7_text(s) for s in stamps]


def _uuid7_text(stamp: int) -> str:
    """The canonical text of the version-7 UUID of ``stamp`` (ms << 74 | 74 random bits)."""
    ms, rand = stamp >> 74, stamp & ((1 << 74) - 1)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0x2 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def id_moment(record_id: str) -> datetime | None:
    """When a record id made by ``new_record_id`` was made (its 48-bit milliseconds); None for an
    id of any other layout."""
    value = uuid.UUID(record_id)
    if value.version != 7:
        return None
    return datetime.fromtimestamp((value.int >> 80) / 1000, UTC)


@dataclass(frozen=True)
class QueuedRecord:
    """A validated record as it waits in Redis: stable id, enqueue time, LiveVox payload.

    ``duplicate_of`` names the record it repeats (same service, same day): it travels through the
    queue so that it is audited with its batch, and is never sent to LiveVox. ``submitted_by``
    names who submitted it (an API token's name), so that an intake token can look up its own
    records and no other.
    """

    id: str
    enqueued_at: float
    payload: dict[str, Any]
    duplicate_of: str | None = None
    submitted_by: str | None = None

    def dumps(self) -> str:
        obj: dict[str, Any] = {"id": self.id, "t": self.enqueued_at, "r": self.payload}
        if self.duplicate_of is not None:
            obj["d"] = self.duplicate_of
        if self.submitted_by is not None:
            obj["s"] = self.submitted_by
        return json.dumps(obj, separators=(",", ":"))

    @classmethod
    def loads(cls, data: str | bytes) -> QueuedRecord:
        """Parse a queue item; ``ValueError`` for anything that is not a queued record (an item
        written by something else must set its target aside, never stop the drain)."""
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("queue item is not an object")
        rid, at, payload, dup = obj.get("id"), obj.get("t"), obj.get("r"), obj.get("d")
        if not isinstance(rid, str) or not rid:
            raise ValueError("queue item has no record id")
        if not isinstance(at, int | float) or isinstance(at, bool):
            raise ValueError("queue item has no enqueue time")
        if not isinstance(payload, dict) or not isinstance(payload.get("phone1"), str):
            raise ValueError("queue item has no LiveVox record with a phone1")
        if dup is not None and not isinstance(dup, str):
            raise ValueError("queue item's duplicate_of is not a record id")
        who = obj.get("s")
        if who is not None and not isinstance(who, str):
            raise ValueError("queue item's submitted_by is not a name")
        return cls(rid, float(at), payload, dup, who)
