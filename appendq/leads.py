"""The LiveVox record and its validation at the door.

``validate_record`` turns raw mappings (a JSON object, a CSV row) into LiveVox payloads, one
``FieldError`` per bad field naming the record and the field; good records never wait for bad ones.

What a record may hold (README, "What a record may contain"): text fields are one line of
printable Unicode (``text_problem``: no C0/C1 control character, tab, line or paragraph separator,
bidirectional control or unpaired surrogate); numbers given as JSON numbers must be finite; phone
numbers are digits as a dialer dials them (no letters, no extension). Every id that ends up in a
BIGINT column (service, campaign, batch) is checked against its range (``appendq.target.check_id``),
so that no producer can queue what the drain cannot store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

import phonenumbers
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from appendq.errors import FieldError, InvalidValue
from appendq.redact import mask_phone

MAX_PHONES = 30  # phone1 counts: phone2 holds at most 29 (livevox-api.md)
PHONE_MAX_LEN = 32
_DOB = re.compile(r"^(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")
_FORMULA = re.compile(r"\s*(?:=|[+\-@].*?(?:[A-Za-z_][\w.]*\(|\|))", re.DOTALL)
_DECIMAL = re.compile(r"-?\d{1,15}(\.\d{1,6})?")
#: The amounts: plain decimal numbers.
DECIMAL_FIELDS = ("minimumPaymentAmount", "amountToSpeak", "totalAmount")


# C0 controls (tab, line feed and carriage return included), DEL, C1 controls (U+0080-U+009F,
# NEL included), line and paragraph separators, bidirectional embeddings/overrides/isolates (text
# that displays other than it reads), and unpaired surrogates (not valid Unicode; PostgreSQL
# refuses them).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_BREAKS = "\n\r\x0b\x0c\x85\u2028\u2029"
_LETTER = re.compile(r"[^\W\d_]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a one-line text value (naming the character), or None."""
    found = _FORBIDDEN.search(text)
    if found is None:
        return None
    char = found.group()
    code = f"U+{ord(char):04X}"
    if char == "\t":
        return f"contains a tab ({code}): LiveVox fields are one line of text"
    if char in _LINE_BREAKS:
        return f"contains a line break ({code}): LiveVox fields are one line of text"
    if "\ud800" <= char <= "\udfff":
        return f"contains an unpaired surrogate ({code}): not valid Unicode text"
    if char >= "\u202a":
        return f"contains a bidirectional control ({code}): text must display as it reads"
    return f"contains a control character ({code})"


def formula_problem(value: str) -> str | None:
    """Why ``value`` is refused as a spreadsheet formula, or None.

    The choice (every producer: API, file import, HTTP): a value that still holds a formula means
    a spreadsheet export wrote the formula instead of its value, or a web form was used to plant
    one; LiveVox would show agents ``=HYPERLINK(...)``,
    and its reports, opened in a spreadsheet, could run it. Altering the cell silently (a leading
    ``'``) would change what agents see, so the row is refused, by row and field, and the operator
    exports values. Phone numbers such as ``+1 (415) 555-0101`` are not formulas.
    """
    if not _FORMULA.match(value):
        return None
    first = value.lstrip()[0]
    return (
        f"starts with {first!r} like a spreadsheet formula: export values, not formulas (a "
        "formula would reach agents as text and could run when a report is opened in a spreadsheet)"
    )


def check_text(value: object, field: str, *, max_len: int, required: bool = False) -> str | None:
    """``value`` as one line of text of at most ``max_len`` characters (None stays None unless
    ``required``); InvalidValue naming ``field`` otherwise. For search terms and operator text."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidValue(field, "must be text")
    if required and not value.strip():
        raise InvalidValue(field, "must not be empty")
    if len(value) > max_len:
        raise InvalidValue(field, f"is {len(value):,} characters long: at most {max_len:,}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidValue(field, problem)
    return value


def normalise_phone(value: object, region: str = "US") -> str:
    """A valid phone number as LiveVox dials it: national digits for ``region``, else E.164."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be a phone number as text")
    text = value.strip()
    if not text:
        raise ValueError("is empty")
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    if len(text) > PHONE_MAX_LEN:
        raise ValueError(f"is longer than {PHONE_MAX_LEN} characters")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{mask_phone(text)!r} is not a phone number") from None
    if number.extension:
        raise ValueError(
            "has an extension: a dialer cannot dial one in an appended record; give the "
            "number alone"
        )
    if _LETTER.search(text):
        raise ValueError(
            "contains letters: a dialer needs digits (write a vanity number such as "
            "1-800-FLOWERS as 1-800-356-9377)"
        )
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{mask_phone(text)!r} is not a valid phone number")
    if phonenumbers.region_code_for_number(number) == region:
        return str(number.national_number)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _blank_to_none(value: object) -> object:
    if isinstance(value, str):
        problem = text_problem(value) or formula_problem(value)
        if problem is not None:
            raise ValueError(problem)
        value = value.strip()
        return value or None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("is not a finite number (Infinity, NaN or a number too large)")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _phone_list(value: object) -> object:
    if value is None:
        return []
    if isinstance(value, str):
        return [p for p in (s.strip() for s in value.split(";")) if p]
    return value


Text50 = Annotated[Annotated[str, Field(max_length=50)] | None, BeforeValidator(_blank_to_none)]
Text150 = Annotated[Annotated[str, Field(max_length=150)] | None, BeforeValidator(_blank_to_none)]


