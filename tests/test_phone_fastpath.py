"""The phone fast path (``appendq.phones``, issue #14) is phonenumbers' own answer, faster.

``normalise_phone_fast`` and ``appendq.leads.normalise_phone`` are compared, the result or the
exception's type and message, on over 1,000,000 inputs: every NANP area code 200-999 with every
exchange 000-999 (formats and regions varying), every country code phonenumbers knows with its
own example numbers and random national parts (E.164, IDD, national), random digit strings of 0-17
digits, punctuation, vanity letters, extensions, Unicode digits and spaces, and edge cases. The
bulk is a plain loop over seeded corpora (a failure repeats); hypothesis adds an adversarial tail.
Each corpus also checks that the fast path decides what it should (else it would be no fast path).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from unittest import mock

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appendq import phones
from appendq.leads import normalise_phone
from appendq.phones import normalise_phone_fast

Case = tuple[object, str]
REGIONS = ("US", "CA", "GB")
NANP_SLICES = (range(200, 400), range(400, 600), range(600, 800), range(800, 1000))
NANP_FORMATS = (
    "{a}{e}{n}",
    "({a}) {e}-{n}",
    "{a}-{e}-{n}",
    "{a}.{e}.{n}",
    "+1 {a} {e} {n}",
    "1-{a}-{e}-{n}",
    "+1{a}{e}{n}",
    "1 ({a}) {e}-{n}",
    "1{a}{e}{n}",
    "({a}){e}-{n}",
    "  {a} {e} {n} ",
    "+1 ({a}) {e}.{n}",
    "{a} {e}{n}",
    "1.{a}.{e}.{n}",
)
PUNCTUATION = " .-()/[]~*#,;+:_\t\u00a0\u00ad\u200b\u2060\u3000\uff08\uff09"
PUNCTUATION += "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff0d"  # dashes
EXTENSIONS: tuple[str, ...] = (
    " x123",
    "x123",
    " ext. 5",
    " ext 5",
    "ext.5",
    ";ext=12",
    " #12",
    "#",
    " extension 44",
)
EXTENSIONS += (",,12", ", 12", " X 9", " int 7", " - 503#", "~22", "/x12", " доб 3", " anexo 9")
ZEROS = (0x30, 0xFF10, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0x1040, 0x1D7CE, 0x1D7CE + 10)
SPACES = " \u00a0\u2003\u3000\u2009\u202f\t\n\r\x0b\x0c\u2028\x85"
PAIRS = sum(len(regions) for regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.values())
SIZES = {"nanp": 200_000 * len(NANP_SLICES), "country": PAIRS * 500, "digits": 40_000}
SIZES |= {"punct": 30_000, "vanity": 10_000, "ext": 10_000, "unicode": 15_000}


@dataclass
class Tally:
    compared: int = 0
    decided: int = 0
    mismatches: list[tuple[object, str, object, object]] = field(default_factory=list)


def _outcome(fn: Callable[[object, str], str], value: object, region: str) -> object:
    try:
        return fn(value, region)
    except Exception as exc:  # compared by type and message
        return (type(exc), str(exc))


def compare(cases: Iterable[Case]) -> Tally:
    """Both functions on every case, and how many the fast path decided; the first mismatches.

    The drop-in's fallback is watched: it must be called with the case's own value and region,
    and it answers what ``normalise_phone`` answered for them a moment before (one full parse a
    case, not two); the cases it is not called for are those the fast path decided."""
    tally = Tally()
    current: list[object] = []
    fallbacks = 0

    def fallback(value: object, region: str = "US") -> str:
        nonlocal fallbacks
        fallbacks += 1
        assert value is current[0] and region == current[1]
        answer = current[2]
        if isinstance(answer, tuple):
            raise answer[0](answer[1])
        assert isinstance(answer, str)
        return answer

    with mock.patch.object(phones, "normalise_phone", fallback):
        for value, region in cases:
            expected = _outcome(normalise_phone, value, region)
            current[:] = [value, region, expected]
            got = _outcome(normalise_phone_fast, value, region)
            tally.compared += 1
            if got != expected and len(tally.mismatches) < 20:
                tally.mismatches.append((value, region, expected, got))
    tally.decided = tally.compared - fallbacks
    assert not tally.mismatches, tally.mismatches
    return tally


def nanp(areas: range, seed: int) -> Iterator[Case]:
    """Every exchange 000-999 of every area code in ``areas``, a random line number, the format
    and region varying; one in 40 given as an int, as a JSON number would be."""
    rng = random.Random(seed)
    for a in areas:
        for e in range(1000):
            n = f"{rng.randrange(10_000):04d}"
            region = rng.choice(("US", "US", "US", "US", "CA", "GB"))
            if rng.randrange(40) == 0:
                yield int(f"{a}{e:03d}{n}"), region
                continue
            shape = NANP_FORMATS[(a * 1000 + e) % len(NANP_FORMATS)]
            yield shape.format(a=a, e=f"{e:03d}", n=n), region


def _examples(region: str, code: int) -> list[str]:
    """The national significant numbers of phonenumbers' example numbers for a region."""
    if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        numbers = [phonenumbers.example_number_for_non_geo_entity(code)]
    else:
        numbers = [
            phonenumbers.example_number_for_type(region, getattr(phonenumbers.PhoneNumberType, t))
            for t in ("FIXED_LINE", "MOBILE", "TOLL_FREE", "PREMIUM_RATE", "VOIP", "UAN")
        ]
    found = [phonenumbers.national_significant_number(n) for n in numbers if n is not None]
    return found or ["12345678"]


