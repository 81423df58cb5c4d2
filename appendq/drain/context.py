"""What a drain needs (``Drainer``) and what it did (``DrainReport``): plain values, built once per
process by the entry point (see ``appendq.runtime``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

import redis
from sqlalchemy.orm import Session, sessionmaker

from appendq.batches.store import BatchStore
from appendq.db.models import BatchStatus
from appendq.drain import halt as halts
from appendq.drain.lease import DrainLease, NoLease
from appendq.keys import DEFAULT_ACCOUNT, Keys
from appendq.livevox.campaigns import CampaignResolver
from appendq.livevox.client import LiveVoxClient
from appendq.livevox.ratelimit import RateLimiter
from appendq.queue.record_queue import RecordQueue
from appendq.settings import Settings


class Tick(StrEnum):
    """What a tick (or one target's turn in it) came to, when it is not a batch's new status."""

    IDLE = "idle"  # nothing to send
    LOCKED = "locked"  # another drainer holds the drain lease
    LEASE_LOST = "lease_lost"  # this drainer lost the lease mid-tick and stopped
    HALTED = "halted"  # the account is halted (`appendq resume` lifts it)
    WAITING = "waiting"  # blocked for now: retry not due, batch in flight, login failing, ...
    UNREACHABLE = "unreachable"  # nothing reached LiveVox
    RATE_LIMITED = "rate_limited"  # no rate slot
    FENCED = "fenced"  # the batch changed meanwhile: another drainer owns it
    EMPTY = "empty"  # every record of the batch parted from it: closed without a call
    SET_ASIDE = "set_aside"  # the target was set aside (a bulkhead)
    ERROR = "error"  # this target's drain failed unexpectedly (counted towards setting it aside)


#: A report's outcome: a ``Tick``, or the batch's new status (``held``, ``appended``, ...).
ReportOutcome = Tick | BatchStatus


@dataclass(frozen=True)
class DrainReport:
    outcome: ReportOutcome
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
    #: The LiveVox account this drainer drains (``appendq.accounts``): ``settings``, ``keys``,
    #: ``queue``, ``limiter``, ``client`` and ``resolver`` are that account's.
    account: str = DEFAULT_ACCOUNT
    actor: str = field(default_factory=lambda: f"worker@{socket.gethostname()}")
    #: The lease of the tick in progress (set by ``drain_once``): ``check_lease`` between steps.
    lease: DrainLease | NoLease = field(default_factory=NoLease)

    @contextmanager
    def store(self) -> Iterator[BatchStore]:
        """A ``BatchStore`` in a transaction of its own, committed on leaving."""
        with self.sessions() as session, session.begin():
            yield BatchStore(session, self.actor)

    def halt(self, reason: str) -> None:
        """Halt this account's Append calls for APPENDQ_HALT_S, recorded in the audit."""
        halts.halt(self.redis, self.keys, reason, self.settings.halt_s)
        halts.record(self.sessions, self.account, "halted", reason, self.actor)

    def check_lease(self) -> None:
        """Raise ``LeaseLost`` when this drainer lost the drain lock mid-tick: stop now."""
        self.lease.check()

    @property
    def call_deadline(self) -> timedelta:
        s = self.settings
        return timedelta(
            seconds=s.livevox_connect_timeout_s + s.livevox_read_timeout_s + s.call_grace_s
        )
