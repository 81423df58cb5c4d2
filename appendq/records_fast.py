"""``validate_record``'s answer for the common record, in one pass and without an exception.

A record from a CRM or a lead vendor is almost always a JSON object (or CSV row) of LiveVox field
names with text values, a valid phone1 and a few more fields. For such a record ``fast_payload``
builds exactly the payload ``appendq.leads.validate_record`` builds (same keys, same order, same
values), reading each field once and running the same checks (``text_problem``,
``formula_problem``, the length limits, the ssn, decimal, dob and e-mail rules, the phone budget,
the phone numbers through ``appendq.phones``). Anything it does not decide for sure (a value that
is not text, an unknown field, any check that fails) answers ``None``: the caller then runs the
full pydantic model, which names every bad field in its own words. So a bad record costs what it
always did, and a good one a fraction of it; ``tests/test_records_fastpath.py`` compares the two
on generated and adversarial records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from appendq.errors import FieldError
from appendq.leads import (
    _DECIMAL,
    _DOB,
    DECIMAL_FIELDS,
    MAX_PHONES,
    LeadRecord,
    formula_problem,
    text_problem,
    validate_record,
)
from appendq.phones import normalise_phone_fast as normalise_phone

#: The record's fields in the model's order (``model_dump`` writes them so), with their limits.
_ORDER = tuple(LeadRecord.model_fields)
_POSITION = {name: i for i, name in enumerate(_ORDER)}
_LIMIT = {name: 150 if name == "extra20" else 50 for name in _ORDER}
_DECIMALS = frozenset(DECIMAL_FIELDS)


#: Text that ``text_problem`` and ``formula_problem`` both pass for sure: none of the forbidden
#: characters (``leads._FORBIDDEN``'s class), and not starting like a formula (``leads._FORMULA``
#: needs one of = + - @ after its leading blanks). Anything else is checked by those two.
_PLAIN = re.compile(
    r"(?!\s*[=+\-@])[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]*\Z"
)


def _text(value: object) -> str | bool | None:
    """A text value as the model's before-validator leaves it: stripped text, None for blank,
    False when the fast path cannot decide (not text, or a check fails)."""
    if type(value) is not str:
        return False
    plain = _PLAIN.match(value) is not None
    if not plain and (text_problem(value) is not None or formula_problem(value) is not None):
        return False
    stripped = value.strip()
    return stripped or None


def _field(name: str, value: object) -> str | bool | None:
    """One field other than the phones, checked as the model checks it; False: undecided."""
    text = _text(value)
    if not isinstance(text, str):
        return text
    if len(text) > _LIMIT[name]:
        return False
    if name == "ssn":
        digits = text.replace("-", "").replace(" ", "")
        return digits if digits.isascii() and digits.isdigit() and len(digits) <= 9 else False
    if name in _DECIMALS and not _DECIMAL.fullmatch(text):
        return False
    if name == "dob" and not _DOB.match(text):
        return False
    if name == "email" and "@" not in text:
        return False
    return text


def _phone2(value: object) -> list[str] | None:
    """phone2 as the model reads it (``_phone_list``: a ``;``-separated text, or a list of
    texts, each then checked by ``normalise_phone`` alone); None: undecided."""
    if value is None:
        return []
    if type(value) is str:
        return [p for p in (s.strip() for s in value.split(";")) if p]
    if type(value) is list and all(type(item) is str for item in value):
        return value
    return None


def fast_payload(raw: Mapping[str, Any], region: str) -> dict[str, Any] | None:
    """The LiveVox payload of ``raw`` exactly as ``validate_record`` makes it, or None when this
    path does not decide (then run the full validation)."""
    if type(raw) is not dict or "phone1" not in raw:
        return None
    fields: list[tuple[int, str, Any]] = []
    phone2: list[str] = []
    for name, value in raw.items():
        if name not in _POSITION:
            return None
        if name == "phone2":
            listed = _phone2(value)
            if listed is None:
                return None
            phone2 = listed
            continue
        checked = _field(name, value)
        if checked is False:
            return None
        if checked is not None:
            fields.append((_POSITION[name], name, checked))
    return _payload(fields, phone2, region)


def _payload(
    fields: list[tuple[int, str, Any]], phone2: list[str], region: str
) -> dict[str, Any] | None:
    """The payload in the model's field order, phones normalised; None if a phone is bad."""
    if 1 + len(phone2) > MAX_PHONES or not any(name == "phone1" for _, name, _ in fields):
        return None
    try:
        numbers = [normalise_phone(p, region) for p in phone2]
        fields = [(i, n, normalise_phone(v, region) if n == "phone1" else v) for i, n, v in fields]
    except ValueError:
        return None
    if numbers:
        fields.append((_POSITION["phone2"], "phone2", numbers))
    fields.sort(key=lambda f: f[0])
    return {name: value for _, name, value in fields}


def validate_record_fast(
    raw: Mapping[str, Any], index: int, *, region: str = "US", row: int | None = None
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """``appendq.leads.validate_record``, the same answer for every record: the fast path's
    payload when it decides, else the full validation's payload or errors."""
    payload = fast_payload(raw, region)
    if payload is not None:
        return payload, []
    return validate_record(raw, index, region=region, row=row)
