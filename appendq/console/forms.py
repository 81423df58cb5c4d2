"""The console's inputs, checked: query strings and urlencoded form bodies, as plain values.

Every bad value is an ``InvalidValue`` naming the field, which the page shows next to the form
(422); nothing unchecked reaches PostgreSQL. A form body is read with a size cap
(``appendq.http.validation.MAX_SMALL_BODY_BYTES``) and parsed by ``urllib.parse`` (a cap on the
number of fields too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import parse_qs

from appendq.accounts import check_name
from appendq.clock import in_zone
from appendq.db.models import BatchStatus
from appendq.errors import InvalidValue
from appendq.leads import check_text
from appendq.ops.retry import PreviewedState, check_reason
from appendq.target import ID_MAX, check_id
from producer.door import parse_target

#: The most batches one retry may pick by hand, or confirm at once.
MAX_PICKED = 500
#: The most fields a console form holds (a retry confirming MAX_PICKED batches, and a few more).
MAX_FIELDS = MAX_PICKED + 20

Form = Mapping[str, Sequence[str]]


def parse_form(body: bytes) -> dict[str, list[str]]:
    """An urlencoded body as field -> values; ``InvalidValue`` for one that is not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValue("form", "is not UTF-8 text") from None
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise InvalidValue("form", f"has more than {MAX_FIELDS} fields") from None


def one(form: Form, name: str) -> str | None:
    """The field's value, stripped; None when absent or blank."""
    values = form.get(name) or []
    value = values[0].strip() if values else ""
    return value or None


def statuses(form: Form) -> tuple[BatchStatus, ...]:
    out = []
    for value in form.get("status", []):
        if not value:
            continue
        try:
            out.append(BatchStatus(value))
        except ValueError:
            raise InvalidValue("status", f"{value[:30]!r} is not a batch status") from None
    return tuple(dict.fromkeys(out))


def account(form: Form) -> str | None:
    value = one(form, "account")
    return None if value is None else check_name(value)


def target(form: Form) -> str | None:
    value = one(form, "target")
    return None if value is None else str(parse_target(value))


def integer(form: Form, name: str) -> int | None:
    value = one(form, name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > ID_MAX:
        raise InvalidValue(name, f"{value[:30]!r} is not a number from 1 to {ID_MAX}")
    return check_id(int(value), name)


def moment(form: Form, name: str, tz: tzinfo) -> datetime | None:
    """A ``datetime-local`` input (YYYY-MM-DDTHH:MM), read in ``tz`` (APPENDQ_TIMEZONE)."""
    value = one(form, name)
    if value is None:
        return None
    try:
        return in_zone(datetime.fromisoformat(value), tz)
    except ValueError:
        raise InvalidValue(name, f"{value[:40]!r} is not a date and time") from None


def narrowing(form: Form, tz: tzinfo) -> dict[str, Any]:
    """The filters the batches list and a retry share: target, campaign, creation time."""
    return {
        "target": target(form),
        "campaign_id": integer(form, "campaign"),
        "since": moment(form, "since", tz),
        "until": moment(form, "until", tz),
    }


def text(form: Form, name: str, max_len: int = 200) -> str | None:
    return check_text(one(form, name), name, max_len=max_len)


def reason(form: Form) -> str:
    """The operator's reason: required, one line (``appendq.ops.retry.check_reason``)."""
    value = one(form, "reason")
    if value is None:
        raise InvalidValue("reason", "say why (it is recorded in the audit with your name)")
    return check_reason(value)


def picked(form: Form) -> tuple[int, ...]:
    """The batch ids picked (``batch`` fields), each checked, at most ``MAX_PICKED``."""
    ids = [v for v in form.get("batch", []) if v.strip()]
    if len(ids) > MAX_PICKED:
        raise InvalidValue("batch", f"pick at most {MAX_PICKED} batches, or retry by filter")
    return tuple(dict.fromkeys(integer({"batch": [v]}, "batch") or 0 for v in ids))


def shown(form: Form) -> tuple[int, ...]:
    """The batch ids a preview showed (its ``shown`` field: ids joined by commas), unchecked
    ones skipped: only used to show that preview again."""
    ids = (one(form, "shown") or "").split(",")[:MAX_PICKED]
    return tuple(int(i) for i in ids if i.isascii() and i.isdigit() and 0 < int(i) <= ID_MAX)


def position(form: Form, name: str) -> int | None:
    """A record's position in its batch (0 to 2**31 - 1, the column's range)."""
    value = one(form, name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) >= 2**31:
        raise InvalidValue(name, f"{value[:30]!r} is not a position in a batch")
    return int(value)


@dataclass(frozen=True)
class Expected:
    """A batch an operator confirmed, in the state the preview showed it."""

    id: int
    state: PreviewedState


def expected(form: Form, *, strict: bool = True) -> list[Expected]:
    """The ``expect`` fields (``id:status:version``) of a confirmed retry; not ``strict``: the
    good ones, whatever else is wrong."""
    out = []
    for value in form.get("expect", [])[: MAX_PICKED + 1]:
        parts = value.split(":")
        try:
            batch_id, status, version = int(parts[0]), BatchStatus(parts[1]), int(parts[2])
            check_id(batch_id, "expect")
        except (ValueError, IndexError):
            if not strict:
                continue
            raise InvalidValue("expect", f"{value[:40]!r} is not id:status:version") from None
        out.append(Expected(batch_id, PreviewedState(status, version)))
    if not strict:
        return out
    if not out:
        raise InvalidValue("expect", "tick at least one batch to retry")
    if len(out) > MAX_PICKED:
        raise InvalidValue("expect", f"confirm at most {MAX_PICKED} batches at once")
    return out
