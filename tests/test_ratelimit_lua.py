"""The rate limiter's Lua against a real Redis, table-driven where a table says it best: 5 calls in
any rolling 60 s, counted on Redis's clock; what ``acquire`` grants, how long a refused slot
waits (``Slot.wait_s``), what ``budget()`` says without taking, the key's expiry, the 429 pause,
and how ``keep``/``restamp``/``release`` move a slot. The log is seeded with ZADD at scores
relative to Redis ``TIME`` (the sorted set is the limiter's documented storage), so that each
case is exact to the margin of a few milliseconds the script takes."""

from __future__ import annotations

import time

import pytest
import redis

from appendq.keys import Keys
from appendq.livevox.ratelimit import RateLimiter

WINDOW_MS = 60_000
HOLD_MS = 10_000
SLACK_MS = 500  # the test's reads of Redis's clock vs the script's


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def limiter(client: redis.Redis, keys: Keys, **options: float) -> RateLimiter:
    values: dict[str, float] = {"max_calls": 5, "window_s": 60.0, "hold_s": HOLD_MS / 1000}
    values.update(options)
    return RateLimiter(
        client,
        keys,
        max_calls=int(values["max_calls"]),
        window_s=values["window_s"],
        margin_s=values.get("margin_s", 0.0),
        hold_s=values["hold_s"],
    )


def seed(client: redis.Redis, keys: Keys, ages_s: list[float]) -> int:
    """Slots whose calls ended ``ages_s`` ago (negative: still in flight that much longer)."""
    now = redis_ms(client)
    if ages_s:
        client.zadd(keys.rate, {f"old{i}": now - int(a * 1000) for i, a in enumerate(ages_s)})
    return now


#: slots already in the log (ended s ago) -> granted, remaining after, wait_s (refused)
ACQUIRED = [
    ([], True, 4, 0.0),
    ([50.0], True, 3, 0.0),
    ([50, 40, 30], True, 1, 0.0),
    ([50, 40, 30, 20], True, 0, 0.0),  # the 5th call of the window
    ([50, 40, 30, 20, 10], False, 0, 10.0),  # the 6th waits for the oldest to leave
    ([10, 20, 30, 40, 50], False, 0, 10.0),  # whatever order they came in
    ([55, 50, 40, 30, 20, 10], False, 0, 10.0),  # 6 counted: the second oldest must leave too
    ([59.0, 20, 20, 20, 20], False, 0, 1.0),
    ([61.0, 20, 20, 20, 20], True, 0, 0.0),  # the oldest left the window
    ([60.0, 20, 20, 20, 20], True, 0, 0.0),  # exactly a window old: out
    ([30.0, 20, 20, 20, -5.0], False, 0, 30.0),  # an in-flight slot counts until it ends
    ([70.0, 80.0, 90.0, 100.0, 110.0, 120.0], True, 4, 0.0),
    ([-1000.0] * 5, False, 0, 1060.0),  # five calls in flight for 1,000 s more
]


@pytest.mark.parametrize(("ages", "granted", "remaining", "wait"), ACQUIRED)
def test_acquire_counts_a_rolling_window_on_redis_clock(
    redis_client: redis.Redis,
    keys: Keys,
    ages: list[float],
    granted: bool,
    remaining: int,
    wait: float,
) -> None:
    # Given 5 calls per 60 s and slots in the log that ended this long ago / When a slot is
    # asked / Then granted with the slots left after it, or refused with how long until the
    # slot that must leave the window does.
    seed(redis_client, keys, ages)
    slot = limiter(redis_client, keys).acquire()
    assert (slot.granted, slot.remaining) == (granted, remaining)
    assert slot.wait_s == pytest.approx(wait, abs=SLACK_MS / 1000)
    assert slot.wait_s > 0 if not granted else slot.wait_s == 0.0
    assert (redis_client.zscore(keys.rate, slot.member) is not None) == granted
    assert abs(slot.granted_at - time.monotonic()) < 5


@pytest.mark.parametrize(
    ("ages", "granted", "remaining"),
    [
        ([], True, 5),
        ([50, 40], True, 3),
        ([50, 40, 30, 20], True, 1),
        ([50, 40, 30, 20, 10], False, 0),
    ],
)
def test_budget_looks_without_taking(
    redis_client: redis.Redis, keys: Keys, ages: list[float], granted: bool, remaining: int
) -> None:
    # Given slots in the log / When the budget is read (``/metrics``, ``appendq status``) /
    # Then it says whether a call may go and how many are left, takes none and trims nothing.
    seed(redis_client, keys, [*ages, 70.0])
    before = redis_client.zcard(keys.rate)
    rl = limiter(redis_client, keys)
    budget = rl.budget()
    assert (budget.granted, budget.remaining, budget.wait_s, budget.member) == (
        granted,
        remaining,
        0.0,
        "",
    )
    assert rl.budget().remaining == remaining  # reading again changes nothing
    assert redis_client.zcard(keys.rate) == before


