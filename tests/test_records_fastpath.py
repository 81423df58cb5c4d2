"""The record fast path (``appendq.records_fast``) gives ``appendq.leads.validate_record``'s own
answer (issue #14): on generated records, common and adversarial, whenever the fast path decides,
its payload is the full validation's, key order included; whenever the full validation finds an
error, the fast path does not decide. And it decides nearly every common record (else it would be
no fast path)."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from appendq.leads import LEAD_FIELDS, validate_record
from appendq.queue.item import id_moment, new_record_id, new_record_ids
from appendq.records_fast import fast_payload, validate_record_fast

FIELDS = sorted(LEAD_FIELDS - {"phone1", "phone2"})
#: Values that test each rule: blanks, padding, limits, formulas, controls, numbers, non-text.
AWKWARD: list[Any] = [
    "",
    " ",
    "  padded  ",
    "x" * 50,
    "x" * 51,
    "y" * 150,
    "y" * 151,
    "=SUM(A1)",
    "+cmd|x",
    "-2+3",
    "@SUM(1)",
    "a\tb",
    "line\nbreak",
    "\u202eevil",
    "\x85",
    "é" * 50,
    "0101",
    "1301",
    "1231",
    "123-45-6789",
    "12345678901",
    "12 34",
    "1234.50",
    "-12.5",
    "1e3",
    "12.1234567",
    "a@b",
    "no-at",
    12,
    12.5,
    float("nan"),
    True,
    None,
    [],
    {},
    ["x"],
    b"bytes",
]
PHONES: list[Any] = [
    "2125550142",
    "(212) 555-0142",
    "+1 212 555 0142",
    "1-212-555-0142",
    "212.555.0142",
    "212555014",
    "21255501422",
    "+44 20 7946 0958",
    "+33 1 42 68 53 00",
    "4165550199",
    "1-800-FLOWERS",
    "212-555-0142 x12",
    "0000000000",
    "",
    "  ",
    "+",
    "=1+1",
    2125550142,
    "\uff12\uff11\uff12\uff15\uff15\uff15\uff10\uff11\uff14\uff12",
    "212\t5550142",
    "+1 (787) 555-0100",
    "911",
    "+999 123",
]


def common(rng: random.Random, i: int) -> dict[str, Any]:
    """A record as a CRM sends it: a good phone in some format and a few plain fields."""
    number = f"{rng.choice([212, 415, 646, 312, 202])}{rng.randint(2, 9)}{rng.randint(0, 99):02d}"
    number += f"{rng.randint(0, 9999):04d}"
    shapes = [number, f"({number[:3]}) {number[3:6]}-{number[6:]}", f"+1{number}", f"1{number}"]
    record: dict[str, Any] = {"phone1": rng.choice(shapes), "account": f"A{i}"}
    if rng.random() < 0.5:
        record.update(firstName="Ada", lastName=f"Lovelace {i}", totalAmount="1234.50")
    if rng.random() < 0.2:
        record["phone2"] = [f"212555{rng.randint(0, 9999):04d}" for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.1:
        record.update(dob="0704", ssn="123-45-6789", email="ada@example.com", extra20="z" * 120)
    return record


def adversarial(rng: random.Random) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if rng.random() < 0.95:
        record["phone1"] = rng.choice(PHONES)
    for _ in range(rng.randint(0, 4)):
        record[rng.choice(FIELDS)] = rng.choice(AWKWARD)
    roll = rng.random()
    if roll < 0.2:
        record["phone2"] = rng.choice([f"{PHONES[0]};{rng.choice(PHONES)}", [rng.choice(PHONES)]])
    elif roll < 0.25:
        record["phone2"] = ["2125550142"] * rng.choice([29, 30])
    elif roll < 0.3:
        record[rng.choice(["extra10", "phone3", "PHONE1", ""])] = "x"
    return record


def same(raw: dict[str, Any], region: str = "US") -> bool:
    """The fast path decided like the full validation (or did not decide); True if it decided."""
    full, errors = validate_record(raw, 0, region=region)
    fast = fast_payload(raw, region)
    if fast is None:
        return False
    assert not errors, (raw, errors)
    assert full is not None and list(fast.items()) == list(full.items()), (raw, fast, full)
    return True


def test_common_records_take_the_fast_path_with_the_full_answer() -> None:
    rng = random.Random(14)
    decided = sum(same(common(rng, i)) for i in range(20_000))
    assert decided >= 19_000, f"the fast path decided only {decided} of 20,000 common records"


def test_adversarial_records_never_differ() -> None:
    rng = random.Random(1414)
    for region in ("US", "CA", "GB"):
        for _ in range(20_000):
            same(adversarial(rng), region)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*FIELDS, "phone1", "phone2", "bogus"]),
        st.one_of(st.text(max_size=60), st.integers(), st.none(), st.lists(st.text(max_size=20))),
        max_size=6,
    )
)
def test_any_record_never_differs(raw: dict[str, Any]) -> None:
    same(raw)


def test_the_wrapper_answers_as_validate_record_does_for_bad_records() -> None:
    bad = {"phone1": "12", "email": "no-at", "bogus": 1}
    assert validate_record_fast(bad, 3, row=7) == validate_record(bad, 3, row=7)
    good = {"phone1": "(212) 555-0142", "firstName": " Ada "}
    assert validate_record_fast(good, 0) == ({"phone1": "2125550142", "firstName": "Ada"}, [])


def test_ids_made_in_bulk_are_version_7_strictly_increasing_after_earlier_ones() -> None:
    first = new_record_id()
    bulk = new_record_ids(5_000)
    after = new_record_id()
    ids = [first, *bulk, after]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    for text in (bulk[0], bulk[-1]):
        value = uuid.UUID(text)
        assert (value.version, value.variant, str(value)) == (7, uuid.RFC_4122, text)
        moment = id_moment(text)
        assert moment is not None and abs(moment.timestamp() - time.time()) < 60
    assert new_record_ids(0) == []
