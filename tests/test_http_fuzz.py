"""Issue 7, "proof that stays": generated bodies against a real ``appendq serve`` process, with
real Redis and PostgreSQL.

``FUZZ_BODIES`` (10,000) bodies per run: 2,250 from Hypothesis (structured bodies of LiveVox
records with hostile values: huge and special numbers, control characters, unpaired surrogates,
duplicate keys, deep nesting, other encodings, wrong shapes; new ones each run), the rest from a
seeded generator, much faster, that writes bodies as text from hostile parts (NaN, 1e400, ids past
BIGINT, escapes, keys given twice) and mangles a third of them byte by byte (truncations, stray
brackets and quotes, random bytes). Per body:

- never a 5xx;
- no partial enqueue: the records waiting in Redis (every target) grow by exactly
  ``accepted + duplicate`` on a 202 and not at all on any other answer;
- every per-record error names its index (in range) and a field; every other refusal says why;
- a 202's target id fits the BIGINT column it will be stored in.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from appendq.keys import Keys
from appendq.leads import LEAD_FIELDS
from appendq.settings import Settings
from appendq.target import ID_MAX
from tests.conftest import phone
from tests.test_intake import serve_process

FUZZ_BODIES = 10_000
HYPOTHESIS_EXAMPLES = 150
BODIES_PER_EXAMPLE = 15  # 150 x 15 = 2,250 from Hypothesis; the seeded generator the rest
TOKEN = "fuzz-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Records waiting over every target (queued + in flight), in one round trip.
_DEPTH = """
local n = 0
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('LLEN', ARGV[1] .. t) + redis.call('LLEN', ARGV[2] .. t)
end
return n
"""


@dataclass
class Checker:
    """Posts one body and checks the three properties; counts what it saw."""

    client: httpx.Client
    redis: redis.Redis
    keys: Keys
    depth: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    bodies: int = 0

    def queued(self) -> int:
        prefix = self.keys.queue("")
        inflight = self.keys.inflight("")
        return int(self.redis.eval(_DEPTH, 1, self.keys.targets, prefix, inflight))

    def check(self, content: bytes, headers: dict[str, str] | None = None) -> None:
        reply = self.client.post("/v1/leads", content=content, headers={**AUTH, **(headers or {})})
        self.bodies += 1
        self.statuses[reply.status_code] = self.statuses.get(reply.status_code, 0) + 1
        after = self.queued()
        grew, self.depth = after - self.depth, after
        shown = content[:300]
        assert reply.status_code < 500, (reply.status_code, reply.text[:300], shown)
        answer = reply.json()
        if reply.status_code != 202:
            assert grew == 0, (reply.status_code, grew, shown)
            assert answer["detail"], shown
            return
        assert grew == answer["accepted"] + answer["duplicate"], (answer, grew, shown)
        assert len(answer["record_ids"]) == answer["accepted"]
        assert 1 <= int(answer["target"].partition(":")[2]) <= ID_MAX, (answer["target"], shown)
        records = json.loads(content.decode("utf-8-sig"))["records"]
        for error in answer["errors"]:
            assert 0 <= error["index"] < len(records), (error, shown)
            named = error["field"] or '""' in content.decode("utf-8-sig", errors="replace")
            assert isinstance(error["field"], str) and named, (error, shown)  # "" is a key too
            assert error["message"], (error, shown)


# ---- Hypothesis: structured bodies with hostile values ------------------------------------

PHONES = [phone(i) for i in range(40)] + [
    "(212) 200-0001",
    "+1 212 200 0002",
    "+44 20 7946 0958",
    "1-800-FLOWERS",
    "2122000003 x12",
    "",
    "  ",
    "0",
    "+",
    "1" * 40,
]
SPECIAL_TEXT = ["\x00", "\t", "\n", "\u2028", "\u0085", "\u202e", '=HYPERLINK("x")', "é" * 60]
FIELDS = [*sorted(LEAD_FIELDS), "colour", "", "phone3", "PHONE1", "__proto__"]
TARGETS: list[dict[str, Any]] = [
    {"service": 1001},
    {"service": 1001},
    {"service": 1002},
    {"campaign": 5001},
    {"service": 0},
    {"service": -5},
    {"service": ID_MAX + 1},
    {"campaign": 10**30},
    {"service": "1001"},
    {"service": 1001.0},
    {"service": True},
    {"service": None},
    {},
    {"service": 1001, "campaign": 5001},
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(SPECIAL_TEXT)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
phone_values = st.sampled_from(PHONES) | values
phone2_values = (
    st.lists(phone_values, max_size=31)
    | st.lists(st.sampled_from(PHONES), min_size=25, max_size=35)
    | st.text(max_size=40)
)


@st.composite
def records(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 19)) == 0:
        return draw(values)  # not an object at all
    record: dict[str, Any] = {}
    if draw(st.integers(0, 9)) > 0:
        record["phone1"] = draw(st.sampled_from(PHONES) if draw(st.booleans()) else phone_values)
    if draw(st.integers(0, 4)) == 0:
        record["phone2"] = draw(phone2_values)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        record[name] = draw(values | st.text(max_size=60))
    return record


# Text-level twists no Python object serialises to.
TWISTS = [
    lambda t: t,
    lambda t: t,
    lambda t: t,
    lambda t: t.replace('"phone1": ', '"phone1": "2122000009", "phone1": ', 1),
    lambda t: t.replace('"records": ', '"records": [], "records": ', 1),
    lambda t: t.replace("[", "[" * 40, 1),
    lambda t: t.replace("[", "[" * 2000, 1) + "]" * 1999,
    lambda t: t.replace("Infinity", "1e400").replace("NaN", "-1e999"),
    lambda t: t.replace('"firstName": ', '"firstName": "\\ud800", "x": ', 1),
    lambda t: t.replace('"phone1": ', '"phone1": "\\u0000", "p": ', 1),
    lambda t: t[: len(t) // 2],
]
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "text/plain",
]


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    target = dict(draw(st.sampled_from(TARGETS)))
    obj: Any = {**target, "records": draw(st.lists(records(), max_size=8))}
    if draw(st.integers(0, 14)) == 0:
        obj = draw(st.sampled_from([obj["records"], "x", 3, None, {**obj, "extra": 1}]))
    text = json.dumps(obj, allow_nan=True, ensure_ascii=draw(st.booleans()))
    text = draw(st.sampled_from(TWISTS))(text)
    try:
        content = text.encode(draw(st.sampled_from(ENCODINGS)))
    except UnicodeEncodeError:
        content = text.encode("utf-8", errors="surrogatepass")
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    return content, ({"Content-Type": content_type} if content_type else {})


# ---- a seeded mutator of valid bodies: fast, byte-level ------------------------------------

INSERTS = [
    b"[",
    b"]",
    b"{",
    b"}",
    b'"',
    b"\\",
    b",",
    b":",
    b"NaN",
    b"1e400",
    b"\x00",
    b"\xff",
    b'"phone1":',
    b"\\ud800",
    b"-",
    b"0",
    b"\xe2\x80\xa8",
    b"null",
    b"[[[[[[[[[[[[[[[",
]


RAW_TARGETS = [
    '"service": 1001',
    '"service": 1002',
    '"campaign": 5001',
    '"service": 1001',
    '"service": 9223372036854775808',
    '"campaign": 0',
    '"service": 1e400',
    '"service": "1001"',
    '"service": NaN',
    "",
]
RAW_VALUES = [
    '"x"',
    "12.5",
    "-0",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "9223372036854775808",
    "1" * 60,
    '"\\u0000"',
    '"\\ud800"',
    '"a\\tb"',
    '"\\u2028"',
    '"\\u202e"',
    "null",
    "true",
    "[]",
    "{}",
    "[[[[1]]]]",
    '"' + "x" * 60 + '"',
    '"=HYPERLINK(1)"',
    '"1-800-FLOWERS"',
    '"2122000001 x7"',
    '["2122000001", 7, null]',
    '"2122000001;2122000002"',
]


def raw_record(rng: random.Random, i: int) -> str:
    """One record as JSON text, hostile values and duplicate keys included."""
    pairs = []
    if rng.randrange(8):
        pairs.append(f'"phone1": "{phone(rng.randrange(300))}"')
    for _ in range(rng.randint(0, 3)):
        value = rng.choice(RAW_VALUES) if rng.randrange(3) else f'"{phone(rng.randrange(300))}"'
        pairs.append(f'"{rng.choice(FIELDS)}": {value}')
    if rng.randrange(12) == 0 and pairs:
        pairs.append(pairs[0])  # a key given twice
    pairs.append(f'"account": "M{i}"')
    rng.shuffle(pairs)
    return "{" + ", ".join(pairs) + "}"


def mutated(rng: random.Random, n: int) -> Iterator[bytes]:
    """Bodies written as text from hostile parts, a third of them then mangled byte by byte."""
    for i in range(n):
        records = ", ".join(raw_record(rng, i) for _ in range(rng.randint(0, 6)))
        target = rng.choice(RAW_TARGETS)
        head = f"{target}, " if target else ""
        data = bytearray(("{" + head + '"records": [' + records + "]}").encode())
        for _ in range(rng.randint(1, 4) if rng.randrange(3) == 0 else 0):
            at = rng.randrange(len(data) + 1)
            op = rng.randrange(4)
            if op == 0:
                data[at:at] = rng.choice(INSERTS)
            elif op == 1:
                del data[at : at + rng.randint(1, 8)]
            elif op == 2 and data:
                data[at % len(data)] = rng.randrange(256)
            else:
                data = data[:at]
        if rng.randrange(50) == 0:
            data = bytearray(rng.randbytes(rng.randint(0, 64)))
        yield bytes(data)


settings_for_fuzz = hypothesis_settings(
    max_examples=HYPOTHESIS_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    """A real ``appendq serve`` process on the test's Redis prefix and database."""
    log = tmp_path / "serve.log"
    with (
        serve_process(settings, log, TOKEN, APPENDQ_LOG_LEVEL="WARNING") as (url, _),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client
    text = log.read_text()
    assert "Traceback" not in text and "request failed" not in text, text[-3000:]


@pytest.mark.timeout(300)
def test_fuzzed_bodies_never_5xx_never_partly_queued(
    serve: httpx.Client, settings: Settings, redis_client: redis.Redis
) -> None:
    # Given a real `appendq serve`, When FUZZ_BODIES generated bodies are posted one after the
    # other, Then none is answered 5xx, the queue grows by exactly accepted + duplicates on a
    # 202 and not at all otherwise, and every per-record error names its index and field.
    checker = Checker(serve, redis_client, Keys(settings.redis_prefix))
    started = time.monotonic()

    @settings_for_fuzz
    @given(st.lists(bodies(), min_size=BODIES_PER_EXAMPLE, max_size=BODIES_PER_EXAMPLE))
    def structured(batch: list[tuple[bytes, dict[str, str]]]) -> None:
        for content, headers in batch:
            checker.check(content, headers)

    structured()
    from_hypothesis, halfway = checker.bodies, time.monotonic()
    rng = random.Random(7)
    for content in mutated(rng, FUZZ_BODIES - checker.bodies):
        checker.check(content)
    elapsed = time.monotonic() - started
    print(
        f"fuzz: {checker.bodies} bodies in {elapsed:.1f} s ({from_hypothesis} from Hypothesis in "
        f"{halfway - started:.1f} s): {sorted(checker.statuses.items())}"
    )
    assert checker.bodies >= FUZZ_BODIES
    assert checker.statuses.get(202, 0) > FUZZ_BODIES // 10  # the fuzz reaches the queue
    assert len(checker.statuses) >= 4  # and the refusals: 400, 413/415, 422...