def test_a_granted_slot_is_held_ahead_and_the_key_expires_after_it(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a log with a slot out of the window / When a slot is granted / Then the old one is
    # trimmed, the new one is scored now + hold, and the key lives a window past that score.
    now = seed(redis_client, keys, [61.0, 59.0])
    slot = limiter(redis_client, keys).acquire()
    assert slot.granted and slot.remaining == 3
    assert redis_client.zscore(keys.rate, "old0") is None  # trimmed
    assert redis_client.zscore(keys.rate, "old1") is not None
    score = redis_client.zscore(keys.rate, slot.member)
    assert score is not None and now + HOLD_MS <= score <= now + HOLD_MS + SLACK_MS
    ttl = redis_client.pttl(keys.rate)
    assert HOLD_MS + WINDOW_MS - SLACK_MS < ttl <= HOLD_MS + WINDOW_MS + 1000


def test_the_margin_widens_the_window_and_a_short_hold_is_a_second(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a 60 s window with a 2 s margin and a hold of 0.2 s / When five slots ended 61 s ago
    # and a sixth is asked / Then they still count (the window is 62 s): refused for 1 s; the
    # limiter's hold is at least 1 s.
    seed(redis_client, keys, [61.0] * 5)
    rl = limiter(redis_client, keys, margin_s=2.0, hold_s=0.2)
    assert (rl.window_ms, rl.hold_ms) == (62_000, 1000)
    refused = rl.acquire()
    assert not refused.granted and refused.wait_s == pytest.approx(1.0, abs=SLACK_MS / 1000)


def test_without_a_margin_the_window_is_the_window(redis_client: redis.Redis, keys: Keys) -> None:
    rl = RateLimiter(redis_client, keys, max_calls=5, window_s=60.0, hold_s=30.0)
    assert (rl.window_ms, rl.hold_ms) == (60_000, 30_000)


def test_after_a_429_every_slot_is_refused_for_a_window(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given an empty log / When LiveVox answered 429 and the limiter pauses / Then acquire and
    # budget are refused for a whole window, no slot taken, and the pause key expires then.
    rl = limiter(redis_client, keys, window_s=2.0)
    before = redis_ms(redis_client)
    rl.pause()
    after = redis_ms(redis_client)
    until = int(redis_client.get(keys.rate_pause) or 0)
    assert before + 2000 <= until <= after + 2000  # Redis's clock: ms since the epoch
    for slot in (rl.acquire(), rl.budget()):
        assert (slot.granted, slot.remaining) == (False, 0)
        assert slot.wait_s == pytest.approx(2.0, abs=SLACK_MS / 1000)
    assert redis_client.zcard(keys.rate) == 0
    assert 2000 - SLACK_MS < redis_client.pttl(keys.rate_pause) <= 2000


def test_keep_never_moves_a_slot_back_and_restamp_moves_it_to_now(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a granted slot / When kept during its call / Then its score is now + hold, never
    # lowered below a later score; When restamped at the call's end / Then scored now (lowered),
    # and the key's expiry covers a window past it; a restamp re-adds a slot something removed.
    rl = limiter(redis_client, keys)
    slot = rl.acquire()
    far = redis_ms(redis_client) + 5 * HOLD_MS
    redis_client.zadd(keys.rate, {slot.member: far})
    rl.keep(slot)
    assert redis_client.zscore(keys.rate, slot.member) == far  # never backwards
    redis_client.zadd(keys.rate, {slot.member: 0})
    before = redis_ms(redis_client)
    rl.keep(slot)
    kept = redis_client.zscore(keys.rate, slot.member)
    assert kept is not None and before + HOLD_MS <= kept <= before + HOLD_MS + SLACK_MS
    before = redis_ms(redis_client)
    rl.restamp(slot)
    stamped = redis_client.zscore(keys.rate, slot.member)
    assert stamped is not None and before <= stamped <= before + SLACK_MS
    redis_client.zrem(keys.rate, slot.member)
    redis_client.pexpire(keys.rate, 100)
    rl.restamp(slot)
    assert redis_client.zscore(keys.rate, slot.member) is not None
    assert WINDOW_MS < redis_client.pttl(keys.rate) <= WINDOW_MS + 1000


def test_release_gives_a_slot_back_and_refused_slots_touch_nothing(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a full window and one granted slot / When the granted slot is released / Then the
    # next call has it; releasing, keeping or restamping a refused slot changes nothing.
    seed(redis_client, keys, [50, 40, 30, 20])
    rl = limiter(redis_client, keys)
    slot = rl.acquire()
    refused = rl.acquire()
    assert slot.granted and not refused.granted
    for act in (rl.release, rl.keep, rl.restamp):
        act(refused)
    assert redis_client.zcard(keys.rate) == 5
    rl.release(slot)
    assert redis_client.zcard(keys.rate) == 4
    assert rl.acquire().granted


def test_a_slot_in_flight_is_kept_ahead_until_its_call_ends(
    redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a slot held 1 s ahead (kept every third of that) / When its call runs 1.6 s / Then
    # its score is still ahead of Redis's clock at the end of the call (kept, never dropped
    # behind), and once the call ended it is scored with the moment it ended.
    rl = limiter(redis_client, keys, window_s=0.5, hold_s=1.0)
    slot = rl.acquire()
    with rl.in_flight([slot]):
        time.sleep(1.6)
        now = redis_ms(redis_client)
        kept = redis_client.zscore(keys.rate, slot.member)
        assert kept is not None and kept > now + 300
    ended = redis_ms(redis_client)
    stamped = redis_client.zscore(keys.rate, slot.member)
    assert stamped is not None and ended - SLACK_MS <= stamped <= ended
