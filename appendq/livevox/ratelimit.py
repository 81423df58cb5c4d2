"""A sliding-log rate limiter for Append calls, on Redis's clock.

Every attempt takes a slot before it is made, failed ones too (LiveVox may have counted them). The
log is a sorted set of slots scored by Redis ``TIME`` in milliseconds, so the workers' own clocks
never matter. A slot's score is the latest moment LiveVox may count its call:

- when granted, ``now + hold`` (the call's longest possible life), kept fresh by a keeper while the
  call runs (``in_flight``), so a call longer than the window still counts, and a call whose worker
  was killed counts until long after it can have landed;
- when the call ends, the moment it ended (``restamp``; a plain ZADD, so it re-adds an entry that
  something removed).

A slot counts while its score is inside the window (``score > now - window``): an in-flight slot
always does. Only ``acquire`` trims entries, and only those that left the window; ``budget`` (behind
``/metrics`` and ``appendq status``) only counts. The key expires one window after its latest
score. The window counted is RATE_WINDOW_S + RATE_MARGIN_S, so jitter between our clock and
LiveVox's cannot squeeze a sixth call into LiveVox's minute. After a 429 the limiter refuses every
slot for a whole window.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import redis

from appendq.keys import Keys

# KEYS: log, pause. ARGV: max calls, window ms, member ('' = only count), hold ms.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max, window, hold = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return {0, pause - now, 0} end
local used = redis.call('ZCOUNT', KEYS[1], '(' .. (now - window), '+inf')
if ARGV[3] == '' then
  return {used < max and 1 or 0, 0, math.max(max - used, 0)}
end
if used < max then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  redis.call('ZADD', KEYS[1], now + hold, ARGV[3])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[1], math.max(tonumber(last[2]) - now, 0) + window + 1000)
  return {1, 0, max - used - 1}
end
local counted = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - window), '+inf', 'WITHSCORES')
local frees = tonumber(counted[(used - max) * 2 + 2])
return {0, frees + window - now, 0}
"""

# KEYS: log. ARGV: member, offset ms (0 = the call ended now; hold = still in flight).
_STAMP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = now + tonumber(ARGV[2])
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[2] ~= '0' and old and tonumber(old) > score then score = tonumber(old) end
redis.call('ZADD', KEYS[1], score, ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
local need = score - now + tonumber(ARGV[3]) + 1000
if ttl < need then redis.call('PEXPIRE', KEYS[1], need) end
return score
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], now + tonumber(ARGV[1]), 'PX', tonumber(ARGV[1]))
return now + tonumber(ARGV[1])
"""


@dataclass(frozen=True)
class Slot:
    granted: bool
    wait_s: float  # when refused: how long until a slot may free up
    remaining: int  # slots left in the window after this decision
    member: str = ""  # the log entry of a granted slot (for ``restamp``)
    #: ``time.monotonic()`` when it was granted: a call made much later than that may fall
    #: outside the slot's stamp (its process froze), so the drain refuses to make it.
    granted_at: float = 0.0


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        max_calls: int,
        window_s: float,
        margin_s: float = 0.0,
        hold_s: float = 120.0,
    ) -> None:
        """``hold_s``: the longest an Append call can live (its total deadline and a grace): a
        slot whose call is in flight counts as if the call ended that far in the future."""
        self._redis = client
        self.keys = keys
        self.max_calls = max_calls
        self.window_ms = int((window_s + margin_s) * 1000)
        self.hold_ms = max(int(hold_s * 1000), 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._pause = client.register_script(_PAUSE)
        self._stamp = client.register_script(_STAMP)

    def acquire(self) -> Slot:
        """Take a slot for one Append call, or say how long to wait."""
        return self._run(uuid.uuid4().hex)

    def restamp(self, slot: Slot) -> None:
        """After the call: stamp the slot's entry with now (Redis's clock), so the window counts
        from the latest moment LiveVox can have counted the call, however long the PUT took.
        Re-adds the entry if anything removed it."""
        if slot.granted and slot.member:
            self._stamp(keys=[self.keys.rate], args=[slot.member, 0, self.window_ms])

    def release(self, slot: Slot) -> None:
        """Give back a slot whose call was never made."""
        if slot.granted and slot.member:
            self._redis.zrem(self.keys.rate, slot.member)

    def keep(self, slot: Slot) -> None:
        """While the call runs: push the slot's score to now + hold again (never backwards)."""
        if slot.granted and slot.member:
            self._stamp(keys=[self.keys.rate], args=[slot.member, self.hold_ms, self.window_ms])

    @contextmanager
    def in_flight(self, slots: Sequence[Slot]) -> Iterator[None]:
        """Keep ``slots`` counted while the block runs (a keeper thread re-stamps them every
        third of the hold), then restamp them with the moment the block ended."""
        stop = threading.Event()

        def keeper() -> None:
            while not stop.wait(self.hold_ms / 3000):
                for slot in slots:
                    with suppress(redis.RedisError):  # the acquire-time stamp still holds
                        self.keep(slot)

        thread = threading.Thread(target=keeper, name="rate-slot-keeper", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            for slot in slots:
                self.restamp(slot)

    def budget(self) -> Slot:
        """Look without taking: ``remaining`` is the number of calls allowed right now."""
        return self._run("")

    def pause(self) -> None:
        """After a 429: refuse every slot for a whole window."""
        self._pause(keys=[self.keys.rate_pause], args=[self.window_ms])

    def _run(self, member: str) -> Slot:
        granted, wait_ms, remaining = self._acquire(
            keys=[self.keys.rate, self.keys.rate_pause],
            args=[self.max_calls, self.window_ms, member, self.hold_ms],
        )
        return Slot(
            bool(granted), max(int(wait_ms), 0) / 1000, int(remaining), member, time.monotonic()
        )
