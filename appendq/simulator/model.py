"""The simulator's in-memory objects: sessions, campaigns with their portal counts, logged calls.

These are mutable on purpose (they are the state); :class:`appendq.simulator.state.SimulatorState`
changes them only under its lock. Dialling is computed lazily from the clock by
:meth:`Campaign.advance`, so no background thread is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from appendq.simulator.config import Status


class SimError(Exception):
    """A refusal answered as LiveVox does: HTTP ``status`` and ``{"code", "message"}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"code": self.status, "message": self.message}


@dataclass
class Session:
    id: str
    client: str
    user: str
    role: str
    agent: bool
    token: str
    last_used: float


@dataclass(frozen=True)
class Counts:
    """A campaign's numbers in the portal's terms (seed: Real-Time Statistics)."""

    uploaded: int
    loaded: int
    completed: int
    remaining: int
    total: int
    percent_done: float

    def as_json(self) -> dict[str, Any]:
        return {
            "uploaded": self.uploaded,
            "loaded": self.loaded,
            "completed": self.completed,
            "remaining": self.remaining,
            "total": self.total,
            "percent_done": self.percent_done,
        }


@dataclass
class Campaign:
    id: int
    name: str
    service_id: int
    type_id: int
    status: Status
    allow_append: bool
    requeue: bool
    upload_ms: int
    initial: int
    initial_invalid: int
    first_initial_txn: int
    last_tick: float
    appended: list[dict[str, Any]] = field(default_factory=list)
    dialled: float = 0.0

    @property
    def total(self) -> int:
        return self.initial + len(self.appended)

    def counts(self) -> Counts:
        total = self.total
        completed = min(total, math.floor(self.dialled + 1e-9))
        percent = round(100.0 * completed / total, 2) if total else 0.0
        return Counts(
            uploaded=total + self.initial_invalid,
            loaded=total,
            completed=completed,
            remaining=total - completed,
            total=total,
            percent_done=percent,
        )

    def advance(self, now: float, dial_per_s: float) -> bool:
        """Dial what a PLAYING campaign dialled since the last look; True if that drained it."""
        elapsed = max(0.0, now - self.last_tick)
        self.last_tick = max(now, self.last_tick)
        if self.status is not Status.PLAYING or self.dialled >= self.total:
            return False
        self.dialled = min(float(self.total), self.dialled + elapsed * dial_per_s)
        return self.dialled >= self.total

    def summary(self) -> dict[str, Any]:
        """The search answer's view (never reveals allowAppend, as LiveVox doesn't)."""
        return {
            "id": self.id,
            "name": self.name,
            "typeId": self.type_id,
            "serviceId": self.service_id,
            "status": self.status.value,
            "uploadDate": self.upload_ms,
        }

    def details(self) -> dict[str, Any]:
        building = self.status in (Status.LOADING, Status.SCHEDULED_UNBUILT, Status.READY_UNBUILT)
        return {
            **self.summary(),
            "buildDate": None if building else self.upload_ms,
            "totalRecords": self.total,
        }

    def admin_view(self, tz: ZoneInfo) -> dict[str, Any]:
        return {
            **self.summary(),
            "allowAppend": self.allow_append,
            "requeue": self.requeue,
            "day": local_day(self.upload_ms, tz).isoformat(),
            "initialRecords": self.initial,
            "initialInvalid": self.initial_invalid,
            "appended": len(self.appended),
            **self.counts().as_json(),
        }


@dataclass
class Call:
    """One LiveVox request as the server saw it; ``status`` stays None if the socket was dropped.
    ``client`` is the client it came from (its session's; a login's clientName), None if unknown."""

    at: float
    method: str
    path: str
    kind: str
    client: str | None = None
    campaign_id: int | None = None
    records: int | None = None
    status: int | None = None
    fault: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "kind": self.kind,
            "client": self.client,
            "status": self.status,
            "campaignId": self.campaign_id,
            "records": self.records,
            "fault": self.fault,
        }


def local_day(epoch_ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(epoch_ms / 1000, tz).date()


def upload_ms_for(day: str, now: float, tz: ZoneInfo) -> int:
    """``today`` is now; any other day is noon local time of that day."""
    if day == "today":
        return int(now * 1000)
    today = datetime.fromtimestamp(now, tz).date()
    offsets = {"yesterday": -1, "tomorrow": 1}
    target = today + timedelta(days=offsets[day]) if day in offsets else date.fromisoformat(day)
    return int(datetime.combine(target, time(12, 0), tz).timestamp() * 1000)


def parse_epoch_ms(value: Any, tz: ZoneInfo, what: str) -> int:
    """Epoch milliseconds from an int, a numeric string or an ISO-8601 string (naive = local)."""
    if isinstance(value, bool):
        raise SimError(400, f"{what} must be epoch milliseconds or an ISO-8601 date")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=tz)
            return int(moment.timestamp() * 1000)
    raise SimError(400, f"{what} must be epoch milliseconds or an ISO-8601 date, not {value!r}")
