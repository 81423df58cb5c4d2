"""The producer: validate records at the door, give each good one a stable id, queue it in Redis.

``Producer.enqueue`` takes one submission and pushes its good records in one ``RecordQueue.push``
(one MULTI/EXEC), so a submission is queued whole or not at all. ``Producer.enqueue_stream`` takes a
file-sized stream and pushes it chunk by chunk so memory stays flat; should Redis fail half way,
``EnqueueInterrupted`` says exactly which rows were queued. Bad records never block good ones: each
gets ``FieldError``s naming its index, file row and field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

from appendq.errors import AppendqError, FieldError
from appendq.keys import Keys
from appendq.queue import RecordQueue
from appendq.records import QueuedRecord, Target, new_record_id, validate_record
from appendq.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 5_000

#: One input of ``enqueue_stream``: file row (or None) and the raw record or the error reading it.
StreamItem = tuple[int | None, Mapping[str, Any] | FieldError]
#: A stream item with its 0-based index among the records of the submission.
_Numbered = tuple[int, int | None, Mapping[str, Any] | FieldError]


@dataclass(frozen=True)
class Receipt:
    """What happened to one submission: ids of the queued records, errors of the refused ones.

    ``errors`` may also hold errors about the submission as a whole (``index`` -1, e.g. an unknown
    CSV column that was ignored); those refuse no record and are not counted in ``rejected``.
    """

    target: str
    accepted: int
    record_ids: list[str]
    errors: list[FieldError]

    @property
    def rejected(self) -> int:
        """Number of records refused (a record with three bad fields counts once)."""
        return len({error.index for error in self.errors if error.index >= 0})

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "record_ids": list(self.record_ids),
            "errors": [
                {"index": e.index, "row": e.row, "field": e.field, "message": e.message}
                for e in self.errors
            ],
        }


class EnqueueInterrupted(AppendqError):
    """``enqueue_stream`` stopped half way: Redis failed, or reading the input failed.

    ``receipt`` covers the chunks Redis confirmed (input through row ``last_row``). ``in_doubt``
    gives ``(index, row)`` of the first and last record of the chunk being pushed when Redis
    failed, if any: Redis may have applied it before the answer was lost, so it may or may not be
    queued. Nothing after it was queued.
    """

    def __init__(
        self,
        receipt: Receipt,
        cause: str,
        *,
        last_row: int | None = None,
        in_doubt: Sequence[_Numbered] = (),
    ) -> None:
        self.receipt = receipt
        self.cause = cause
        self.last_row = last_row
        self.in_doubt: tuple[tuple[int, int | None], tuple[int, int | None]] | None = None
        if in_doubt:
            self.in_doubt = (in_doubt[0][:2], in_doubt[-1][:2])
        super().__init__(self._explain())

    def _explain(self) -> str:
        done = f"{self.receipt.accepted} records queued for {self.receipt.target}"
        if self.last_row is not None:
            done += f" (input through row {self.last_row})"
        doubt = ""
        if self.in_doubt is not None:
            (first, first_row), (last, last_row) = self.in_doubt
            span = f"records {first}-{last}"
            if first_row is not None and last_row is not None:
                span = f"rows {first_row}-{last_row}"
            doubt = f"; {span} may or may not be queued"
        return f"stopped ({self.cause}): {done}{doubt}; nothing after that was queued"


def parse_target(value: Target | str | int) -> Target:
    """``service:ID`` / ``campaign:ID``; a plain number is a service id."""
    if isinstance(value, Target):
        return value
    text = str(value).strip()
    if text.isdigit():
        return Target("service", int(text))
    return Target.parse(text)


@dataclass(frozen=True)
class _Checked:
    """Result of validating some records: the queued form of the good ones, errors of the bad."""

    records: list[QueuedRecord]
    errors: list[FieldError]


class Producer:
    def __init__(self, queue: RecordQueue, *, region: str = "US") -> None:
        self.queue = queue
        self.region = region

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
    ) -> Receipt:
        """Validate ``records`` and queue the good ones, in order, in one Redis push."""
        where = str(parse_target(target))
        raws = list(records)
        if rows is not None and len(rows) != len(raws):
            raise ValueError(f"rows has {len(rows)} entries for {len(raws)} records")
        numbered = [(i, rows[i] if rows is not None else None, raw) for i, raw in enumerate(raws)]
        checked = self._check(numbered)
        self._push(where, checked.records)
        receipt = Receipt(
            where, len(checked.records), [r.id for r in checked.records], checked.errors
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
        """Validate and queue a large stream ``chunk`` records at a time, in order.

        ``items`` are ``(row, record or error)`` pairs as ``producer.files.read_records`` yields
        them. ``progress`` gets the running number of items processed after each chunk.
        """
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        state = _StreamState(str(parse_target(target)))
        try:
            for batch in _numbered_chunks(items, chunk, state.errors):
                checked = self._check(batch)
                state.pushing = batch
                self._push(state.target, checked.records)
                state.confirm(checked)
                if progress is not None:
                    progress(state.done)
        except (redis.RedisError, OSError) as exc:
            raise state.interrupted(f"{type(exc).__name__}: {exc}") from exc
        except KeyboardInterrupt as exc:
            exc.add_note(str(state.interrupted("interrupted")))
            raise
        receipt = state.receipt()
        _log_receipt(receipt)
        return receipt

    def _check(self, items: Iterable[_Numbered]) -> _Checked:
        payloads: list[dict[str, Any]] = []
        errors: list[FieldError] = []
        for index, row, raw in items:
            if isinstance(raw, FieldError):
                errors.append(replace(raw, index=index, row=raw.row if row is None else row))
                continue
            payload, problems = validate_record(raw, index, region=self.region, row=row)
            if payload is None:
                errors.extend(problems)
            else:
                payloads.append(payload)
        now = time.time()
        return _Checked([QueuedRecord(new_record_id(), now, p) for p in payloads], errors)

    def _push(self, target: str, records: list[QueuedRecord]) -> None:
        if records:
            depth = self.queue.push(target, records)
            log.debug(
                "pushed %d records to %s, depth %d",
                len(records),
                target,
                depth,
                extra={"target": target, "count": len(records), "depth": depth},
            )


class _StreamState:
    """What ``enqueue_stream`` has confirmed so far, to say where an interruption left things."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.ids: list[str] = []
        self.errors: list[FieldError] = []
        self.done = 0
        self.last_row: int | None = None
        self.pushing: list[_Numbered] = []

    def confirm(self, checked: _Checked) -> None:
        self.ids.extend(r.id for r in checked.records)
        self.errors.extend(checked.errors)
        self.done += len(self.pushing)
        self.last_row = self.pushing[-1][1]
        self.pushing = []

    def receipt(self) -> Receipt:
        return Receipt(self.target, len(self.ids), self.ids, self.errors)

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
        "queued %d records for %s, %d rejected",
        receipt.accepted,
        receipt.target,
        receipt.rejected,
        extra={
            "target": receipt.target,
            "accepted": receipt.accepted,
            "rejected": receipt.rejected,
        },
    )


def connect(settings: Settings) -> Producer:
    """A Producer on the Redis and key prefix of ``settings``; close it when done."""
    client = redis.Redis.from_url(settings.redis_url)
    queue = RecordQueue(client, Keys(settings.redis_prefix))
    return Producer(queue, region=settings.default_region)
