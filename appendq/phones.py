"""A validation fast path for ``appendq.leads.normalise_phone``: phonenumbers' own answer, faster.

``phonenumbers.parse`` + ``is_valid_number`` cost ~20 us a number, most of it in machinery a
plainly written number never needs (RFC 3966, extensions, vanity letters, Unicode digits, the
``PhoneNumber`` object). For text made only of ASCII digits, the separators `` ().-`` and at most
one leading ``+`` (what people type around a NANP number, and E.164), ``fast_normalise`` replays
the library's own steps on the digits, with the library's own metadata compiled once per region:

- ``parse``: an international prefix (the region's IDD, such as 011) or ``+`` followed by a
  country code; the region's own country code written without ``+`` (``1 212 555 0101``); the
  national prefix (``national_prefix_for_parsing``), dropped only when the rest has a possible
  length; the leading zeros of the national number.
- ``is_valid_number``: the region of the number among those sharing its country code
  (``leading_digits`` first, else the number-type patterns, in the library's order), then the
  general description and any number type of that region, each with its possible lengths.

Everything else is ``UNDECIDED`` and goes to the full parse: other characters (letters,
extensions, Unicode digits or spaces, other punctuation), fewer than 3 digits, text longer than
``PHONE_MAX_LEN``, a region phonenumbers does not support, a ``+`` or IDD not followed by a known
country code and enough digits, a national prefix with a transform rule (Argentina, Mexico...)
that applies, a national number outside 2-17 digits. Each helper names the phonenumberutil
function it mirrors; ``tests/test_phone_fastpath.py`` compares both on over 1,000,000 inputs.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import Final

from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    REGION_CODE_FOR_NON_GEO_ENTITY,
    SUPPORTED_REGIONS,
    PhoneMetadata,
    PhoneNumberDesc,
)

from appendq.leads import PHONE_MAX_LEN, normalise_phone
from appendq.redact import mask_phone


class Undecided(enum.Enum):
    """The fast path's third answer: not a shape it decides; ask phonenumbers."""

    UNDECIDED = "undecided"


UNDECIDED: Final = Undecided.UNDECIDED

_SHAPE = re.compile(r"\+?[0-9 ().\-]*")
_DROP = str.maketrans("", "", "+ ().-")
_MIN_DIGITS = 3  # fewer: _is_viable_phone_number depends on the punctuation
_MIN_NSN, _MAX_NSN = 2, 17  # phonenumberutil._MIN_LENGTH_FOR_NSN, _MAX_LENGTH_FOR_NSN
_MAX_COUNTRY_CODE = 3  # phonenumberutil._MAX_LENGTH_COUNTRY_CODE
# _number_type_helper's order (any match makes a number valid); mobile is added when its pattern
# differs from fixed_line's (same_mobile_and_fixed_line_pattern), as the library checks it then.
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)
_NOT_KEPT = ("short", "local", "invalid")  # _test_number_length results parse does not strip to


@dataclass(frozen=True, slots=True)
class _Plan:
    """One region's (or non-geographic country code's) metadata, compiled for the fast path."""

    country_code: int | None
    own_code: str  # str(country_code), as _maybe_extract_country_code looks for it
    general: re.Pattern[str] | None  # general_desc's pattern (None: matches nothing)
    lengths: tuple[int, ...]  # general_desc.possible_length, as the library reads them
    local_lengths: tuple[int, ...]
    valid: dict[int, re.Pattern[str]]  # by length: general desc and any number type, one regex
    idd: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    transform: bool
    leading: re.Pattern[str] | None


def _pattern(desc: PhoneNumberDesc | None) -> re.Pattern[str] | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return re.compile(desc.national_number_pattern)


def _valid_table(md: PhoneMetadata) -> dict[int, re.Pattern[str]]:
    """_number_type_helper(nsn, md) != UNKNOWN as one regex per length: the general description
    (a lookahead) and any number type, each kept where its possible lengths allow the length."""
    general = md.general_desc
    if general is None or not general.national_number_pattern:
        return {}
    descs: list[PhoneNumberDesc | None] = [getattr(md, name) for name in _TYPES]
    if not md.same_mobile_and_fixed_line_pattern:
        descs.append(md.mobile)
    table = {}
    for length in range(_MIN_NSN, _MAX_NSN + 1):
        if general.possible_length and length not in general.possible_length:
            continue
        alternatives = [
            f"(?:{desc.national_number_pattern})"
            for desc in descs
            if desc is not None
            and desc.national_number_pattern
            and (not desc.possible_length or length in desc.possible_length)
        ]
        if alternatives:
            joined = "|".join(alternatives)
            table[length] = re.compile(rf"(?=(?:{general.national_number_pattern})\Z)(?:{joined})")
    return table