def _national_part(rng: random.Random, seed: str) -> str:
    roll = rng.randrange(6)
    if roll == 0:
        return seed
    if roll == 1:  # the example with a digit more or less
        return seed + str(rng.randrange(10)) if rng.randrange(2) else seed[:-1]
    if roll == 2:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15)))
    keep = max(len(seed) - rng.randint(1, 5), 0)  # the example's leading digits, random tail
    return seed[:keep] + "".join(rng.choice("0123456789") for _ in range(len(seed) - keep))


def _written(rng: random.Random, code: int, nsn: str, region: str) -> Case:
    """One way of writing the number and the region it is parsed in."""
    roll = rng.randrange(7)
    home = region if region in phonenumbers.SUPPORTED_REGIONS else rng.choice(REGIONS)
    if roll == 0:
        return f"+{code}{nsn}", rng.choice(REGIONS)
    if roll == 1:
        return f"+{code} {nsn[:3]} {nsn[3:]}", rng.choice((*REGIONS, home))
    if roll == 2:
        return f"011{code}{nsn}", rng.choice(("US", "CA"))
    if roll == 3:
        return f"00 {code} {nsn}", rng.choice(("GB", home))
    if roll == 4:
        return f"0{nsn}", home
    if roll == 5:
        return f"{code}{nsn}", home
    return nsn, home


def every_country_code(per_region: int, seed: int) -> Iterator[Case]:
    """Every country code phonenumbers knows, for every region sharing it: example numbers and
    random national parts, written as E.164, with an IDD, nationally, in several regions."""
    rng = random.Random(seed)
    for code, regions in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()):
        for region in regions:
            seeds = _examples(region, code)
            for i in range(per_region):
                nsn = _national_part(rng, seeds[i % len(seeds)])
                yield _written(rng, code, nsn, region)


def random_digits(count: int, seed: int) -> Iterator[Case]:
    """Digit strings of 0-17 digits, a quarter with a leading +."""
    rng = random.Random(seed)
    for _ in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 17)))
        yield ("+" + digits if rng.randrange(4) == 0 else digits), rng.choice(REGIONS)


def _nanp_number(rng: random.Random) -> str:
    return f"{rng.randint(200, 999)}{rng.randint(200, 999)}{rng.randrange(10_000):04d}"


def punctuated(count: int, seed: int) -> Iterator[Case]:
    """NANP and E.164 numbers with 1-4 characters of punctuation (ASCII and not) anywhere."""
    rng = random.Random(seed)
    for _ in range(count):
        chars = list(rng.choice(("", "1", "+1", "+44", "+")) + _nanp_number(rng))
        for _ in range(rng.randint(1, 4)):
            chars.insert(rng.randint(0, len(chars)), rng.choice(PUNCTUATION))
        yield "".join(chars), rng.choice(REGIONS)


def vanity(count: int, seed: int) -> Iterator[Case]:
    """Numbers with 1-7 of their digits written as letters (1-800-FLOWERS)."""
    rng = random.Random(seed)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    for _ in range(count):
        chars = list(rng.choice(("1-800-", "+1 ", "", "1", "(888) ")) + _nanp_number(rng)[3:])
        for _ in range(rng.randint(1, 7)):
            at = rng.randrange(len(chars))
            chars[at] = rng.choice(letters)
        yield "".join(chars), rng.choice(REGIONS)


def extensions(count: int, seed: int) -> Iterator[Case]:
    rng = random.Random(seed)
    for _ in range(count):
        shape = rng.choice(NANP_FORMATS)
        number = _nanp_number(rng)
        text = shape.format(a=number[:3], e=number[3:6], n=number[6:]).strip()
        yield text + rng.choice(EXTENSIONS), rng.choice(REGIONS)


