"""What a drain needs (``Drainer``) and what it did (``DrainReport``): plain values, built once per
process by the entry point (see ``appendq.runtime``)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from sqlalchemy.orm import Session, sessionmaker

from appendq.campaigns import CampaignResolver
from appendq.keys import Keys
from appendq.lease import DrainLease, NoLease
from appendq.livevox import LiveVoxClient
from appendq.queue import RecordQueue
from appendq.ratelimit import RateLimiter
from appendq.settings import Settings


@dataclass(frozen=True)
class DrainReport:
    outcome: str  # idle | locked | appended | held | rate_limited | waiting | retry_wait | ...
    target: str | None = None
    batch_id: int | None = None
    records: int = 0
    campaign_id: int | None = None
    http_status: int | None = None
    reason: str | None = None
    recovered: int = 0
    #: True when this tick made an Append call, whatever its answer (a 403 answers "held" too).
    called: bool = False


@dataclass
class Drainer:
    """Everything one drain needs; built once per process by the entry point."""

    settings: Settings
    redis: redis.Redis
    keys: Keys
    queue: RecordQueue
    limiter: RateLimiter
    sessions: sessionmaker[Session]
    client: LiveVoxClient
    resolver: CampaignResolver
    actor: str = field(default_factory=lambda: f"worker@{socket.gethostname()}")
    #: The lease of the tick in progress (set by ``drain_once``): ``check_lease`` between steps.
    lease: DrainLease | NoLease = field(default_factory=NoLease)

    def check_lease(self) -> None:
        """Raise ``LeaseLost`` when this drainer lost the drain lock mid-tick: stop now."""
        self.lease.check()

    @property
    def call_deadline(self) -> timedelta:
        s = self.settings
        return timedelta(
            seconds=s.livevox_connect_timeout_s + s.livevox_read_timeout_s + s.call_grace_s
        )
