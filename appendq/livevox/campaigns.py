"""Which LiveVox campaign a target's records go to today.

A ``campaign:ID`` target is pinned by an operator. A ``service:ID`` target resolves to today's
outbound campaign of that service (Find Matching Campaigns over today in APPENDQ_TIMEZONE) whose
status word is one of APPENDQ_LIVEVOX_APPENDABLE_STATES, preferring the words in that setting's
order (default PLAYING, PAUSED, READY, ACTIVE, PREBUILT), most recently uploaded first. The status
words are matched here, not sent as a search filter: LiveVox's vocabulary is unconfirmed (the .NET
client lists ACTIVE and PREBUILT, no READY; the Java client filters on READY), and a filter word
LiveVox does not know could fail the search or silently match nothing. A malformed campaign
entry is skipped (logged, counted by the client), never the page.

A campaign that refused an append (any refusal about the campaign, whatever its status) is skipped
for ``refusal_s`` (a key per campaign with that TTL), since "Allow Append" cannot be seen before a
call fails, and then tried again: a refusal may also be passing, so it is not held against the
campaign for the rest of the day. A pinned campaign that refused resolves to none until its refusal
expires. Answers, and "none", are cached briefly in Redis.

Searches are budgeted: at most ``searches_per_minute`` per rolling minute for the whole account,
on Redis's clock (a sorted set, one Lua step). A target whose search is not in budget keeps its
last answer (up to ``STALE_MS`` old, never one naming a campaign that refused since); one without
any raises ``SearchDeferred`` (no call made; it waits, with the reason). A 403 on one service's
search is about that service: ``TargetRefused``, so the caller sets that target aside instead of
halting the account.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import redis

from appendq.errors import Forbidden, SearchDeferred, TargetRefused
from appendq.keys import Keys
from appendq.livevox.client import Campaign, LiveVoxClient
from appendq.target import Target

log = logging.getLogger(__name__)

#: The default preference order (APPENDQ_LIVEVOX_APPENDABLE_STATES): Playing, Paused, then the
#: words public clients show for a Built campaign.
APPENDABLE_STATES = ("PLAYING", "PAUSED", "READY", "ACTIVE", "PREBUILT")
OUTBOUND = 1
SEARCH_WINDOW_MS = 60_000
#: An answer older than the cache TTL is still used, up to this age, while the search budget is
#: spent (a target that has never been resolved waits instead).
STALE_MS = 300_000

# KEYS: log. ARGV: max searches, window ms, member. Returns {granted, wait ms}.
_SEARCH_BUDGET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < max then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.max(tonumber(oldest[2]) + window - now, 1)}
"""


@dataclass(frozen=True)
class Resolution:
    campaign_id: int | None
    reason: str  # why this campaign, or why none


def cache_name(target: Target | str, now: datetime, tz: ZoneInfo) -> str:
    """The campaign cache's name for a target on the local day of ``now``."""
    return f"{target}:{now.astimezone(tz).date().isoformat()}"


def today_bounds(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), time.min, tzinfo=tz)
    return start, start + timedelta(days=1) - timedelta(milliseconds=1)


def choose(
    campaigns: list[Campaign], refused: set[int], states: Sequence[str] = APPENDABLE_STATES
) -> Campaign | None:
    """The best appendable candidate, or None: outbound, a status word in ``states`` (compared
    upper-case; earlier words preferred), not refused lately; then most recently uploaded."""
    rank = {state.upper(): n for n, state in enumerate(states)}
    candidates = [
        c
        for c in campaigns
        if c.type_id == OUTBOUND and c.status.upper() in rank and c.id not in refused
    ]
    candidates.sort(key=lambda c: (rank[c.status.upper()], -(c.upload_date_ms or 0), -c.id))
    return candidates[0] if candidates else None


