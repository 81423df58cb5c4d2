"""One drain tick: at most one Append call of at most BATCH_MAX records. No Celery in here.

Read the drain top-down: ``drain_once`` (here) takes the drain lease, puts right what a crash or a
lost answer left behind (``recover``), stops while the account is halted (``halt``), then gives
each target its turn oldest-work-first, behind a bulkhead (``bulkhead``), until one of them makes
a call or every one is blocked. A target's turn (``target``) picks its oldest open batch or claims
one from Redis and resolves today's campaign; ``send`` takes a rate slot, commits ``sending`` and
makes the call (``call``); ``result`` writes what the answer means (``settle`` decides it,
``isolate`` narrows a refusal down to its records). Every write goes through ``BatchStore``.
"""

from __future__ import annotations

import logging

from appendq.batches import reads
from appendq.batches.claims import ClaimConflict
from appendq.db.models import BatchStatus
from appendq.drain import bulkhead, dry_run, halt, recover, set_aside
from appendq.drain.context import Drainer, DrainReport, Tick
from appendq.drain.lease import DrainLease, LeaseLost, NoLease
from appendq.drain.target import drain_target

log = logging.getLogger(__name__)

__all__ = ["DrainReport", "Drainer", "drain_once", "take_tick"]


#: Outcomes that end the tick: a call was made (``called``), or what stops one target would
#: stop every other too (no rate slot, LiveVox unreachable), or a dry run's one batch per tick.
ACCOUNT_WIDE = (Tick.RATE_LIMITED, Tick.UNREACHABLE, BatchStatus.DRY_RUN)


#: How many drains a tick may catch up at once (``take_tick``): a tick that came late is not
#: lost to the next one coming early.
TICK_BURST = 2

# The account's tick gate, a GCRA on Redis's clock. KEYS[1]: the gate (the theoretical arrival
# time of the next drain, ms); ARGV: interval ms, burst. A drain is let through while that time
# is at most (burst - 1) intervals ahead of now; each one pushes it an interval further.
_TAKE_TICK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = tonumber(redis.call('GET', KEYS[1]) or '') or now
if due < now then due = now end
if due - now > interval * (burst - 1) then return 0 end
redis.call('SET', KEYS[1], due + interval, 'PX', due + interval - now + interval)
return 1
"""


def take_tick(d: Drainer) -> bool:
    """One drain per interval on average, whoever asks and however many ticks piled up, timed
    by Redis's clock (not the worker's): a GCRA gate per account that lets at most
    ``TICK_BURST`` drains through back to back. Beat sends every account's tick at once and
    workers take them in no set order, so one interval's tick may be taken late and the next
    one early: the gate lets both through (a fixed "not within 0.9 interval" key refused about a
    quarter of them on 2 to 4 workers, each a call lost for good: ``python -m bench.accounts``).
    Ticks that piled up while the workers were down, or that a second beat sent, drain at most
    ``TICK_BURST`` times and then once per interval; the rate limiter still bounds the calls."""
    interval_ms = max(int(d.settings.drain_interval_s * 1000), 1)
    script = d.redis.register_script(_TAKE_TICK)
    return bool(script(keys=[d.keys.tick], args=[interval_ms, TICK_BURST]))


def lease_ttl_s(d: Drainer) -> float:
    """The drain lock's TTL. It is renewed every third of it while a tick works, so it only
    bounds how long a frozen or dead holder keeps others waiting."""
    return min(d.call_deadline.total_seconds() * 2 + d.settings.drain_interval_s, 60.0)


def drain_once(d: Drainer) -> DrainReport:
    """Run one tick under the drain lease. A concurrent drainer's claim conflict ends the tick
    (the claim stays in flight for the next tick's recovery); so does a lost lease."""
    lease = DrainLease(d.redis, d.keys.drain_lock, lease_ttl_s(d))
    if not lease.acquire():
        return DrainReport(Tick.LOCKED)
    d.lease = lease
    try:
        return _leased_tick(d)
    except ClaimConflict as exc:
        log.warning("claim conflict with a concurrent drainer, left for recovery: %s", exc)
        return DrainReport(Tick.WAITING, reason="claim conflict")
    except LeaseLost as exc:
        log.error("drain stopped: %s", exc)
        return DrainReport(Tick.LEASE_LOST, reason=str(exc))
    finally:
        d.lease = NoLease()
        lease.release()


def _leased_tick(d: Drainer) -> DrainReport:
    if d.settings.dry_run:
        dry_run.mark_active(d)
    recovered = recover.recover_claims(d)
    d.check_lease()
    recover.reap_sending(d)
    stopped = halt.current(d.redis, d.keys)
    if stopped is not None:
        return DrainReport(
            Tick.HALTED,
            reason=f"{stopped.reason} "
            f"({stopped.remaining_s:.0f} s left; `appendq resume` lifts it)",
        )
    d.check_lease()
    recover.reconcile_due(d)
    d.check_lease()
    report = _tick(d)
    if recovered:
        report = DrainReport(**{**report.__dict__, "recovered": recovered})
    return report


def _ordered_targets(d: Drainer) -> list[str]:
    with d.sessions() as session:
        oldest = {t: at.timestamp() for t, at in reads.open_targets(session, d.account).items()}
    for target in d.queue.targets():
        try:
            head = d.queue.oldest(target)
        except ValueError:  # an unreadable head: first in line, its bulkhead settles it
            oldest[target] = 0.0
            continue
        if head is not None:
            oldest[target] = min(oldest.get(target, head.enqueued_at), head.enqueued_at)
    return sorted(oldest, key=lambda t: oldest[t])


def _tick(d: Drainer) -> DrainReport:
    blocked: list[DrainReport] = []
    aside = set_aside.current(d.redis, d.keys)
    for target in _ordered_targets(d):
        if target in aside:
            continue
        d.check_lease()
        report = bulkhead.behind_bulkhead(d, target, drain_target)
        if report.called or report.outcome in ACCOUNT_WIDE:
            return report
        if halt.current(d.redis, d.keys) is not None:  # a refused login: not once per target
            return report
        blocked.append(report)
    return blocked[0] if blocked else DrainReport(Tick.IDLE)