def _compile(md: PhoneMetadata | None) -> _Plan | None:
    if md is None:
        return None
    general = md.general_desc
    npp = md.national_prefix_for_parsing
    return _Plan(
        country_code=md.country_code,
        own_code=str(md.country_code),
        general=_pattern(general),
        lengths=tuple(general.possible_length) if general is not None else (),
        local_lengths=tuple(general.possible_length_local_only) if general is not None else (),
        valid=_valid_table(md),
        idd=None if md.international_prefix is None else re.compile(md.international_prefix),
        national_prefix=re.compile(npp) if npp else None,
        transform=bool(md.national_prefix_transform_rule),
        leading=None if md.leading_digits is None else re.compile(md.leading_digits),
    )


@functools.cache
def _region_plan(region: str) -> _Plan | None:
    """PhoneMetadata.metadata_for_region(region), compiled (regions from the library only)."""
    return _compile(PhoneMetadata.metadata_for_region(region, None))


@functools.cache
def _nongeo_plan(country_code: int) -> _Plan | None:
    return _compile(PhoneMetadata.metadata_for_nongeo_region(country_code, None))


def _plan_for(country_code: int, region: str) -> _Plan | None:
    """PhoneMetadata.metadata_for_region_or_calling_code, compiled."""
    if region == REGION_CODE_FOR_NON_GEO_ENTITY:
        return _nongeo_plan(country_code)
    return _region_plan(region)


def _is_valid(plan: _Plan, nsn: str) -> bool:
    """_number_type_helper(nsn, metadata) != PhoneNumberType.UNKNOWN."""
    pattern = plan.valid.get(len(nsn))
    return pattern is not None and pattern.fullmatch(nsn) is not None


def _general_matches(plan: _Plan, number: str) -> bool:
    """_match_national_number(number, metadata.general_desc, False)."""
    return plan.general is not None and plan.general.fullmatch(number) is not None


def _length_result(plan: _Plan, number: str) -> str | Undecided:
    """_test_number_length(number, metadata) for PhoneNumberType.UNKNOWN."""
    if not plan.lengths:
        return UNDECIDED  # the library would fail on possible_lengths[0]: not replayed
    size = len(number)
    if size in plan.local_lengths:
        return "local"
    if plan.lengths[0] == size:
        return "possible"
    if plan.lengths[0] > size:
        return "short"
    if plan.lengths[-1] < size:
        return "long"
    return "possible" if size in plan.lengths[1:] else "invalid"


def _strip_national_prefix(plan: _Plan, number: str) -> str | Undecided:
    """The number _maybe_strip_national_prefix_carrier_code returns (a transform: UNDECIDED)."""
    if not number or plan.national_prefix is None:
        return number
    found = plan.national_prefix.match(number)
    if found is None:
        return number
    if plan.transform:
        return UNDECIDED
    rest = number[found.end() :]
    if _general_matches(plan, number) and not _general_matches(plan, rest):
        return number
    return rest


