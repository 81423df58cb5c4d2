"""The HTTP intake's plain core: what the caller (``appendq.http.auth``) sent, whether the queue
can take it, and ``Intake.submit`` putting it there, each record marked with the caller's token
name (``submitted_by``). No FastAPI here: ``appendq.http.app`` builds the dependencies and calls
these; every answer that is not a success is raised as ``Refused``.

Idempotency (``Idempotency-Key``): per token (a hash of it) and key, one Redis string
(``Keys.idempotency``): ``pending:<nonce>`` while the first request runs (SET NX), then the
receipt and a hash of the body for a day. A concurrent request with the key gets 409; a later one
the first receipt with ``Idempotent-Replayed: true``; the key with another body gets 422.

The key's outcome is durable with the push: the push's own MULTI/EXEC turns the slot into a
``pushed`` marker (``appendq.http.intake_queue``), so the slot can never be released once the
records are in, and a retry after a lost answer or a dead intake gets the receipt rebuilt from the
marker instead of a second copy of the records. A failed request releases the slot only while it
still holds its own ``pending`` marker (nothing was pushed).

The body is parsed by ``appendq.http.validation`` (UTF-8 only, nesting depth, duplicate keys).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from appendq.accounts import Account, Accounts
from appendq.errors import InvalidValue
from appendq.faults import crashpoint
from appendq.http.auth import Caller
from appendq.http.intake_queue import PUSHED, IntakeQueue, rebuild
from appendq.http.refused import Refused
from appendq.http.validation import BodyError, ambiguous_keys, explain_ambiguous, loads
from appendq.keys import Keys
from appendq.queue.record_queue import RecordQueue
from appendq.settings import LIVEVOX_BATCH_LIMIT, Settings
from appendq.target import check_id
from producer.api import Producer

#: Named after the HTTP intake, not this module: the intake's log lines kept the logger name they
#: had before the plain core moved out of ``appendq.http.app`` (log filters select on it).
log = logging.getLogger("appendq.http")

MAX_RECORDS = LIVEVOX_BATCH_LIMIT
MAX_IDEMPOTENCY_KEY = 200
IDEMPOTENCY_TTL_S = 86_400
#: A ``pending`` marker outlives any request (10,000 records take well under a second) but not a
#: day: should the intake die mid-request, the client can retry with the same key after this.
PENDING_TTL_S = 600
PENDING = b"pending"  # then ":<nonce>" (a bare "pending" is from an older intake)
RETRY_AFTER_CAP_S = 300
_TARGET_KINDS = ("service", "campaign")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    account: str | None  # None: not given (the default account)
    target: str
    records: list[Any]


def parse_submission(raw: bytes, content_type: str | None = None) -> Submission:
    """``{"account": NAME, "service": ID | "campaign": ID, "records": [...]}`` (account
    optional) -> what was asked.

    The records themselves are validated one by one by the Producer; here only the shape, and the
    target's id against the BIGINT range it is stored in (422 naming the field).
    """
    try:
        body = loads(raw, content_type)
    except BodyError as exc:
        raise Refused(exc.status, exc.detail) from None
    if not isinstance(body, dict):
        raise Refused(422, 'body must be a JSON object: {"service": ID, "records": [...]}')
    twice = ambiguous_keys(body)
    if twice:
        raise Refused(
            422, f"{twice[0][:60]!r} is given more than once: ambiguous", field=twice[0][:60]
        )
    unknown = sorted(k[:60] for k in set(body) - {"account", "records", *_TARGET_KINDS})
    if unknown:
        raise Refused(
            422,
            f"unknown fields {unknown[:5]}: expected service or campaign, records, and "
            "optionally account",
        )
    account = body.get("account")
    if account is not None and not isinstance(account, str):
        raise Refused(422, "account must be an account name (a string)", field="account")
    target = _target(body)
    records = body.get("records")
    if not isinstance(records, list):
        raise Refused(422, "records must be a list of LiveVox records", field="records")
    if len(records) > MAX_RECORDS:
        raise Refused(
            422, f"{len(records):,} records: at most {MAX_RECORDS:,} per request, split it"
        )
    return Submission(account, target, records)


def _target(body: dict[str, Any]) -> str:
    """``service:ID`` or ``campaign:ID`` from the body (exactly one of them)."""
    kinds = [k for k in _TARGET_KINDS if k in body]
    if len(kinds) != 1:
        raise Refused(422, "give exactly one of service and campaign")
    ident = body[kinds[0]]
    if isinstance(ident, bool) or not isinstance(ident, int) or ident <= 0:
        raise Refused(422, f"{kinds[0]} must be a positive integer", field=kinds[0])
    try:
        check_id(ident, kinds[0])
    except InvalidValue as exc:
        raise Refused(422, str(exc), field=exc.field) from None
    return f"{kinds[0]}:{ident}"


# Delete the slot only while it holds this request's own pending marker: never a receipt, never
# the ``pushed`` marker that the push wrote (the records are in), never another request's marker.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Idempotency:
    """The ``Idempotency-Key`` store (see the module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def slot(self, caller: Caller, key: str) -> str:
        if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
            raise Refused(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        digest = hashlib.sha256(key.encode(errors="surrogateescape")).hexdigest()[:32]
        return self.keys.idempotency(f"{caller.scope[:16]}:{digest}")

    def begin(self, slot: str, body_hash: str) -> tuple[bytes, dict[str, Any] | None]:
        """Take the key: (its pending marker, None); or (b"", what the first request stored:
        its receipt, or its ``pushed`` marker)."""
        marker = PENDING + b":" + os.urandom(8).hex().encode()
        for _ in range(3):  # the key may expire or be released between SET NX and GET
            if self.redis.set(slot, marker, nx=True, ex=PENDING_TTL_S):
                return marker, None
            stored = self.redis.get(slot)
            if isinstance(stored, bytes) and stored.startswith(PENDING):
                raise Refused(
                    409, "a request with this Idempotency-Key is in progress", {"Retry-After": "1"}
                )
            if stored is not None:
                saved: dict[str, Any] = json.loads(stored)
                if saved["body_sha256"] != body_hash:
                    raise Refused(422, "this Idempotency-Key was used with a different body")
                return b"", saved
        raise Refused(409, "a request with this Idempotency-Key is in progress")

    def finish(self, slot: str, body_hash: str, receipt: dict[str, Any]) -> None:
        saved = json.dumps({"body_sha256": body_hash, "receipt": receipt})
        self.redis.set(slot, saved, ex=IDEMPOTENCY_TTL_S)

    def release(self, slot: str, marker: bytes) -> None:
        self.redis.eval(_RELEASE, 1, slot, marker)


def retry_after_s(settings: Settings, depth: int) -> int:
    """Seconds until enough drain ticks (one batch each) bring the backlog under the limit."""
    excess = depth - settings.intake_max_depth
    ticks = max(1, math.ceil(excess / settings.batch_max))
    return min(RETRY_AFTER_CAP_S, math.ceil(settings.drain_interval_s * ticks))


@dataclass
class Intake:
    """``POST /v1/leads`` as a plain function of its dependencies."""

    settings: Settings
    producer: Producer
    redis: redis.Redis
    keys: Keys
    accounts: Accounts

    def submit(
        self,
        caller: Caller,
        raw: bytes,
        idempotency_key: str | None,
        content_type: str | None = None,
    ) -> Reply:
        started = time.perf_counter()
        asked = parse_submission(raw, content_type)
        records = asked.records
        try:
            account = self.accounts.get_account(asked.account)
        except InvalidValue as exc:
            raise Refused(422, str(exc), field="account") from None
        caller.require_account(account.name)
        body_hash = hashlib.sha256(raw).hexdigest()
        idem = Idempotency(self.redis, self.keys)
        slot = idem.slot(caller, idempotency_key) if idempotency_key is not None else None
        marker = b""
        if slot is not None:
            marker, saved = idem.begin(slot, body_hash)
            if saved is not None:
                return Reply(202, self._replay(saved, records), {"Idempotent-Replayed": "true"})
        try:
            producer = self._producer(account, slot, body_hash)
            self._check_backlog(producer.queue)
            receipt = producer.enqueue(asked.target, records, submitted_by=caller.name).to_dict()
        except BaseException:
            if slot is not None:
                idem.release(slot, marker)
            raise
        crashpoint("intake_after_push")
        explain_ambiguous(records, receipt["errors"])
        if slot is not None:
            idem.finish(slot, body_hash, receipt)
        _log_submission(caller, receipt, time.perf_counter() - started)
        return Reply(202, receipt)

    def _producer(self, account: Account, slot: str | None, body_hash: str) -> Producer:
        """The Producer of ``account``, pushing through an ``IntakeQueue`` for this request
        (the account's queues; the receipt and the id index under the intake's own keys)."""
        queue = IntakeQueue(
            self.redis,
            account.keys(),
            account=account.name,
            intake_keys=self.keys,
            dedupe=self.settings.dedupe,
            tz=account.settings.tz,
            slot=slot,
            body_hash=body_hash,
            slot_ttl_s=IDEMPOTENCY_TTL_S,
        )
        return self.producer.on_queue(queue, account.settings.tz)

    def _replay(self, saved: dict[str, Any], records: list[Any]) -> dict[str, Any]:
        if saved.get("state") != PUSHED:
            receipt: dict[str, Any] = saved["receipt"]
            return receipt
        rebuilt = rebuild(saved, records, self.settings.default_region)
        explain_ambiguous(records, rebuilt["errors"])
        return rebuilt

    def _check_backlog(self, queue: RecordQueue) -> None:
        """Past APPENDQ_INTAKE_MAX_DEPTH records queued for the account, 503: one account's
        backlog never refuses another's leads."""
        depth = queue.depth()
        if depth > self.settings.intake_max_depth:
            wait = retry_after_s(self.settings, depth)
            raise Refused(
                503,
                f"{depth:,} records already queued for account {queue.account} (limit "
                f"{self.settings.intake_max_depth:,}): retry in {wait} s",
                {"Retry-After": str(wait)},
            )


def _log_submission(caller: Caller, receipt: dict[str, Any], elapsed_s: float) -> None:
    duplicates = receipt.get("duplicate", len(receipt.get("duplicates") or ()))
    log.info(
        "intake: %s accepted %d, rejected %d, duplicates %d in %.0f ms (%s)",
        receipt["target"],
        receipt["accepted"],
        receipt["rejected"],
        duplicates,
        elapsed_s * 1000,
        caller.actor,
        extra={
            "target": receipt["target"],
            "accepted": receipt["accepted"],
            "rejected": receipt["rejected"],
            "duplicates": duplicates,
            "elapsed_ms": round(elapsed_s * 1000, 1),
            "actor": caller.actor,
        },
    )
