"""``appendq status``: per LiveVox account, queue depth and oldest age per target, current
campaign, hold reason, rate budget left, halt, dry run and batches by status; and the batches of
every account shown, by status. One plain function returning a JSON-ready dict.

Each account is read through its own lane (``Runtime.lane``): its queues, rate limiter, halt,
campaign cache (its own time zone) and target states. Two accounts may have a target of the same
name (``service:1001`` at two LiveVox clients); they are never mixed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection
from typing import Any

from sqlalchemy.orm import Session

from appendq.audit import timeline
from appendq.batches import reads
from appendq.clock import utcnow
from appendq.drain import halt, set_aside
from appendq.livevox.campaigns import cache_name
from appendq.runtime import Lane, Runtime


def collect(
    rt: Runtime, account: str | None = None, *, among: Collection[str] | None = None
) -> dict[str, Any]:
    """``{"accounts": [one section per account], "batches": {status: count}}``.

    ``account``: that account alone (``InvalidValue`` if it is not configured); None: every
    configured account, or only those in ``among`` (a caller limited to some accounts). The
    totals are over every batch in PostgreSQL when every account is shown (an account since
    removed from the accounts file included), else over the accounts shown."""
    if account is not None:
        names = [rt.accounts.get_account(account).name]
    else:
        names = [n for n in rt.accounts if among is None or n in among]
    everyone = account is None and among is None
    with rt.sessions() as session:
        # one pass over the batches for every section and the totals (not one per account)
        counts = reads.count_by_account_status(session, None if everyone else names)
        sections = [_section(rt.lane(name), session, counts.get(name, {})) for name in names]
    shown = counts.values() if everyone else [s["batches"] for s in sections]
    totals = dict(sum((Counter(c) for c in shown), Counter()))
    return {"accounts": sections, "batches": totals}


def _section(lane: Lane, session: Session, batches: dict[str, int]) -> dict[str, Any]:
    """One account's part of the status."""
    name = lane.account.name
    stopped = halt.current(lane.redis, lane.keys)
    dry = lane.redis.get(lane.keys.dry_run)
    budget = lane.limiter.budget()
    return {
        "account": name,
        "client_name": lane.account.client_name,
        "dry_run": (dry.decode() if isinstance(dry, bytes) else dry) if dry else None,
        "halt": {"reason": stopped.reason, "remaining_s": stopped.remaining_s} if stopped else None,
        "targets": _targets(lane, session),
        "rate": {
            "max_calls": lane.settings.rate_max_calls,
            "window_s": lane.settings.rate_window_s,
            "remaining": budget.remaining,
            "wait_s": budget.wait_s,
        },
        "batches": batches,
    }


def _targets(lane: Lane, session: Session) -> list[dict[str, Any]]:
    """Every target of the account that has records queued, a state, open batches or is set
    aside: depth, oldest age, campaign, hold reason."""
    name, queue = lane.account.name, lane.queue
    states = timeline.target_states(session, name)
    open_targets = reads.open_targets(session, name)
    aside = set_aside.current(lane.redis, lane.keys)
    rows = []
    for target in sorted(set(queue.targets()) | set(states) | set(open_targets) | set(aside)):
        head = queue.oldest(target)
        state = states.get(target)
        day = cache_name(target, utcnow(), lane.settings.tz)
        cached = lane.redis.get(lane.keys.campaign(day))
        rows.append(
            {
                "target": target,
                "queued": queue.depth(target),
                "oldest_age_s": round(timeline.age_s(head.enqueued_at), 1) if head else None,
                "campaign_id": state.campaign_id if state else None,
                "campaign_cached": cached is not None,
                # why today's campaign (its state: "today's Playing outbound campaign 9001"), or
                # why none, as the last search answered
                "campaign_note": _note(cached),
                "hold_reason": state.hold_reason if state else None,
                "set_aside": aside[target].to_dict() if target in aside else None,
            }
        )
    return rows


def _note(cached: bytes | str | None) -> str | None:
    """The reason of a cached campaign resolution (None when there is none, or it is not one
    this version wrote)."""
    try:
        reason = json.loads(cached)["reason"] if cached is not None else None
    except (ValueError, TypeError, KeyError):
        return None
    return reason if isinstance(reason, str) else None
