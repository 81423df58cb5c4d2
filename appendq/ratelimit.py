"""A sliding-log rate limiter for Append calls, on Redis's clock.

Every attempt takes a slot before it is made, failed ones too (LiveVox may have counted them). The
log is a sorted set scored by Redis ``TIME`` in milliseconds, so the workers' own clocks never
matter. The window counted is RATE_WINDOW_S + RATE_MARGIN_S, so jitter between our clock and
LiveVox's cannot squeeze a sixth call into LiveVox's minute. After a 429 the limiter refuses every
slot for a whole window.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis

from appendq.keys import Keys

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return {0, pause - now, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if ARGV[3] == '' then
  return {used < max and 1 or 0, 0, max - used}
end
if used < max then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return {1, 0, max - used - 1}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now, 0}
"""

_RESTAMP = """
local t = redis.call('TIME')
return redis.call('ZADD', KEYS[1], 'XX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000),
                  ARGV[1])
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


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        max_calls: int,
        window_s: float,
        margin_s: float = 0.0,
    ) -> None:
        self.keys = keys
        self.max_calls = max_calls
        self.window_ms = int((window_s + margin_s) * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._pause = client.register_script(_PAUSE)
        self._restamp = client.register_script(_RESTAMP)

    def acquire(self) -> Slot:
        """Take a slot for one Append call, or say how long to wait."""
        return self._run(uuid.uuid4().hex)

    def restamp(self, slot: Slot) -> None:
        """After the call: move the slot's entry to now (Redis's clock), so the window counts
        from the latest moment LiveVox can have counted the call, however long the PUT took."""
        if slot.granted and slot.member:
            self._restamp(keys=[self.keys.rate], args=[slot.member])

    def budget(self) -> Slot:
        """Look without taking: ``remaining`` is the number of calls allowed right now."""
        return self._run("")

    def pause(self) -> None:
        """After a 429: refuse every slot for a whole window."""
        self._pause(keys=[self.keys.rate_pause], args=[self.window_ms])

    def _run(self, member: str) -> Slot:
        granted, wait_ms, remaining = self._acquire(
            keys=[self.keys.rate, self.keys.rate_pause],
            args=[self.max_calls, self.window_ms, member],
        )
        return Slot(bool(granted), max(int(wait_ms), 0) / 1000, int(remaining), member)
