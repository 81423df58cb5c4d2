"""The door's checks of a whole submission, before any record is validated: the target (its id
within the BIGINT column it is stored in) and the phone budget (APPENDQ_INTAKE_MAX_PHONES)."""

from __future__ import annotations

from collections.abc import Sequence

from appendq.errors import InvalidValue, PhoneBudgetExceeded
from appendq.leads import count_phones
from appendq.target import Target, check_id, parse_id


def parse_target(value: Target | str | int) -> Target:
    """``service:ID`` / ``campaign:ID``; a plain number is a service id. Raises ``InvalidValue``
    (a ValueError) naming ``target``, or ``service``/``campaign`` for an id out of 1..2**63-1."""
    if isinstance(value, Target):
        return value
    if isinstance(value, bool):
        raise InvalidValue("target", f"must be service:ID or campaign:ID, not {value!r}")
    if isinstance(value, int):
        return Target("service", check_id(value, "service"))
    text = str(value).strip()
    if text.isascii() and text.isdigit():
        return Target("service", parse_id(text, "service"))
    return Target.parse(text)


def check_phone_budget(records: Sequence[object], limit: int | None) -> None:
    """Refuse a submission holding more than ``limit`` phone numbers, before validating any."""
    if limit is None:
        return
    phones = sum(count_phones(raw) for raw in records)
    if phones > limit:
        raise PhoneBudgetExceeded(phones, limit)
