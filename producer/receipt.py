"""What happened to one submission: the ``Receipt`` (records queued to be sent, ``Duplicate``s
queued for the audit only, errors of the refused), and ``EnqueueInterrupted`` when a stream
stopped half way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from appendq.errors import AppendqError, FieldError
from appendq.keys import DEFAULT_ACCOUNT


@dataclass(frozen=True)
class Duplicate:
    """A good record not sent because the same phone1 (or account) was accepted earlier today for
    the same target: record ``index`` (file ``row``) got ``record_id`` and repeats
    ``duplicate_of``."""

    index: int
    row: int | None
    record_id: str
    duplicate_of: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "row": self.row,
            "record_id": self.record_id,
            "duplicate_of": self.duplicate_of,
        }


@dataclass(frozen=True)
class Receipt:
    """What happened to one submission: ids of the records queued to be sent (``accepted`` of
    them), the duplicates (queued for the audit only, never sent), errors of the refused ones.

    ``errors`` may also hold errors about the submission as a whole (``index`` -1, e.g. an unknown
    CSV column that was ignored); those refuse no record and are not counted in ``rejected``.
    """

    target: str
    accepted: int
    record_ids: list[str]
    errors: list[FieldError]
    duplicates: list[Duplicate] = field(default_factory=list)
    #: The LiveVox account whose target this is (``appendq.accounts``).
    account: str = DEFAULT_ACCOUNT

    @property
    def rejected(self) -> int:
        """Number of records refused (a record with three bad fields counts once)."""
        return len({error.index for error in self.errors if error.index >= 0})

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "target": self.target,
            "accepted": self.accepted,
            "duplicate": len(self.duplicates),
            "rejected": self.rejected,
            "record_ids": list(self.record_ids),
            "duplicates": [d.to_dict() for d in self.duplicates],
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
        in_doubt: Sequence[tuple[int, int | None, object]] = (),
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
        if self.receipt.duplicates:
            done += f" (and {len(self.receipt.duplicates)} duplicates)"
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