def unicode_digits(count: int, seed: int) -> Iterator[Case]:
    """Numbers with some digits from other scripts (fullwidth, Arabic-Indic, Devanagari, ...) and
    Unicode spaces around or inside."""
    rng = random.Random(seed)
    for _ in range(count):
        chars = list(rng.choice(("", "1", "+1", "+44 ")) + _nanp_number(rng))
        for at in rng.sample(range(len(chars)), rng.randint(0, 4)):
            if chars[at].isdigit():
                chars[at] = chr(rng.choice(ZEROS) + int(chars[at]))
        for _ in range(rng.randint(0, 2)):
            chars.insert(rng.randint(0, len(chars)), rng.choice(SPACES))
        yield "".join(chars), rng.choice(REGIONS)


EDGES: list[object] = [
    "",
    " ",
    "+",
    "++12125550101",
    "+ 1 212 555 0101",
    "(+1) 212 555 0101",
    "-2125550101",
    "+0 212 555 0101",
    "+999 555 0101",
    "+1",
    "+12",
    "+123",
    "12",
    "123",
    "011",
    "01144",
    "0114420794600180",
    "00",
    "0044 20 7946 0018",
    "1" * 32,
    "1" * 33,
    " " * 40 + "2125550101",
    "2" * 17,
    "2" * 18,
    "+" + "4" * 17,
    "+" + "4" * 18,
    "(((212)))555----0101",
    "212  555  0101",
    "2125550101.",
    "(212)",
    "1 (800) 555-0199",
    "+1 800 555 0199",
    "+1 900 555 0199",
    "+1 787 555 0100",
    "+1 242 555 0100",
    "0207 946 0018",
    "+44 (0) 20 7946 0018",
    "999",
    "112",
    "+800 1234 5678",
    "+870 7712 3456",
    "+882 1234 5678",
    "+979 1234 5678",
    "+39 06 1234 5678",
    "+54 9 11 1234 5678",
    "+52 1 55 1234 5678",
    "=1+1",
    "\uff12\uff11\uff12\uff15\uff15\uff15\uff10\uff11\uff10\uff11",
    None,
    12.5,
    True,
    2125550101,
    -2125550101,
    12125550101,
    0,
    b"2125550101",
    ["2125550101"],
]


@pytest.mark.parametrize("areas", NANP_SLICES, ids=lambda r: f"area{r.start}-{r.stop - 1}")
def test_every_nanp_area_and_exchange(areas: range) -> None:
    tally = compare(nanp(areas, seed=areas.start))
    assert tally.compared == len(areas) * 1000
    assert tally.decided > 0.95 * tally.compared  # one in 40 is an int: the full parse


def test_every_country_code() -> None:
    tally = compare(every_country_code(per_region=500, seed=14))
    assert tally.compared == SIZES["country"]
    assert tally.decided > 0.6 * tally.compared


@pytest.mark.parametrize(
    ("name", "corpus", "decided"),
    [
        ("digits", random_digits, 0.5),
        ("punct", punctuated, 0.03),
        ("vanity", vanity, 0.0),
        ("ext", extensions, 0.0),
        ("unicode", unicode_digits, 0.05),
    ],
)
def test_adversarial_corpora(
    name: str, corpus: Callable[[int, int], Iterator[Case]], decided: float
) -> None:
    tally = compare(corpus(SIZES[name], 14))
    assert tally.compared == SIZES[name]
    assert tally.decided >= decided * tally.compared


def test_edges_in_every_region() -> None:
    regions = [*sorted(phonenumbers.SUPPORTED_REGIONS), "us", "ZZ", "001", ""]
    tally = compare((value, region) for value in EDGES for region in regions)
    assert tally.compared == len(EDGES) * len(regions)


def test_the_corpora_hold_a_million_inputs() -> None:
    assert sum(SIZES.values()) >= 1_000_000


LETTERS = "xXeEtT#;=AZaz\uff10\u0661"  # extension labels, vanity letters, other digits
ALPHABET = st.sampled_from("0123456789" * 4 + "+ ().-" * 2 + PUNCTUATION + LETTERS)
FAST = settings(max_examples=1_000, deadline=None, database=None)


@FAST
@given(st.text(ALPHABET, max_size=36), st.sampled_from(REGIONS))
def test_adversarial_text(text: str, region: str) -> None:
    compare([(text, region)])


@FAST
@given(
    st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    st.text("0123456789", max_size=16),
    st.sampled_from(("+{c}{n}", "+{c} {n}", "011{c}{n}", "00{c}-{n}", "{c}{n}", "0{n}", "{n}")),
    st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)),
)
def test_any_country_code_in_any_region(code: int, nsn: str, shape: str, region: str) -> None:
    compare([(shape.format(c=code, n=nsn), region)])
