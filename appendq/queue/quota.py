"""A bound on how many targets exist at once (APPENDQ_MAX_TARGETS), checked by producers before
they queue records for a target.

Each target costs the drain a campaign search every APPENDQ_CAMPAIGN_CACHE_S; an unbounded number
of targets is an unbounded number of LiveVox calls. A target "exists" while it is a member of
``{p}:targets`` (``appendq.keys``). ``admit`` adds it there in one Lua step with the check, so
two producers racing for the last place cannot both win it. When the set is full, members whose
queue and in-flight lists are both empty (idle: their records are all in PostgreSQL, where the
drain finds any open batch by itself) are dropped from it first, so yesterday's pinned campaigns
never block today's. A target admitted in the last ``FRESH_S`` seconds is never idle: its
producer is about to push (``{p}:admitted:{target}``, a string with that TTL, marks it).
"""

from __future__ import annotations

import redis

from appendq.errors import TooManyTargets
from appendq.keys import Keys

#: Seconds a just-admitted target counts as busy (its push follows within milliseconds).
FRESH_S = 60

# KEYS: the targets set. ARGV: target, bound, queue key prefix, in-flight key prefix, admitted
# key prefix, FRESH_S. Returns 1 when the target exists (already, or now), 0 when the set is
# full of busy targets. A member is idle when its queue and in-flight lists are empty and it was
# not admitted in the last FRESH_S seconds.
_ADMIT = """
local fresh = ARGV[5] .. ARGV[1]
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  redis.call('SET', fresh, 1, 'EX', ARGV[6])
  return 1
end
local bound = tonumber(ARGV[2])
if redis.call('SCARD', KEYS[1]) >= bound then
  for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if redis.call('LLEN', ARGV[3] .. t) == 0 and redis.call('LLEN', ARGV[4] .. t) == 0
        and redis.call('EXISTS', ARGV[5] .. t) == 0 then
      redis.call('SREM', KEYS[1], t)
    end
  end
  if redis.call('SCARD', KEYS[1]) >= bound then return 0 end
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', fresh, 1, 'EX', ARGV[6])
return 1
"""


class TargetQuota:
    """``admit(target)`` before queueing for it; raises ``TooManyTargets`` past ``bound``."""

    def __init__(self, client: redis.Redis, keys: Keys, bound: int, *, fresh_s: int = FRESH_S):
        if bound < 1 or fresh_s < 1:
            raise ValueError("the target bound and fresh_s must be at least 1")
        self.keys = keys
        self.bound = bound
        self.fresh_s = fresh_s
        self._admit = client.register_script(_ADMIT)

    def admit(self, target: str) -> None:
        """Let ``target`` exist, or raise ``TooManyTargets`` naming its kind as the field."""
        args: list[str | int] = [
            target,
            self.bound,
            self.keys.queue(""),
            self.keys.inflight(""),
            f"{self.keys.prefix}:admitted:",
            self.fresh_s,
        ]
        if int(self._admit(keys=[self.keys.targets], args=args)) == 1:
            return
        kind = target.partition(":")[0] or "target"
        raise TooManyTargets(
            kind,
            f"{target} would be a new target, and {self.bound:,} targets already have queued "
            "records (APPENDQ_MAX_TARGETS): use an existing one, or wait until some drain",
        )
