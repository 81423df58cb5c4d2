"""``appendq status``: queue depth and oldest age per target, current campaign, hold reason, rate
budget left, batches by status. One plain function returning a JSON-ready dict."""

from __future__ import annotations

from typing import Any

from appendq.audit import timeline
from appendq.batches import reads
from appendq.clock import utcnow
from appendq.drain import halt, set_aside
from appendq.livevox.campaigns import cache_name
from appendq.runtime import Runtime


def collect(rt: Runtime) -> dict[str, Any]:
    with rt.sessions() as session:
        states = timeline.target_states(session)
        by_status = reads.count_by_status(session)
        open_targets = reads.open_targets(session)
    aside = set_aside.current(rt.redis, rt.keys)
    targets = sorted(set(rt.queue.targets()) | set(states) | set(open_targets) | set(aside))
    rows = []
    for target in targets:
        head = rt.queue.oldest(target)
        state = states.get(target)
        cached = rt.redis.get(rt.keys.campaign(cache_name(target, utcnow(), rt.settings.tz)))
        rows.append(
            {
                "target": target,
                "queued": rt.queue.depth(target),
                "oldest_age_s": round(timeline.age_s(head.enqueued_at), 1) if head else None,
                "campaign_id": state.campaign_id if state else None,
                "campaign_cached": cached is not None,
                "hold_reason": state.hold_reason if state else None,
                "set_aside": aside[target].to_dict() if target in aside else None,
            }
        )
    budget = rt.limiter.budget()
    stopped = halt.current(rt.redis, rt.keys)
    dry = rt.redis.get(rt.keys.dry_run)
    return {
        "dry_run": (dry.decode() if isinstance(dry, bytes) else dry) if dry else None,
        "halt": {"reason": stopped.reason, "remaining_s": stopped.remaining_s} if stopped else None,
        "targets": rows,
        "rate": {
            "max_calls": rt.settings.rate_max_calls,
            "window_s": rt.settings.rate_window_s,
            "remaining": budget.remaining,
            "wait_s": budget.wait_s,
        },
        "batches": by_status,
    }
