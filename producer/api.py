"""The producer: validate records at the door, give each good one a stable id, queue it in Redis.

``Producer.enqueue`` takes one submission and pushes its good records in one MULTI/EXEC, so a
submission is queued whole or not at all. ``Producer.enqueue_stream`` takes a
file-sized stream and pushes it chunk by chunk so memory stays flat; should Redis fail half way,
``EnqueueInterrupted`` says exactly which rows were queued. Bad records never block good ones: each
gets ``FieldError``s naming its index, file row and field.

Dedupe (``appendq.queue.dedupe``; APPENDQ_DEDUPE, phone1 by default): a good record whose phone1
(or account) was already accepted for the same target today, in APPENDQ_TIMEZONE, earlier in the
same submission included, is a duplicate. The choice made here: a duplicate is neither accepted nor
rejected. It gets a record id and is queued marked ``duplicate_of`` the first record, so the drain
writes it to the audit (status ``duplicate``) and never sends it; the receipt lists it under
``duplicates`` and does not count it in ``accepted``, which counts only records queued to be sent
(``record_ids`` are theirs). The check and the push are one atomic Redis step per chunk of 5,000
(``RecordQueue.push_deduped``): of two copies submitted at the same moment, exactly one is accepted.
Known limit: the first record blocks its phone (or account) for the rest of the day even if LiveVox
later rejects it; each duplicate names it, so the audit explains why the copy was not sent.

Bounds at the door, before any record is validated: the target's id must fit the BIGINT column
it is stored in (``Target``; ``InvalidValue`` naming service/campaign); one ``enqueue`` call holds
at most ``max_phones`` phone numbers (``PhoneBudgetExceeded``; the HTTP intake passes
APPENDQ_INTAKE_MAX_PHONES to ``connect``); and a new target is created only while fewer than
``max_targets`` exist (``TooManyTargets``; APPENDQ_MAX_TARGETS, ``appendq.queue.quota``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis

from appendq.accounts import load_accounts
from appendq.clock import utcnow
from appendq.errors import FieldError, ValidationBudgetExceeded
from appendq.queue.dedupe import TTL_S, Mode, check_mode, day_of, dedupe_key
from appendq.queue.item import QueuedRecord, new_record_ids
from appendq.queue.quota import TargetQuota
from appendq.queue.record_queue import RecordQueue
from appendq.records_fast import validate_record_fast as validate_record
from appendq.settings import Settings
from appendq.target import Target
from producer.door import check_phone_budget, parse_target
from producer.receipt import Duplicate, EnqueueInterrupted, Receipt

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 5_000

#: One input of ``enqueue_stream``: file row (or None) and the raw record or the error reading it.
StreamItem = tuple[int | None, Mapping[str, Any] | FieldError]
#: A stream item with its 0-based index among the records of the submission.
_Numbered = tuple[int, int | None, Mapping[str, Any] | FieldError]

#: The producer's time zone unless told otherwise (Settings.timezone's default).
DEFAULT_TZ = ZoneInfo(Settings.model_fields["timezone"].default)
#: Targets that may exist at once unless told otherwise (Settings.max_targets's default).
DEFAULT_MAX_TARGETS: int = Settings.model_fields["max_targets"].default


@dataclass(frozen=True)
class _Checked:
    """Result of validating some records: the queued form of the good ones with their (index,
    row), errors of the bad, and the dedupe day of the moment they were stamped."""

    records: list[QueuedRecord]
    places: list[tuple[int, int | None]]
    errors: list[FieldError]
    day: str


@dataclass(frozen=True)
class _Pushed:
    """What Redis did with a ``_Checked``: ids of the records to send, and the duplicates."""

    ids: list[str]
    duplicates: list[Duplicate]


class Producer:
    """Validates, dedupes (``dedupe``: phone1, account or off; per target and per day in ``tz``)
    and queues records into one LiveVox account's queues (``queue.account``). ``clock`` gives
    the current instant: it stamps records and picks the day. ``max_phones`` bounds the phone
    numbers of one ``enqueue`` call (None: no bound); ``max_targets`` the targets that may exist
    at once (per account).
    """

    def __init__(
        self,
        queue: RecordQueue,
        *,
        region: str = "US",
        dedupe: Mode = "phone1",
        tz: ZoneInfo = DEFAULT_TZ,
        clock: Callable[[], datetime] = utcnow,
        max_phones: int | None = None,
        max_targets: int = DEFAULT_MAX_TARGETS,
        budget_s: float | None = None,
    ) -> None:
        self.queue = queue
        self.region = region
        self.dedupe: Mode = check_mode(dedupe)
        self.tz = tz
        self.clock = clock
        self.max_phones = max_phones
        self.max_targets = max_targets
        #: The most seconds one ``enqueue`` may spend validating (None: no bound); past it the
        #: call raises ``ValidationBudgetExceeded`` before anything is queued.
        self.budget_s = budget_s
        self.quota = TargetQuota(queue.redis, queue.keys, max_targets)

    @property
    def account(self) -> str:
        """The LiveVox account whose queues this producer fills."""
        return self.queue.account

    def on_queue(self, queue: RecordQueue, tz: ZoneInfo) -> Producer:
        """The same producer (region, dedupe, bounds, clock) filling ``queue``, whose day is
        in ``tz``: another account's queue, or the HTTP intake's queue of one request."""
        return Producer(
            queue,
            region=self.region,
            dedupe=self.dedupe,
            tz=tz,
            clock=self.clock,
            max_phones=self.max_phones,
            max_targets=self.max_targets,
            budget_s=self.budget_s,
        )

    def close(self) -> None:
        """Close the Redis connections of the queue."""
        self.queue.redis.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(
        self,
        target: Target | str,
        records: Iterable[Mapping[str, Any]],
        *,
        rows: Sequence[int] | None = None,
        submitted_by: str | None = None,
    ) -> Receipt:
        """Validate ``records`` and queue the good ones, in order, in one Redis push, each
        marked ``submitted_by`` (the HTTP intake's token name: an intake token sees only its own
        records; None for the file import and programs that do not say).

        Raises before validating anything: ``InvalidValue`` for a bad target,
        ``PhoneBudgetExceeded`` past ``max_phones``, ``TooManyTargets`` for a new target past
        ``max_targets``."""
        where = str(parse_target(target))
        raws = list(records)
        if rows is not None and len(rows) != len(raws):
            raise ValueError(f"rows has {len(rows)} entries for {len(raws)} records")
        check_phone_budget(raws, self.max_phones)
        numbered = [(i, rows[i] if rows is not None else None, raw) for i, raw in enumerate(raws)]
        checked = self._check(numbered, submitted_by, budget=True)
        pushed = self._push(where, checked)
        receipt = Receipt(
            where, len(pushed.ids), pushed.ids, checked.errors, pushed.duplicates, self.account
        )
        _log_receipt(receipt)
        return receipt

    def enqueue_stream(
        self,
        target: Target | str,
        items: Iterable[StreamItem],
        *,
        chunk: int = DEFAULT_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> Receipt:
        """Validate and queue a large stream ``chunk`` records at a time, in order. A target
        that may not exist is refused (``TooManyTargets``) at the first push, before anything
        is queued; later chunks do not ask again.

        ``items`` are ``(row, record or error)`` pairs as ``producer.files.read_records`` yields
        them. ``progress`` gets the running number of items processed after each chunk.
        """
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        state = _StreamState(str(parse_target(target)), self.account)
        try:
            for batch in _numbered_chunks(items, chunk, state.errors):
                checked = self._check(batch)
                state.pushing = batch
                pushed = self._push(state.target, checked, admit=not state.admitted)
                state.admitted = state.admitted or bool(checked.records)
                state.confirm(checked, pushed)
                if progress is not None:
                    progress(state.done)
        except (redis.RedisError, OSError) as exc:
            raise state.interrupted(f"{type(exc).__name__}: {exc}") from exc
        except KeyboardInterrupt as exc:
            stopped = state.interrupted("interrupted")
            exc.add_note(str(stopped))
            exc.receipt = stopped.receipt  # type: ignore[attr-defined]  # the refused rows too
            raise
        receipt = state.receipt()
        _log_receipt(receipt)
        return receipt

    def _check(
        self, items: Sequence[_Numbered], submitted_by: str | None = None, *, budget: bool = False
    ) -> _Checked:
        payloads: list[dict[str, Any]] = []
        places: list[tuple[int, int | None]] = []
        errors: list[FieldError] = []
        deadline = _Deadline(self.budget_s if budget else None, len(items))
        for index, row, raw in items:
            deadline.check(index)
            if isinstance(raw, FieldError):
                errors.append(replace(raw, index=index, row=raw.row if row is None else row))
                continue
            payload, problems = validate_record(raw, index, region=self.region, row=row)
            if payload is None:
                errors.extend(problems)
            else:
                payloads.append(payload)
                places.append((index, row))
        now = self.clock()
        stamp = now.timestamp()
        ids = new_record_ids(len(payloads))
        records = [
            QueuedRecord(i, stamp, p, submitted_by=submitted_by)
            for i, p in zip(ids, payloads, strict=True)
        ]
        return _Checked(records, places, errors, day_of(now, self.tz))

    def _push(self, target: str, checked: _Checked, *, admit: bool = True) -> _Pushed:
        """Queue the good records (``admit``: after checking the target may exist)."""
        records = checked.records
        if not records:
            return _Pushed([], [])
        if admit:
            self.quota.admit(target)
        if self.dedupe == "off":
            self.queue.push(target, records)
            return _Pushed([r.id for r in records], [])
        keys = [dedupe_key(r.payload, self.dedupe) for r in records]
        firsts = self.queue.push_deduped(target, checked.day, records, keys, TTL_S)
        ids: list[str] = []
        duplicates: list[Duplicate] = []
        for rec, (index, row), first in zip(records, checked.places, firsts, strict=True):
            if first is None:
                ids.append(rec.id)
            else:
                duplicates.append(Duplicate(index, row, rec.id, first))
        log.debug(
            "pushed %d records to %s, %d of them duplicates",
            len(records),
            target,
            len(duplicates),
            extra={"target": target, "count": len(records), "duplicates": len(duplicates)},
        )
        return _Pushed(ids, duplicates)


class _StreamState:
    """What ``enqueue_stream`` has confirmed so far, to say where an interruption left things."""

    def __init__(self, target: str, account: str) -> None:
        self.target = target
        self.account = account
        self.ids: list[str] = []
        self.duplicates: list[Duplicate] = []
        self.errors: list[FieldError] = []
        self.done = 0
        self.last_row: int | None = None
        self.pushing: list[_Numbered] = []
        self.admitted = False  # the target quota let this target exist (asked once)

    def confirm(self, checked: _Checked, pushed: _Pushed) -> None:
        self.ids.extend(pushed.ids)
        self.duplicates.extend(pushed.duplicates)
        self.errors.extend(checked.errors)
        self.done += len(self.pushing)
        self.last_row = self.pushing[-1][1]
        self.pushing = []

    def receipt(self) -> Receipt:
        return Receipt(
            self.target, len(self.ids), self.ids, self.errors, self.duplicates, self.account
        )

    def interrupted(self, cause: str) -> EnqueueInterrupted:
        return EnqueueInterrupted(
            self.receipt(), cause, last_row=self.last_row, in_doubt=self.pushing
        )


def _numbered_chunks(
    items: Iterable[StreamItem], size: int, file_errors: list[FieldError]
) -> Iterator[list[_Numbered]]:
    """Give each record its 0-based index and cut the stream into lists of ``size`` records.

    Errors about the whole submission (index < 0) take no index: they go straight to
    ``file_errors``.
    """
    batch: list[_Numbered] = []
    index = 0
    for row, raw in items:
        if isinstance(raw, FieldError) and raw.index < 0:
            file_errors.append(raw)
            continue
        batch.append((index, row, raw))
        index += 1
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _log_receipt(receipt: Receipt) -> None:
    log.info(
        "queued %d records for %s (account %s), %d duplicates, %d rejected",
        receipt.accepted,
        receipt.target,
        receipt.account,
        len(receipt.duplicates),
        receipt.rejected,
        extra={
            "account": receipt.account,
            "target": receipt.target,
            "accepted": receipt.accepted,
            "duplicates": len(receipt.duplicates),
            "rejected": receipt.rejected,
        },
    )


class _Deadline:
    """``ValidationBudgetExceeded`` once validating has used more than ``budget_s`` of this
    thread's CPU (None: never): the work itself, whatever else loads the machine; the clock is
    read every ``_EVERY`` records, not for each."""

    _EVERY = 256

    def __init__(self, budget_s: float | None, total: int) -> None:
        self.budget_s = budget_s
        self.total = total
        self.start = time.thread_time()

    def check(self, index: int) -> None:
        if self.budget_s is None or index % self._EVERY:
            return
        if time.thread_time() - self.start > self.budget_s:
            raise ValidationBudgetExceeded(self.budget_s, index, self.total)


def connect(
    settings: Settings,
    *,
    account: str | None = None,
    max_phones: int | None = None,
    budget_s: float | None = None,
) -> Producer:
    """A Producer filling the queues of LiveVox ``account`` (None: ``default``; see
    ``appendq.accounts``), on the Redis and key prefix of ``settings``, its dedupe day in the
    account's time zone; close it when done. ``InvalidValue`` (field ``account``) for an account
    APPENDQ_ACCOUNTS_FILE does not name; ``ConfigError`` for a bad file. ``max_phones`` bounds
    one ``enqueue`` call and ``budget_s`` its validation time: the HTTP intake passes
    APPENDQ_INTAKE_MAX_PHONES and APPENDQ_INTAKE_VALIDATION_BUDGET_S (one request must never
    hold a worker for seconds); a program using the API decides its own batches."""
    chosen = load_accounts(settings).get_account(account)
    client = redis.Redis.from_url(settings.redis_url)
    queue = RecordQueue(client, chosen.keys(), chosen.name)
    return Producer(
        queue,
        region=settings.default_region,
        dedupe=settings.dedupe,
        tz=chosen.settings.tz,
        max_phones=max_phones,
        max_targets=settings.max_targets,
        budget_s=budget_s,
    )
