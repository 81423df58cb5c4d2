"""Keyset pages of an audit: a ``Cursor`` is where a page ended (the sort keys of its last
record, in the order that page was read), given back as ``after`` to read the next page. No
OFFSET anywhere: the next page starts from the index, however deep it is.

A cursor is opaque text to its users (URL-safe base64 of a small JSON array). It names its order:

- ``time``: enqueue time, then record id (most questions);
- ``position``: the claim position within one batch (a batch's records);
- ``batches``: batch creation time, batch id, then position (a campaign or status over many
  batches, without a time window);
- ``log``: the access log's time and id, newest first (``appendq.audit.access.read_log``).

A cursor that is not one, or that belongs to another order than the question can be read in,
is an ``InvalidValue`` naming ``after``.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appendq.errors import InvalidValue

#: Each order's keys, by type.
ORDERS: dict[str, tuple[type, ...]] = {
    "time": (datetime, uuid.UUID),
    "position": (int,),
    "batches": (datetime, int, int),
    "log": (datetime, int),
}
#: Longer than any cursor made here: refused before decoding.
MAX_TEXT = 200


@dataclass(frozen=True)
class Cursor:
    order: str
    keys: tuple[Any, ...]

    def encode(self) -> str:
        items = [self.order, *(_plain(k) for k in self.keys)]
        raw = json.dumps(items, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor ``text`` stands for; ``InvalidValue`` naming ``after`` if it is none."""
        bad = InvalidValue("after", "not a cursor from an earlier page of this audit")
        if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            items = json.loads(raw)
            order, values = items[0], items[1:]
            types = ORDERS[order]
            if len(values) != len(types):
                raise ValueError("wrong number of keys")
            return cls(order, tuple(_typed(v, t) for v, t in zip(values, types, strict=True)))
        except (binascii.Error, ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise bad from None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _typed(value: Any, kind: type) -> Any:
    if kind is datetime:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("a cursor's time has its zone")
        return moment
    if kind is uuid.UUID:
        return uuid.UUID(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError("not a key")
    return value