def _extract_country_code(digits: str) -> tuple[int, str]:
    """_extract_country_code: (country code, rest), or (0, digits)."""
    if not digits or digits[0] == "0":
        return 0, digits
    for size in range(1, min(len(digits), _MAX_COUNTRY_CODE) + 1):
        code = int(digits[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            return code, digits[size:]
    return 0, digits


def _international(digits: str) -> tuple[int, str] | Undecided:
    """After ``+`` or an IDD: the country code and the rest (where parse raises: UNDECIDED)."""
    if len(digits) <= _MIN_NSN:
        return UNDECIDED  # TOO_SHORT_AFTER_IDD
    code, rest = _extract_country_code(digits)
    if code == 0:
        return UNDECIDED  # INVALID_COUNTRY_CODE (parse retries without the plus: not replayed)
    return code, rest


def _country_code_and_number(plus: bool, digits: str, plan: _Plan) -> tuple[int, str] | Undecided:
    """_maybe_extract_country_code: (country code, national number), or (0, digits) when the
    number carries no country code."""
    if plus:
        return _international(digits)
    if plan.idd is not None:
        idd = plan.idd.match(digits)
        if idd is not None and not digits[idd.end() :].startswith("0"):  # _parse_prefix_as_idd
            return _international(digits[idd.end() :])
    own = plan.own_code
    if digits.startswith(own):
        rest = _strip_national_prefix(plan, digits[len(own) :])
        length = _length_result(plan, digits)
        if isinstance(rest, Undecided) or isinstance(length, Undecided):
            return UNDECIDED
        if (not _general_matches(plan, digits) and _general_matches(plan, rest)) or (
            length == "long"
        ):
            assert plan.country_code is not None
            return plan.country_code, rest
    return 0, digits


@dataclass(frozen=True, slots=True)
class _Leading:
    """Consecutive regions of a country code that are told by their leading digits, as one
    regex (it matches where any of theirs does) and one by one, in the library's order."""

    any: re.Pattern[str]
    each: tuple[tuple[str, re.Pattern[str]], ...]


_Step = _Leading | tuple[str, _Plan]
_UNSAFE = re.compile(r"\\[1-9]|\(\?[^:]")  # a back-reference or inline flag: not joined


def _leading(run: list[tuple[str, re.Pattern[str]]]) -> _Leading:
    joined = "|".join(f"(?:{pattern.pattern})" for _, pattern in run)
    return _Leading(re.compile(joined) if len(run) > 1 else run[0][1], tuple(run))


@functools.cache
def _steps(country_code: int) -> tuple[_Step, ...]:
    """The regions _region_code_for_number_from_list tries, in order, with runs of regions told
    by leading digits joined (the numbers of none of them then cost one regex, not 23)."""
    steps: list[_Step] = []
    run: list[tuple[str, re.Pattern[str]]] = []
    for region in COUNTRY_CODE_TO_REGION_CODE[country_code]:
        plan = _region_plan(region)
        if plan is None:
            continue
        if plan.leading is not None and not _UNSAFE.search(plan.leading.pattern):
            run.append((region, plan.leading))
            continue
        if run:
            steps.append(_leading(run))
            run = []
        steps.append((region, plan) if plan.leading is None else _leading([(region, plan.leading)]))
    if run:
        steps.append(_leading(run))
    return tuple(steps)


def _region_from_list(country_code: int, nsn: str) -> tuple[str | None, _Plan | None]:
    """_region_code_for_number_from_list, and the region's compiled metadata when the number was
    found by its number-type patterns (it is then valid for the region, already checked)."""
    for step in _steps(country_code):
        if isinstance(step, _Leading):
            if step.any.match(nsn):
                return next(region for region, one in step.each if one.match(nsn)), None
        elif _is_valid(step[1], nsn):
            return step
    return None, None


def _valid_region(country_code: int, nsn: str) -> str | None:
    """region_code_for_number, when is_valid_number holds for the number; else None."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if regions is None:
        return None
    if len(regions) == 1:
        region: str | None = regions[0]
        checked = None
    else:
        region, checked = _region_from_list(country_code, nsn)
    if region is None:
        return None
    plan = checked or _plan_for(country_code, region)  # is_valid_number_for_region
    if plan is None:
        return None
    if region != REGION_CODE_FOR_NON_GEO_ENTITY and plan.country_code != country_code:
        return None
    return region if checked is not None or _is_valid(plan, nsn) else None


def _digits(text: str) -> tuple[bool, str] | None:
    """(leading plus, the digits) of text in the shapes decided here, else None."""
    if text.isdigit() and text.isascii():
        return False, text
    if _SHAPE.fullmatch(text) is None:
        return None
    return text.startswith("+"), text.translate(_DROP)


#: Regions where a plain 10-digit national number takes the short way below (the steps it skips
#: change nothing for it there: no IDD, own code or national prefix can start with 2-9).
_NANP_SHORT = frozenset({"US", "CA"})
_AREA_START = frozenset("23456789")


def _short_nanp(text: str, region: str) -> str | Undecided | None:
    """``fast_normalise`` of the most common lead of all ("2125550142" in the US), the short
    way; UNDECIDED for any other text or region."""
    if not (
        region in _NANP_SHORT
        and len(text) == 10
        and text[0] in _AREA_START
        and text.isascii()
        and text.isdigit()
    ):
        return UNDECIDED
    found = _valid_region(1, text)
    if found is None:
        return None
    return text if found == region else f"+1{text}"


def fast_normalise(text: str, region: str) -> str | Undecided | None:
    """What ``normalise_phone(text, region)`` answers for already stripped ``text``: the
    normalised number, None where it raises "is not a valid phone number", or UNDECIDED."""
    short = _short_nanp(text, region)
    if not isinstance(short, Undecided):
        return short
    shape = _digits(text) if len(text) <= PHONE_MAX_LEN else None
    if shape is None or len(shape[1]) < _MIN_DIGITS or region not in SUPPORTED_REGIONS:
        return UNDECIDED
    plan = _region_plan(region)
    if plan is None or plan.country_code is None:
        return UNDECIDED
    found = _country_code_and_number(*shape, plan)
    if isinstance(found, Undecided):
        return UNDECIDED
    code, number = found
    meta: _Plan | None = plan
    if code == 0:
        code = plan.country_code
    elif (home := COUNTRY_CODE_TO_REGION_CODE[code][0]) != region:
        meta = _plan_for(code, home)
    if meta is None or len(number) < _MIN_NSN:
        return UNDECIDED
    stripped = _strip_national_prefix(meta, number)
    if isinstance(stripped, Undecided) or not meta.lengths:  # _test_number_length would fail
        return UNDECIDED
    if stripped != number and _length_result(meta, stripped) not in _NOT_KEPT:
        number = stripped
    if not _MIN_NSN <= len(number) <= _MAX_NSN:
        return UNDECIDED
    found_region = _valid_region(code, number)  # the national number keeps its leading zeros
    if found_region is None:
        return None
    return str(int(number)) if found_region == region else f"+{code}{number}"


def normalise_phone_fast(value: object, region: str = "US") -> str:
    """``appendq.leads.normalise_phone``, same answers and same errors, the fast path first."""
    if isinstance(value, str):
        text = value.strip()
        answer = fast_normalise(text, region)
        if isinstance(answer, str):
            return answer
        if answer is None:
            raise ValueError(f"{mask_phone(text)!r} is not a valid phone number")
    return normalise_phone(value, region)
