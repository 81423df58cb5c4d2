"""The Redis FIFO of validated records, one list per target, and its atomic claim.

Records are appended with RPUSH and claimed from the head by a Lua script that moves up to N of
them into the target's in-flight list in one step. They leave Redis for good only when ``ack`` runs,
after the PostgreSQL transaction holding them has committed. A claim left behind by a crash is
handed out again, first, by the next ``claim`` of that target.

``push_deduped`` is ``push`` with the day's dedupe check in the same atomic step (see
``appendq.queue.dedupe``): a record whose key is already in the day's hash is queued marked
``duplicate_of`` the record that holds the key, so it reaches the audit but is never sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from appendq.keys import DEFAULT_ACCOUNT, Keys
from appendq.queue.item import QueuedRecord

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

# KEYS: dedupe hash, queue list, targets set. ARGV: hash TTL (s), target, then one triple per
# record: dedupe field ('' = never a duplicate), record id, record JSON (``QueuedRecord.dumps``,
# without "d"). The first record with a field wins it (HSETNX) and is queued as is; a later one is
# queued with "d" set to the winner's id, spliced in before the JSON's closing brace. A field
# already held by the record's own id means this call is a retry of one that was applied (the
# answer was lost): the record is queued already and is skipped, never made a duplicate of itself.
# Returns the duplicates as a flat list of (0-based position, id of the first record) pairs.
_PUSH_DEDUPED = """
local items, n, dups = {}, 0, {}
for i = 3, #ARGV, 3 do
  local field, id, item = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if field ~= '' and redis.call('HSETNX', KEYS[1], field, id) == 0 then
    local first = redis.call('HGET', KEYS[1], field)
    if first == id then
      item = false
    else
      item = string.sub(item, 1, -2) .. ',"d":"' .. first .. '"}'
      dups[#dups + 1] = (i - 3) / 3
      dups[#dups + 1] = first
    end
  end
  if item then
    n = n + 1
    items[n] = item
  end
end
for i = 1, n, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, n)))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return dups
"""

# KEYS: dedupe hashes, one per record. ARGV: per record, its field then its id. Deletes a field
# only while it still holds that record's id (a later record may hold it now). Returns how many.
_RELEASE = """
local n = 0
for i = 1, #KEYS do
  if redis.call('HGET', KEYS[i], ARGV[2 * i - 1]) == ARGV[2 * i] then
    n = n + redis.call('HDEL', KEYS[i], ARGV[2 * i - 1])
  end