class LeadRecord(BaseModel):
    """One record of LiveVox's Append Campaign Record body, field names as LiveVox spells them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phone1: Annotated[str, BeforeValidator(_blank_to_none)]
    phone2: Annotated[list[str], BeforeValidator(_phone_list)] = Field(default_factory=list)
    account: Text50 = None
    firstName: Text50 = None
    lastName: Text50 = None
    email: Text50 = None
    dob: Text50 = None
    ssn: Text50 = None
    lastPaymentDate: Text50 = None
    minimumPaymentAmount: Text50 = None
    accountToSpeak: Text50 = None
    amountToSpeak: Text50 = None
    originalAccountNumber: Text50 = None
    language: Text50 = None
    totalAmount: Text50 = None
    extra1: Text50 = None
    extra2: Text50 = None
    extra3: Text50 = None
    extra4: Text50 = None
    extra5: Text50 = None
    extra6: Text50 = None
    extra7: Text50 = None
    extra8: Text50 = None
    extra9: Text50 = None
    extra11: Text50 = None
    extra12: Text50 = None
    extra13: Text50 = None
    extra14: Text50 = None
    extra15: Text50 = None
    extra16: Text50 = None
    extra19: Text50 = None
    extra20: Text150 = None

    @field_validator("ssn")
    @classmethod
    def _ssn_digits(cls, value: str | None) -> str | None:
        """Digits, dashes and spaces allowed; sent as its digits, at most 9 (the .NET client)."""
        if value is None:
            return None
        digits = value.replace("-", "").replace(" ", "")
        if not digits.isascii() or not digits.isdigit() or len(digits) > 9:
            raise ValueError("must be at most 9 digits (dashes and spaces allowed)")
        return digits

    @field_validator(*DECIMAL_FIELDS)
    @classmethod
    def _plain_decimal(cls, value: str | None) -> str | None:
        if value is not None and not _DECIMAL.fullmatch(value):
            raise ValueError("must be a plain decimal number, such as 1234.50 or -12.5")
        return value

    @model_validator(mode="after")
    def _checks(self) -> LeadRecord:
        if 1 + len(self.phone2) > MAX_PHONES:
            raise ValueError(
                f"phone2: {1 + len(self.phone2)} phone numbers, LiveVox takes at most {MAX_PHONES} "
                "per record (phone1 included)"
            )
        if self.dob is not None and not _DOB.match(self.dob):
            raise ValueError("dob: must be MMDD")
        if self.email is not None and "@" not in self.email:
            raise ValueError("email: is not an e-mail address")
        return self


LEAD_FIELDS = frozenset(LeadRecord.model_fields)
#: In LiveVox's field list but in neither public client: refused at the door, by name (README,
#: "Record fields LiveVox takes").
NOT_SENT_FIELDS = frozenset({"extra10", "extra17", "extra18"})


def count_phones(raw: object) -> int:
    """How many phone numbers a raw record holds, counted without validating anything (the
    per-submission phone budget is checked before any validation)."""
    if not isinstance(raw, Mapping):
        return 0
    phone2 = raw.get("phone2")
    if isinstance(phone2, str):
        return 1 + phone2.count(";") + 1
    if isinstance(phone2, list | tuple):
        return 1 + len(phone2)
    return 1


def validate_record(
    raw: Mapping[str, Any], index: int, *, region: str = "US", row: int | None = None
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Return (LiveVox payload, []) for a good record, (None, errors) for a bad one."""
    if not isinstance(raw, Mapping):
        return None, [FieldError(index, "record", "must be an object of LiveVox fields", row)]
    try:
        lead = LeadRecord.model_validate(raw)
    except ValidationError as exc:
        return None, [_field_error(e, index, row) for e in exc.errors()]
    errors: list[FieldError] = []
    phones: list[str] = []
    numbers = [("phone1", lead.phone1)] + [(f"phone2[{i}]", p) for i, p in enumerate(lead.phone2)]
    for name, value in numbers:
        try:
            phones.append(normalise_phone(value, region))
        except ValueError as exc:
            errors.append(FieldError(index, name, str(exc), row))
    if errors:
        return None, errors
    payload = lead.model_dump(exclude_none=True, exclude_defaults=True)
    payload["phone1"] = phones[0]
    if phones[1:]:
        payload["phone2"] = phones[1:]
    return payload, []


def _field_error(err: Any, index: int, row: int | None) -> FieldError:
    loc = [str(part) for part in err.get("loc", ())]
    message = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        message = "is not a LiveVox record field"
        if loc and loc[0] in NOT_SENT_FIELDS:
            message = (
                "is not among the fields LiveVox's clients send (it could be dropped without a "
                "word): move the value to another extraN"
            )
    elif err.get("type") == "missing" or (loc == ["phone1"] and err.get("input") is None):
        message = "is required"
    if not loc and ": " in message:  # our own model-level checks say "field: message"
        field, _, message = message.removeprefix("Value error, ").partition(": ")
        return FieldError(index, field, message, row)
    field = _shown_field(loc[0]) if loc else "record"
    if len(loc) > 1:
        field = f"{field}[{loc[1]}]"
    return FieldError(index, field, message.removeprefix("Value error, "), row)


def _shown_field(name: str) -> str:
    """A field name as an error may repeat it: an unknown one (the caller's text) is cut to 40
    characters and shown quoted when it holds anything but plain printable text."""
    if name in LEAD_FIELDS:
        return name
    if len(name) > 40 or text_problem(name) is not None:
        return repr(name[:40]) + ("..." if len(name) > 40 else "")
    return name
