"""The campaign resolver against real Redis, with a scripted stand-in for LiveVox's search:
a campaign that refused appends is skipped for ``refusal_s``, then resolved again."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import redis

from appendq.keys import Keys
from appendq.livevox.campaigns import CampaignResolver
from appendq.livevox.client import Campaign, LiveVoxClient
from appendq.target import Target

SERVICE = Target("service", 700)
PINNED = Target("campaign", 9001)
NOW = datetime(2024, 11, 28, 15, 0, tzinfo=UTC)


class FakeSearch:
    """Answers Find Matching Campaigns with a fixed list and counts the calls."""

    def __init__(self, campaigns: list[Campaign]) -> None:
        self.campaigns = campaigns
        self.searches = 0

    def find_campaigns(self, **_: Any) -> list[Campaign]:
        self.searches += 1
        return list(self.campaigns)


def campaign(ident: int, status: str, uploaded: int = 0) -> Campaign:
    return Campaign(ident, f"c{ident}", 1, SERVICE.id, status, uploaded)


def resolver(
    redis_client: redis.Redis,
    keys: Keys,
    search: FakeSearch,
    *,
    refusal_s: float = 900.0,
    cache_s: float = 0.001,
) -> CampaignResolver:
    return CampaignResolver(
        cast(LiveVoxClient, search),
        redis_client,
        keys,
        tz=ZoneInfo("America/New_York"),
        cache_s=cache_s,
        clock=lambda: NOW,
        refusal_s=refusal_s,
    )


def test_refused_campaign_is_skipped_then_resolved_again_after_the_ttl(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a PLAYING and a PAUSED campaign and a refusal TTL of 0.3 s / When the PLAYING one
    # refuses / Then the PAUSED one is chosen until the refusal expires, then the PLAYING again.
    search = FakeSearch([campaign(1, "PLAYING"), campaign(2, "PAUSED")])
    r = resolver(redis_client, keys, search, refusal_s=0.3)
    assert r.resolve(SERVICE).campaign_id == 1

    r.refuse(1, "Campaign does not allow append")
    assert redis_client.get(keys.refused(1)) == b"Campaign does not allow append"
    assert 0 < int(redis_client.pttl(keys.refused(1))) <= 300
    assert r.resolve(SERVICE).campaign_id == 2

    time.sleep(0.35)
    assert redis_client.exists(keys.refused(1)) == 0
    assert r.resolve(SERVICE).campaign_id == 1


def test_every_candidate_refused_resolves_to_none_naming_the_refusals(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given two candidates that both refused / When resolving / Then none, and the reason says so.
    search = FakeSearch([campaign(1, "PLAYING"), campaign(2, "READY")])
    r = resolver(redis_client, keys, search)
    r.refuse(1, "stopped")
    r.refuse(2, "stopped")
    resolution = r.resolve(SERVICE)
    assert resolution.campaign_id is None
    assert "2 candidate(s)" in resolution.reason and "2 refused appends" in resolution.reason


def test_cached_answer_naming_a_refused_campaign_is_not_used(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a cached answer (campaign 1) and a refusal of 1 written by another worker without
    # clearing the cache / When resolving / Then LiveVox is asked again and 2 is chosen.
    search = FakeSearch([campaign(1, "PLAYING"), campaign(2, "PAUSED")])
    r = resolver(redis_client, keys, search, cache_s=60.0)
    assert r.resolve(SERVICE).campaign_id == 1
    assert r.resolve(SERVICE).campaign_id == 1 and search.searches == 1  # from the cache
    redis_client.set(keys.refused(1), "stopped", px=60_000)
    assert r.resolve(SERVICE).campaign_id == 2
    assert search.searches == 2


def test_refused_pinned_campaign_resolves_to_none_with_the_time_left(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a pinned campaign that refused, TTL 0.3 s / When resolving / Then none, the reason
    # naming the campaign and the time left; after the TTL it is pinned again. No search ever.
    search = FakeSearch([])
    r = resolver(redis_client, keys, search, refusal_s=0.3)
    assert r.resolve(PINNED).campaign_id == PINNED.id

    r.refuse(PINNED.id, "Campaign does not allow append")
    refused = r.resolve(PINNED)
    assert refused.campaign_id is None
    assert f"pinned campaign {PINNED.id} refused appends" in refused.reason
    assert "tried again in 1 s" in refused.reason

    time.sleep(0.35)
    assert r.resolve(PINNED).campaign_id == PINNED.id
    assert search.searches == 0


def test_refusal_default_is_the_setting_default(redis_client: redis.Redis, keys: Keys) -> None:
    # Given a resolver built without refusal_s (current callers) / When a campaign refuses / Then
    # its key lives 900 s, the default of APPENDQ_CAMPAIGN_REFUSAL_S.
    r = CampaignResolver(
        cast(LiveVoxClient, FakeSearch([])),
        redis_client,
        keys,
        tz=ZoneInfo("UTC"),
        cache_s=60.0,
        clock=lambda: NOW,
    )
    r.refuse(5, "stopped")
    assert 899_000 < int(redis_client.pttl(keys.refused(5))) <= 900_000
    assert keys.refused(5) == f"{keys.prefix}:refused:5"
