"""Bulkheads in the tick: one target's turn, behind a wall. What is about this target alone sets
it aside (``appendq.drain.set_aside``) and the tick goes on; what is about every target ends
the tick."""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg
import redis
from sqlalchemy.exc import DataError, InterfaceError, OperationalError

from appendq.batches.claims import ClaimConflict
from appendq.drain import set_aside
from appendq.drain.context import Drainer, DrainReport, Tick
from appendq.drain.lease import LeaseLost
from appendq.errors import (
    CampaignUnavailable,
    Configuration,
    LiveVoxError,
    LoginDenied,
    TargetRefused,
)
from appendq.target import Target

log = logging.getLogger(__name__)

#: Failures about every target, not one: they end the tick (the next tick tries again).
TICK_WIDE = (
    LeaseLost,
    ClaimConflict,
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    redis.RedisError,
)


def behind_bulkhead(
    d: Drainer, target: str, drain_target: Callable[[Drainer, Target], DrainReport]
) -> DrainReport:
    """One target's turn. What is about this target alone (a malformed name, data PostgreSQL
    refuses, repeated unexpected failures) sets it aside and the tick goes on to the next one;
    what is about every target (PostgreSQL or Redis unreachable, a lost lease) ends the tick."""
    try:
        parsed = Target.parse(target)  # the one parse: from here on the target is typed
    except ValueError as exc:
        return set_target_aside(d, target, "malformed", f"not a target name: {exc}")
    try:
        report = drain_target(d, parsed)
    except TICK_WIDE:
        raise
    except (DataError, psycopg.DataError) as exc:
        reason = f"its records cannot be stored: {getattr(exc, 'orig', None) or exc}"
        return set_target_aside(d, target, "persist", reason)
    except Exception as exc:
        failures = set_aside.note_failure(d.redis, d.keys, target)
        log.exception("%s: drain failed (%d in a row)", target, failures, extra={"target": target})
        if failures >= set_aside.FAILURES_BEFORE_SET_ASIDE:
            reason = f"its drain failed {failures} ticks in a row: {type(exc).__name__}: {exc}"
            return set_target_aside(d, target, "error", reason)
        return DrainReport(Tick.ERROR, target, reason=f"{type(exc).__name__}: {exc}")
    set_aside.note_success(d.redis, d.keys, target)
    return report


def set_target_aside(d: Drainer, target: str, kind: str, reason: str) -> DrainReport:
    entry = set_aside.set_aside(
        d.redis,
        d.keys,
        d.sessions,
        target,
        kind=kind,
        reason=reason,
        actor=d.actor,
        account=d.account,
    )
    return DrainReport(Tick.SET_ASIDE, target, reason=entry.reason)


def about_this_target(exc: LiveVoxError) -> bool:
    """A campaign search refused with a 4xx (not 401: the session) is about that service; a
    refused login or a non-4xx configuration answer is about the account."""
    if isinstance(exc, TargetRefused):
        return True
    if isinstance(exc, LoginDenied) or not isinstance(exc, Configuration | CampaignUnavailable):
        return False
    return exc.status is not None and 400 <= exc.status < 500 and exc.status != 401
