"""The Redis FIFO of validated records, one list per target, and its atomic claim.

Records are appended with RPUSH and claimed from the head by a Lua script that moves up to N of
them into the target's in-flight list in one step. They leave Redis for good only when ``ack`` runs,
after the PostgreSQL transaction holding them has committed. A claim left behind by a crash is
handed out again, first, by the next ``claim`` of that target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from appendq.keys import Keys
from appendq.records import QueuedRecord

_CLAIM = """
local existing = redis.call('LRANGE', KEYS[2], 0, -1)
if #existing > 0 then return {1, existing} end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return {0, items} end
redis.call('LTRIM', KEYS[1], #items, -1)
for i = 1, #items, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
end
return {0, items}
"""

# Delete the in-flight list only if it still holds this claim (its first item), so a late ack from
# a stalled drainer can never drop a newer claim.
_ACK = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_PUSH_CHUNK = 5_000


@dataclass(frozen=True)
class Claim:
    target: str
    records: list[QueuedRecord]
    raw_head: bytes | None  # the first item as stored: the claim's fence for ack
    recovered: bool  # handed out before and never acked (a crash happened in between)


class RecordQueue:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._claim = client.register_script(_CLAIM)
        self._ack = client.register_script(_ACK)

    def push(self, target: str, records: Sequence[QueuedRecord]) -> int:
        """Append records at the tail of the target's FIFO; returns the new depth."""
        depth = 0
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self.keys.targets, target)
            for start in range(0, len(records), _PUSH_CHUNK):
                chunk = records[start : start + _PUSH_CHUNK]
                pipe.rpush(self.keys.queue(target), *(r.dumps() for r in chunk))
            results = pipe.execute()
        if len(results) > 1:
            depth = int(results[-1])
        return depth

    def claim(self, target: str, limit: int) -> Claim:
        recovered, items = self._claim(
            keys=[self.keys.queue(target), self.keys.inflight(target)], args=[limit]
        )
        records = [QueuedRecord.loads(item) for item in items]
        return Claim(target, records, items[0] if items else None, bool(recovered))

    def ack(self, claim: Claim) -> bool:
        if claim.raw_head is None:
            return True
        return bool(self._ack(keys=[self.keys.inflight(claim.target)], args=[claim.raw_head]))

    def targets(self) -> list[str]:
        return sorted(
            t.decode() if isinstance(t, bytes) else t
            for t in self.redis.smembers(self.keys.targets)
        )

    def depth(self, target: str) -> int:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.keys.queue(target))
            pipe.llen(self.keys.inflight(target))
            pending, inflight = pipe.execute()
        return int(pending) + int(inflight)

    def oldest(self, target: str) -> QueuedRecord | None:
        """The record that will be claimed next (in-flight first), or None when empty."""
        head = self.redis.lindex(self.keys.inflight(target), 0)
        if head is None:
            head = self.redis.lindex(self.keys.queue(target), 0)
        return QueuedRecord.loads(head) if head is not None else None
