"""Scenarios drained in-process (``drain_once``, as beat would tick) against real Redis, real
PostgreSQL and the simulator over HTTP: fast settings, a runtime that is always closed, ticks
until the records settle, a batch's path, and the invariants on the runtime's stores."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import select

from appendq.db.models import Event
from appendq.drain.tick import DrainReport, drain_once
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.support.invariants import Summary, all_final, check
from tests.support.poll import wait_until

CAMPAIGN = 5001
SERVICE = "service:1001"
WINDOW_S = 3.0


def fast_settings(base: Settings, **overrides: Any) -> Settings:
    """1 s connect and read timeouts (call deadline 7 s), batches of 10, short backoff."""
    values: dict[str, Any] = {
        "livevox_connect_timeout_s": 1.0,
        "livevox_read_timeout_s": 1.0,
        "batch_max": 10,
        "retry_base_s": 0.3,
        "retry_cap_s": 1.0,
        "rate_window_s": WINDOW_S,
        "rate_margin_s": 0.2,
    }
    values.update(overrides)
    return base.model_copy(update=values)


def tick_until(
    rt: Runtime, done: Callable[[], bool], timeout: float, what: str, pause: float = 0.1
) -> list[DrainReport]:
    """Run ticks (like beat would, every ``pause`` s) until ``done()``; the reports."""
    reports: list[DrainReport] = []

    def settled() -> bool:
        if done():
            return True
        reports.append(drain_once(rt.drainer()))
        return False

    def last_outcomes() -> str:
        return f"; {[(r.outcome, r.reason) for r in reports[-5:]]}"

    wait_until(settled, timeout, what, pause, explain=last_outcomes)
    return reports


def drain_until(
    rt: Runtime,
    ids: list[str],
    expect: Collection[str],
    timeout: float,
    what: str,
    pause: float = 0.1,
) -> list[DrainReport]:
    """Ticks until every one of ``ids`` is in PostgreSQL with one of the ``expect`` statuses."""
    url = rt.settings.database_url
    return tick_until(rt, lambda: all_final(url, ids, expect), timeout, what, pause)


def path_of(rt: Runtime, batch_id: int) -> list[str]:
    """The statuses a batch went through, in order."""
    with rt.sessions() as session:
        events = session.scalars(
            select(Event).where(Event.batch_id == batch_id).order_by(Event.at, Event.id)
        )
        return [e.to_status for e in events]


def invariants(rt: Runtime, sim_url: str, ids: list[str], **kwargs: Any) -> Summary:
    """``tests.support.invariants.check`` on the runtime's stores and rate settings."""
    s = rt.settings
    return check(
        database_url=s.database_url,
        sim_url=sim_url,
        accepted=ids,
        prefix=s.redis_prefix,
        redis_url=s.redis_url,
        rate_max_calls=s.rate_max_calls,
        rate_window_s=s.rate_window_s,
        **kwargs,
    )
