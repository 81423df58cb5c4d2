"""What the HTTP intake writes in the same atomic Redis step as the records it queues.

``IntakeQueue`` is the Producer's ``RecordQueue`` with one more command in the push's MULTI/EXEC
(``RecordQueue.with_push``), a Lua script run right after the push scripts that:

- marks the request's Idempotency-Key slot ``pushed``: the body's hash, the record ids and, per
  record, the id it duplicates ("" if none), read from the dedupe hash the push just wrote. The
  marker lands with the records or not at all, so a retry with the same key can never queue them
  again, whether the answer was lost after redis-py's retries or the intake died before storing
  the full receipt (``rebuild`` turns the marker back into that receipt);
- indexes every record id under the UTC day of its id (``Keys.intake_ids``: id -> target,
  ``account/target`` for an account other than ``default``; then " <first id>" (empty if
  none) " <token name>" for a duplicate or a record a named caller submitted), for three days,
  so ``GET /v1/leads/{id}`` can answer ``queued`` for a record still in Redis (``find_queued``)
  without scanning a queue, and only to the token that submitted it (or a reader of every
  record). Only records queued through the HTTP intake are indexed; the audit answers for every
  record once it is batched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis

from appendq.clock import utcnow
from appendq.errors import FieldError
from appendq.keys import DEFAULT_ACCOUNT, Keys
from appendq.queue.dedupe import Mode, day_of, dedupe_key
from appendq.queue.item import QueuedRecord, id_moment
from appendq.queue.record_queue import RecordQueue
from appendq.records_fast import validate_record_fast as validate_record
from appendq.runtime import Runtime
from producer.receipt import Duplicate, Receipt

#: How long a record id stays findable as ``queued`` (a record is normally batched in seconds).
ID_INDEX_TTL_S = 3 * 86_400
PUSHED = "pushed"

# KEYS: Idempotency-Key slot, id index, dedupe hash. ARGV: slot TTL (0: no slot), index TTL, the
# slot's JSON up to its "dup" list, target, submitter ('' = none), then one pair per record:
# dedupe field ('' = none), record id. Runs after the push scripts in one MULTI/EXEC: a field
# holding another record's id makes this record a duplicate of it (exactly what the push
# decided).
_MARK = """
local marks, entries = {}, {}
for i = 6, #ARGV, 2 do
  local field, id = ARGV[i], ARGV[i + 1]
  local first = ''
  if field ~= '' then
    first = redis.call('HGET', KEYS[3], field) or ''
    if first == id then first = '' end
  end
  marks[#marks + 1] = '"' .. first .. '"'
  entries[#entries + 1] = id
  if ARGV[5] ~= '' then
    entries[#entries + 1] = ARGV[4] .. ' ' .. first .. ' ' .. ARGV[5]
  elseif first == '' then
    entries[#entries + 1] = ARGV[4]
  else
    entries[#entries + 1] = ARGV[4] .. ' ' .. first
  end
end
for i = 1, #entries, 1000 do
  redis.call('HSET', KEYS[2], unpack(entries, i, math.min(i + 999, #entries)))
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
if tonumber(ARGV[1]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3] .. table.concat(marks, ',') .. ']}', 'EX', ARGV[1])
end
return #marks
"""


class IntakeQueue(RecordQueue):
    """A ``RecordQueue`` whose pushes also write the marker and the id index (module docstring).
    ``slot`` is the request's Idempotency-Key slot (None: no key), kept ``slot_ttl_s``."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        account: str,
        intake_keys: Keys,
        dedupe: Mode,
        tz: ZoneInfo,
        slot: str | None,
        body_hash: str,
        slot_ttl_s: int,
    ) -> None:
        super().__init__(client, keys, account)
        self.intake_keys = intake_keys
        self._mark = client.register_script(_MARK)
        self.dedupe: Mode = dedupe
        self.tz = tz
        self.slot = slot
        self.body_hash = body_hash
        self.slot_ttl_s = slot_ttl_s

    def with_push(
        self, pipe: redis.client.Pipeline, target: str, records: Sequence[QueuedRecord]
    ) -> None:
        if not records:
            return
        stamped = datetime.fromtimestamp(records[0].enqueued_at, UTC)
        hash_key = self.keys.dedupe(target, day_of(stamped, self.tz))
        day = (id_moment(records[0].id) or stamped).date().isoformat()
        index_key = self.intake_keys.intake_ids(day)
        head = json.dumps(
            {
                "state": PUSHED,
                "body_sha256": self.body_hash,
                "account": self.account,
                "target": target,
                "ids": [r.id for r in records],
            }
        )
        args: list[str | int] = [
            self.slot_ttl_s if self.slot is not None else 0,
            ID_INDEX_TTL_S,
            head[:-1] + ',"dup":[',
            _indexed(self.account, target),
            records[0].submitted_by or "",
        ]
        for rec in records:
            args += (dedupe_key(rec.payload, self.dedupe) or "", rec.id)
        slot = self.slot if self.slot is not None else index_key
        self._mark(keys=[slot, index_key, hash_key], args=args, client=pipe)


def _indexed(account: str, target: str) -> str:
    """The id index's place of a record: its target, after ``account/`` unless it is the
    default account's (entries written before accounts existed have no account)."""
    return target if account == DEFAULT_ACCOUNT else f"{account}/{target}"


def rebuild(saved: dict[str, Any], records: list[Any], region: str) -> dict[str, Any]:
    """The receipt of a request whose push was applied but whose receipt was never stored, from
    its ``pushed`` marker and the same body: validation is deterministic, so the good records are
    the same ones, in the same order, as the ids in the marker."""
    ids: list[str] = saved["ids"]
    firsts: list[str] = saved["dup"]
    errors: list[FieldError] = []
    good: list[int] = []
    for index, raw in enumerate(records):
        payload, problems = validate_record(raw, index, region=region)
        if payload is None:
            errors.extend(problems)
        else:
            good.append(index)
    if len(good) != len(ids):  # the rules changed since: the ids are all that is certain
        good, errors = list(range(len(ids))), []
    accepted: list[str] = []
    duplicates: list[Duplicate] = []
    for index, record_id, first in zip(good, ids, firsts, strict=True):
        if first:
            duplicates.append(Duplicate(index, None, record_id, first))
        else:
            accepted.append(record_id)
    account = saved.get("account", DEFAULT_ACCOUNT)
    return Receipt(saved["target"], len(accepted), accepted, errors, duplicates, account).to_dict()


def find_queued(rt: Runtime, record_id: str) -> dict[str, Any] | None:
    """``queued`` with its LiveVox account (``livevox_account``, as the audit names it), target,
    age and the target's depth, for a record the HTTP intake queued and no drain has batched
    yet; None if it is not in the index."""
    queued_at = id_moment(record_id)
    if queued_at is None:
        return None
    day = queued_at.date()
    with rt.redis.pipeline(transaction=False) as pipe:
        for each in (day, day - timedelta(days=1)):
            pipe.hget(rt.keys.intake_ids(each.isoformat()), record_id)
        found = next((v for v in pipe.execute() if v is not None), None)
    if found is None:
        return None
    place, _, rest = found.decode().partition(" ")
    account, _, target = place.rpartition("/")
    account = account or DEFAULT_ACCOUNT
    first, _, who = rest.partition(" ")
    answer: dict[str, Any] = {
        "record_id": record_id,
        "status": "queued",
        "livevox_account": account,
        "target": target,
        "queued_at": queued_at.isoformat(),
        "age_s": round(max(0.0, (utcnow() - queued_at).total_seconds()), 3),
    }
    if account in rt.accounts:  # an account since removed from the file: no depth to show
        answer["target_depth"] = rt.lane(account).queue.depth(target)
    if first:
        answer["duplicate_of"] = first
    if who:
        answer["submitted_by"] = who
    return answer