end
return n
"""

# Records per RPUSH / per dedupe script call; Lua's unpack limit (~8,000) bounds the script's.
_PUSH_CHUNK = 5_000


def _dedupe_args(
    target: str, ttl_s: int, records: Sequence[QueuedRecord], keys: Sequence[str | None]
) -> list[str | int]:
    args: list[str | int] = [ttl_s, target]
    for rec, key in zip(records, keys, strict=True):
        args += (key or "", rec.id, rec.dumps())
    return args


def _duplicates_of(count: int, replies: Iterable[tuple[int, list[Any]]]) -> list[str | None]:
    """Per record, the id it duplicates (or None), from each chunk's (first index, script reply:
    flat pairs of position in the chunk and id of the first record)."""
    found: list[str | None] = [None] * count
    for start, reply in replies:
        for at in range(0, len(reply), 2):
            first = reply[at + 1]
            found[start + int(reply[at])] = first.decode() if isinstance(first, bytes) else first
    return found


@dataclass(frozen=True)
class Claim:
    #: The LiveVox account whose queue this is (``appendq.accounts``).
    account: str
    target: str
    records: list[QueuedRecord]
    raw_head: bytes | None  # the first item as stored: the claim's fence for ack
    recovered: bool  # handed out before and never acked (a crash happened in between)


class RecordQueue:
    def __init__(self, client: redis.Redis, keys: Keys, account: str = DEFAULT_ACCOUNT) -> None:
        """The queues of one LiveVox account: ``keys`` under its prefix
        (``appendq.accounts.Account.keys``)."""
        self.redis = client
        self.keys = keys
        self.account = account
        self._claim = client.register_script(_CLAIM)
        self._ack = client.register_script(_ACK)
        self._push_deduped = client.register_script(_PUSH_DEDUPED)
        self._release = client.register_script(_RELEASE)

    def push(self, target: str, records: Sequence[QueuedRecord]) -> int:
        """Append records at the tail of the target's FIFO; returns the new depth."""
        depth = 0
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self.keys.targets, target)
            for start in range(0, len(records), _PUSH_CHUNK):
                chunk = records[start : start + _PUSH_CHUNK]
                pipe.rpush(self.keys.queue(target), *(r.dumps() for r in chunk))
            pushes = len(pipe)
            self.with_push(pipe, target, records)
            results = pipe.execute()[:pushes]
        if len(results) > 1:
            depth = int(results[-1])
        return depth

    def push_deduped(
        self,
        target: str,
        day: str,
        records: Sequence[QueuedRecord],
        keys_for_records: Sequence[str | None],
        ttl_s: int,
    ) -> list[str | None]:
        """Append records at the tail of the target's FIFO, deduped against the day's hash.

        ``keys_for_records[i]`` is record i's dedupe key (``appendq.queue.dedupe.dedupe_key``);
        None means it is never a duplicate. Returns, per record, None when it was queued to be
        sent, or the id of the record it repeats (earlier today, or earlier in ``records``): it was
        queued marked ``duplicate_of`` that id. One Lua script per chunk of 5,000, all chunks in one
        MULTI/EXEC: atomic, so of two copies pushed at the same moment exactly one goes through.

        A retried call (redis-py repeats it after a connection error) queues no record twice as a
        record to send; a duplicate may be queued twice, and the drain keeps one (by record id).
        """
        if len(keys_for_records) != len(records):
            raise ValueError(f"{len(keys_for_records)} dedupe keys for {len(records)} records")
        if any(r.duplicate_of is not None for r in records):
            raise ValueError("push_deduped decides duplicate_of itself: pass fresh records")
        if not records:
            return []
        script_keys = [self.keys.dedupe(target, day), self.keys.queue(target), self.keys.targets]
        starts = range(0, len(records), _PUSH_CHUNK)
        with self.redis.pipeline(transaction=True) as pipe:
            for start in starts:
                end = start + _PUSH_CHUNK
                args = _dedupe_args(target, ttl_s, records[start:end], keys_for_records[start:end])
                self._push_deduped(keys=script_keys, args=args, client=pipe)
            self.with_push(pipe, target, records)
            replies = pipe.execute()[: len(starts)]
        return _duplicates_of(len(records), zip(starts, replies, strict=True))

    def with_push(
        self, pipe: redis.client.Pipeline, target: str, records: Sequence[QueuedRecord]
    ) -> None:
        """Commands for the same MULTI/EXEC as a push, queued after it: none here. The HTTP
        intake's queue (``appendq.http.intake_queue``) records its receipt there, atomically."""

    def release_reservations(self, reservations: Sequence[tuple[str, str, str, str]]) -> int:
        """Give back dedupe reservations of records that ended rejected: each is (target, day,
        field, record id); a field is deleted only while it still holds that record's id, so a
        corrected resubmission of the lead is accepted, never marked a duplicate of the rejected
        one. Returns how many were released."""
        released = 0
        for start in range(0, len(reservations), 1000):
            chunk = reservations[start : start + 1000]
            keys = [self.keys.dedupe(target, day) for target, day, _, _ in chunk]
            args = [v for _, _, field, rid in chunk for v in (field, rid)]
            released += int(self._release(keys=keys, args=args))
        return released

    def claim(self, target: str, limit: int) -> Claim:
        recovered, items = self._claim(
            keys=[self.keys.queue(target), self.keys.inflight(target)], args=[limit]
        )
        records = [QueuedRecord.loads(item) for item in items]
        return Claim(self.account, target, records, items[0] if items else None, bool(recovered))

    def ack(self, claim: Claim) -> bool:
        if claim.raw_head is None:
            return True
        return bool(self._ack(keys=[self.keys.inflight(claim.target)], args=[claim.raw_head]))

    def targets(self) -> list[str]:
        return sorted(
            t.decode() if isinstance(t, bytes) else t
            for t in self.redis.smembers(self.keys.targets)
        )

    def depth(self, target: str | None = None) -> int:
        """Records of ``target`` (None: of every target) waiting in Redis, queued or in flight."""
        targets = self.targets() if target is None else [target]
        if not targets:
            return 0
        with self.redis.pipeline(transaction=False) as pipe:
            for each in targets:
                pipe.llen(self.keys.queue(each))
                pipe.llen(self.keys.inflight(each))
            return sum(int(n) for n in pipe.execute())

    def oldest(self, target: str) -> QueuedRecord | None:
        """The record that will be claimed next (in-flight first), or None when empty."""
        head = self.redis.lindex(self.keys.inflight(target), 0)
        if head is None:
            head = self.redis.lindex(self.keys.queue(target), 0)
        return QueuedRecord.loads(head) if head is not None else None
