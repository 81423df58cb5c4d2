"""Which LiveVox campaign a target's records go to today.

A ``campaign:ID`` target is pinned by an operator. A ``service:ID`` target resolves to today's
outbound campaign of that service (Find Matching Campaigns over today in APPENDQ_TIMEZONE, states
READY/PAUSED/PLAYING), preferring PLAYING, then PAUSED, then READY (Built), most recently uploaded
first. A campaign that refused an append (409/404) is skipped for ``refusal_s`` (a key per campaign
with that TTL), since "Allow Append" cannot be seen before a call fails, and then tried again: a
refusal may also be passing, so it is not held against the campaign for the rest of the day. A
pinned campaign that refused resolves to none until its refusal expires. Answers, and "none", are
cached briefly in Redis.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import redis

from appendq.keys import Keys
from appendq.livevox import Campaign, LiveVoxClient
from appendq.records import Target

log = logging.getLogger(__name__)

APPENDABLE_STATES = ("PLAYING", "PAUSED", "READY")
OUTBOUND = 1
_RANK = {state: rank for rank, state in enumerate(APPENDABLE_STATES)}


@dataclass(frozen=True)
class Resolution:
    campaign_id: int | None
    reason: str  # why this campaign, or why none


def today_bounds(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), time.min, tzinfo=tz)
    return start, start + timedelta(days=1) - timedelta(milliseconds=1)


def choose(campaigns: list[Campaign], refused: set[int]) -> Campaign | None:
    """The best appendable candidate, or None."""
    candidates = [
        c for c in campaigns if c.type_id == OUTBOUND and c.status in _RANK and c.id not in refused
    ]
    candidates.sort(key=lambda c: (_RANK[c.status], -(c.upload_date_ms or 0), -c.id))
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
    ) -> None:
        self.client = client
        self.redis = redis_client
        self.keys = keys
        self.tz = tz
        self.cache_ms = max(int(cache_s * 1000), 1)
        self.refusal_ms = max(int(refusal_s * 1000), 1)
        self.clock = clock

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
        cached = self.redis.get(self.keys.campaign(str(target)))
        if cached is not None:
            data = json.loads(cached)
            if data["id"] is None or not self._refused_among([data["id"]]):
                return Resolution(data["id"], data["reason"])
        resolution = self._search(target.id)
        self.redis.set(
            self.keys.campaign(str(target)),
            json.dumps({"id": resolution.campaign_id, "reason": resolution.reason}),
            px=self.cache_ms,
        )
        return resolution

    def _search(self, service_id: int) -> Resolution:
        start, end = today_bounds(self.clock(), self.tz)
        found = self.client.find_campaigns(
            service_id=service_id,
            start=start,
            end=end,
            states=APPENDABLE_STATES,
            type_ids=(OUTBOUND,),
        )
        refused = self._refused_among([c.id for c in found])
        best = choose(found, refused)
        if best is None:
            skipped = f" ({len(refused)} refused appends lately)" if refused else ""
            return Resolution(
                None,
                f"no appendable campaign today for service {service_id}: "
                f"{len(found)} candidate(s) in {'/'.join(APPENDABLE_STATES)}"
                f"{skipped}",
            )
        log.info(
            "service %s resolves to campaign %s (%s)",
            service_id,
            best.id,
            best.status,
            extra={"service": service_id, "campaign": best.id},
        )
        return Resolution(best.id, f"today's {best.status} outbound campaign {best.id}")

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

    def cached(self, target: str) -> int | None:
        value = self.redis.get(self.keys.campaign(target))
        return json.loads(value)["id"] if value else None

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
