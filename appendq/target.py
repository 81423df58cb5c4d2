"""Where records go (`Target`) and the ids that name LiveVox services, campaigns and batches."""

from __future__ import annotations

from dataclasses import dataclass

from appendq.errors import InvalidValue

#: The largest id any column holds (PostgreSQL BIGINT); LiveVox ids and batch ids are positive.
ID_MAX = 9_223_372_036_854_775_807
TARGET_KINDS = ("service", "campaign")


def check_id(value: object, field: str) -> int:
    """``value`` as an id stored in a BIGINT column: a whole number in 1..ID_MAX (LiveVox ids and
    batch ids are positive); InvalidValue naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(field, f"must be a whole number, not {type(value).__name__}")
    if not 1 <= value <= ID_MAX:
        shown = str(value) if -ID_MAX <= value <= ID_MAX * 10 else "a number that large"
        raise InvalidValue(field, f"{shown} is out of range: ids are 1..{ID_MAX}")
    return value


def parse_id(text: str, field: str) -> int:
    """A decimal id typed by a user (ASCII digits only), checked with ``check_id``."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidValue(field, f"{digits[:40]!r} is not an id (digits 0-9)")
    if len(digits.lstrip("0")) > len(str(ID_MAX)):
        raise InvalidValue(field, f"is out of range: ids are 1..{ID_MAX}")
    return check_id(int(digits), field)


@dataclass(frozen=True)
class Target:
    """Where records go: today's campaign of a LiveVox service, or a campaign pinned by an
    operator."""

    kind: str  # "service" | "campaign"
    id: int

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise InvalidValue("target", f"kind must be service or campaign, not {self.kind!r}")
        check_id(self.id, self.kind)

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Target:
        """``service:ID`` or ``campaign:ID``; InvalidValue (a ValueError) otherwise, naming
        ``target``, or ``service``/``campaign`` when the id is out of range."""
        kind, _, ident = text.partition(":")
        if kind not in TARGET_KINDS or not (ident.isascii() and ident.isdigit()):
            raise InvalidValue("target", f"must be service:ID or campaign:ID, not {text[:60]!r}")
        return cls(kind, parse_id(ident, kind))
