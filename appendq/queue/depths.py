"""An account's queue depth over the last 24 hours, for the console's chart.

The tick task samples each account's depth (queued and in flight, every target) once per tick
(``sample``): one zset member ``minute:depth`` per minute, scored by the minute, the largest
depth seen in that minute kept; members older than ``KEEP_S`` are trimmed on the way. One small
Lua script, so two ticks in the same minute never keep the smaller sample; at most 1,500 members
(~40 KB) per account. ``series`` reads them back, oldest first.

A minute with no sample is a minute no tick ran (no worker): the chart shows a gap there, not a
zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from appendq.keys import Keys

#: How far back samples are kept (the chart shows 24 h; an hour more for the edge).
KEEP_S = 25 * 3600

# KEYS[1] the zset; ARGV: minute (epoch s), depth, oldest minute kept.
_SAMPLE = """
local minute, depth = tonumber(ARGV[1]), tonumber(ARGV[2])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], minute, minute)
for _, member in ipairs(old) do
  local seen = tonumber(string.match(member, ':(%d+)$'))
  if seen and seen >= depth then return 0 end
  redis.call('ZREM', KEYS[1], member)
end
redis.call('ZADD', KEYS[1], minute, minute .. ':' .. depth)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Sample:
    minute: int  # epoch seconds, a multiple of 60
    depth: int


def sample(client: redis.Redis, keys: Keys, depth: int, now: float) -> None:
    """Note ``depth`` as the depth at ``now`` (epoch s; the minute's largest is kept)."""
    minute = int(now // 60 * 60)
    args = [minute, max(int(depth), 0), minute - KEEP_S, KEEP_S]
    client.eval(_SAMPLE, 1, keys.depths, *args)


def series(client: redis.Redis, keys: Keys, since: float) -> list[Sample]:
    """The samples from ``since`` (epoch s) on, oldest first."""
    members = client.zrangebyscore(keys.depths, int(since), "+inf")
    found = []
    for member in members:
        text = member.decode() if isinstance(member, bytes) else str(member)
        minute, _, depth = text.partition(":")
        found.append(Sample(int(minute), int(depth)))
    return found