class CampaignResolver:
    def __init__(
        self,
        client: LiveVoxClient,
        redis_client: redis.Redis,
        keys: Keys,
        *,
        tz: ZoneInfo,
        cache_s: float,
        clock: Callable[[], datetime],
        refusal_s: float = 900.0,
        states: Sequence[str] = APPENDABLE_STATES,
        searches_per_minute: int = 60,
    ) -> None:
        self.client = client
        self.redis = redis_client
        self.keys = keys
        self.tz = tz
        self.cache_ms = max(int(cache_s * 1000), 1)
        self.refusal_ms = max(int(refusal_s * 1000), 1)
        self.clock = clock
        self.states = tuple(s.upper() for s in states)
        self.searches_per_minute = max(searches_per_minute, 1)
        self._budget = redis_client.register_script(_SEARCH_BUDGET)

    def resolve(self, target: Target) -> Resolution:
        """Raises the client's errors (Transient, Forbidden, ...) when LiveVox can't be asked."""
        if target.kind == "campaign":
            left_ms = self._refusal_left_ms(target.id)
            if left_ms is not None:
                return Resolution(
                    None,
                    f"pinned campaign {target.id} refused appends; tried again in "
                    f"{_seconds(left_ms)}",
                )
            return Resolution(target.id, "pinned by an operator")
        # The cache is per local day: after midnight yesterday's answer is never reused.
        key = self.keys.campaign(cache_name(target, self.clock(), self.tz))
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.pttl(key)
        cached, left_ms = pipe.execute()
        data = json.loads(cached) if cached is not None else None
        if data is not None and (data["id"] is None or not self._refused_among([data["id"]])):
            if int(left_ms) > STALE_MS or int(left_ms) == -1:  # fresh: within the cache TTL
                return Resolution(data["id"], data["reason"])
        else:
            data = None  # nothing usable: a refused campaign's answer is never reused
        try:
            resolution = self._search(target.id)
        except SearchDeferred:
            if data is None:
                raise
            # Out of budget: the last answer (no older than STALE_MS) stands a while longer.
            return Resolution(data["id"], data["reason"])
        value = {"id": resolution.campaign_id, "reason": resolution.reason}
        # Fresh for cache_ms, then kept STALE_MS more (Redis's clock: the key's TTL says which).
        self.redis.set(key, json.dumps(value), px=self.cache_ms + STALE_MS)
        return resolution

    def _search(self, service_id: int) -> Resolution:
        self._take_search(service_id)
        start, end = today_bounds(self.clock(), self.tz)
        try:
            found = self.client.find_campaigns(
                service_id=service_id, start=start, end=end, states=(), type_ids=(OUTBOUND,)
            )
        except Forbidden as exc:
            raise TargetRefused(
                f"the campaign search for service {service_id} was refused (403): {exc.message}",
                status=exc.status,
                code=exc.code,
            ) from exc
        refused = self._refused_among([c.id for c in found])
        best = choose(found, refused, self.states)
        if best is None:
            return Resolution(None, self._none_reason(service_id, found, refused))
        log.info(
            "service %s resolves to campaign %s (%s)",
            service_id,
            best.id,
            best.status,
            extra={"service": service_id, "campaign": best.id},
        )
        return Resolution(best.id, f"today's {best.status} outbound campaign {best.id}")

    def _take_search(self, service_id: int) -> None:
        """One search from the account's budget, or ``SearchDeferred`` with the wait."""
        granted, wait_ms = self._budget(
            keys=[self.keys.search_budget],
            args=[self.searches_per_minute, SEARCH_WINDOW_MS, uuid.uuid4().hex],
        )
        if not int(granted):
            raise SearchDeferred(
                f"campaign search for service {service_id} waits: the account's budget of "
                f"{self.searches_per_minute} searches per minute is spent; next in "
                f"{_seconds(int(wait_ms))}",
                retry_after_s=int(wait_ms) / 1000,
            )

    def _none_reason(self, service_id: int, found: list[Campaign], refused: set[int]) -> str:
        outbound = [c for c in found if c.type_id == OUTBOUND]
        seen = sorted({c.status for c in outbound})
        skipped = f"; {len(refused)} refused appends lately" if refused else ""
        return (
            f"no appendable campaign today for service {service_id}: {len(outbound)} "
            f"candidate(s) (outbound), status words seen: {', '.join(seen) or 'none'} (appendable: "
            f"{'/'.join(self.states)}){skipped}"
        )

    def refuse(self, campaign_id: int, reason: str) -> None:
        """Skip this campaign for ``refusal_s``; forget cached answers that named it."""
        self.redis.set(self.keys.refused(campaign_id), reason[:500], px=self.refusal_ms)
        log.warning(
            "campaign %s refused appends: %s; skipped for %s",
            campaign_id,
            reason,
            _seconds(self.refusal_ms),
            extra={"campaign": campaign_id},
        )
        self.forget_all()

    def forget_all(self) -> None:
        for key in self.redis.scan_iter(match=self.keys.campaign("*"), count=500):
            self.redis.delete(key)

    def _refused_among(self, campaign_ids: list[int]) -> set[int]:
        """Which of these campaigns refused appends lately: one MGET, however many."""
        if not campaign_ids:
            return set()
        values = self.redis.mget([self.keys.refused(c) for c in campaign_ids])
        return {c for c, value in zip(campaign_ids, values, strict=True) if value is not None}

    def _refusal_left_ms(self, campaign_id: int) -> int | None:
        """How long this campaign's refusal still holds (ms), or None when it does not."""
        left = int(self.redis.pttl(self.keys.refused(campaign_id)))
        if left == -2:  # no such key
            return None
        return max(left, 0) if left >= 0 else self.refusal_ms  # -1: no TTL (never set so)


def _seconds(ms: int) -> str:
    return f"{math.ceil(max(ms, 0) / 1000)} s"
