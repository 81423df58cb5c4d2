"""File fuzz for ``appendq enqueue`` (issue 7, "Proof that stays"): generated CSV and JSON Lines
files, with random quoting, encodings (UTF-8 with and without BOM, UTF-16, UTF-32, UTF-16 without
BOM), line endings (LF, CRLF, CR, mixed), blank lines, huge cells, a missing header, bytes that
are not valid, stray quotes, run through the real import (``read_records`` into
``Producer.enqueue_stream``) and the real command, against the real Redis.

Every row carries a marker (its account) and its own phone number; some first names hide a decoy
(a line break, then another valid phone number and a comma: the defect 5 export). Always: no
uncaught exception, the queue grows by exactly what the receipt says, every error names a line
and a field, only the rows' own phone numbers are queued (never a decoy), and no queued record
holds the marker of another row. For a well-formed file (no bad bytes, no stray quote, a header)
also: exactly the records the row-by-row oracle (``validate_record`` on the cells as written)
accepts are queued, in order, and each refused row is reported at the line it starts on.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import appendq.cli.enqueue  # noqa: F401  (registers the command)
from appendq.cli.app import main
from appendq.errors import FieldError
from appendq.keys import Keys
from appendq.leads import formula_problem, normalise_phone, validate_record
from appendq.queue.record_queue import RecordQueue
from producer import Producer, read_records
from producer.files import FILE_LEVEL, STOPPED
from tests.conftest import REDIS_URL, phone

pytestmark = pytest.mark.usefixtures("keep_root_logging")

MAX_LINE = 2048  # APPENDQ_IMPORT_MAX_LINE_BYTES in the fuzz: huge cells stay cheap to make
IMPORT_EXAMPLES = 1000
CLI_EXAMPLES = 30
_SERVICES = itertools.count(1)
_BREAK = re.compile(r"\r\n|\r|\n")
_FIELDS = ("phone1", "firstName", "account")


@dataclass(frozen=True)
class Row:
    """One generated row: ``phone`` as written, ``own`` its canonical number when it has one."""

    number: int
    phone: str
    own: str | None
    name: str
    blank: str | None = None  # the blank line's text when the row is a blank line

    @property
    def marker(self) -> str:
        return f"acct{self.number:04d}q"


@dataclass
class Spec:
    fmt: str
    rows: list[Row]
    endings: list[str]
    encoding: str
    header: str  # normal, extra (an unknown column), missing
    quoting: str  # minimal, all
    bad_bytes: list[tuple[float, bytes]] = field(default_factory=list)
    stray_quote: tuple[int, int] | None = None  # (row, which cell boundary) of a lone quote
    final_newline: bool = True

    @property
    def headless(self) -> bool:
        return self.fmt == "csv" and self.header == "missing"

    @property
    def well_formed(self) -> bool:
        """No bad bytes, no stray quote, a header, and an encoding the reader is told."""
        plain = not self.bad_bytes and self.stray_quote is None
        return plain and not self.headless and self.encoding != "utf-16-le"


NAME_CHARS = [*"abcXYZ é,\"';=+-@|()\t\n\r", "\u2028", "\x85", "ß", "😀"]


@st.composite
def rows(draw: st.DrawFn) -> list[Row]:
    count = draw(st.integers(0, 12))
    base = draw(st.integers(0, 4000)) * 10
    result: list[Row] = []
    for i in range(count):
        number = base + i
        if draw(st.integers(0, 9)) == 0:
            result.append(Row(number, "", None, "", blank=draw(st.sampled_from(["", "  ", "\t"]))))
            continue
        own = phone(number)
        kind = draw(st.sampled_from(["plain", "plain", "plain", "formatted", "bad", "missing"]))
        written = {
            "plain": own,
            "formatted": f"+1 ({own[:3]}) {own[3:6]}-{own[6:]}",
            "bad": own[:4] + "O" + own[5:],
            "missing": "",
        }[kind]
        result.append(Row(number, written, own, draw(names(number))))
    return result


def names(number: int) -> st.SearchStrategy[str]:
    decoy = phone(70_000 + number)
    plain = st.text(st.sampled_from([*"abcXYZ é,\"'ß"]), max_size=40)
    return st.one_of(
        plain,
        plain,
        plain,
        st.text(st.sampled_from(NAME_CHARS), max_size=55),
        st.just(f"call back at\n{decoy}, ask for Bob"),
        st.just(f'=HYPERLINK("http://x.test/{number}","Call")'),
        st.integers(MAX_LINE, 3 * MAX_LINE).map(lambda n: "x," * (n // 2)),
    )


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    leads = draw(rows())
    ending_choices = draw(st.sampled_from([["\n"], ["\r\n"], ["\r"], ["\n", "\r\n", "\r"]]))
    endings = [draw(st.sampled_from(ending_choices)) for _ in range(len(leads) + 1)]
    encoding = draw(
        st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16", "utf-32", "utf-16-le"])
    )
    spec = Spec(
        fmt=draw(st.sampled_from(["csv", "jsonl"])),
        rows=leads,
        endings=endings,
        encoding=encoding,
        header=draw(st.sampled_from(["normal", "normal", "normal", "extra", "missing"])),
        quoting=draw(st.sampled_from(["minimal", "all"])),
        final_newline=draw(st.booleans()),
    )
    if draw(st.integers(0, 4)) == 0:
        bad = st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80"])
        spec.bad_bytes = draw(st.lists(st.tuples(st.floats(0, 1), bad), min_size=1, max_size=2))
    if spec.fmt == "csv" and leads and draw(st.integers(0, 2)) == 0:
        spec.stray_quote = (draw(st.integers(0, len(leads) - 1)), draw(st.integers(0, 20)))
    return spec


# --- rendering --------------------------------------------------------------------------------


def _cell(value: str, quoting: str) -> str:
    if quoting == "all" or any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _render_row(spec: Spec, index: int, row: Row) -> str:
    if row.blank is not None:
        return row.blank
    values = {"phone1": row.phone, "firstName": row.name, "account": row.marker}
    if spec.fmt == "jsonl":
        return json.dumps(values, ensure_ascii=row.number % 2 == 0)
    cells = [_cell(values[name], spec.quoting) for name in _FIELDS]
    if spec.header == "extra":
        cells.append(str(row.number % 13))
    text = ",".join(cells)
    if spec.stray_quote is not None and spec.stray_quote[0] == index:
        # where a quote means most: where a cell starts or ends
        commas = [i for i, char in enumerate(text) if char == ","]
        cuts = [0, len(text), *commas, *(i + 1 for i in commas)]
        cut = cuts[spec.stray_quote[1] % len(cuts)]
        text = text[:cut] + '"' + text[cut:]
    return text


def render(spec: Spec) -> tuple[bytes, list[int]]:
    """The file's bytes, and the line each row starts on."""
    text = ""
    if spec.fmt == "csv" and not spec.headless:
        names = ",".join(_FIELDS) + (",shoeSize" if spec.header == "extra" else "")
        text = names + spec.endings[0]
    starts: list[int] = []
    for index, row in enumerate(spec.rows):
        ending = spec.endings[index + 1]
        if text.endswith("\r") and ending == "\n" and not _render_row(spec, index, row):
            ending = "\r\n"  # a lone LF right after a CR would join its line ending
        starts.append(1 + len(_BREAK.findall(text)))
        last = index == len(spec.rows) - 1
        text += _render_row(spec, index, row) + ("" if last and not spec.final_newline else ending)
    data = text.encode(spec.encoding)
    for fraction, bad in spec.bad_bytes:
        at = int(fraction * len(data))
        if spec.encoding.startswith("utf-16"):
            at, bad = at - at % 2, b"\x00\xd8"  # a lone surrogate, keeping the alignment
        elif spec.encoding == "utf-32":
            at, bad = at - at % 4, b"\x00\xd8\x00\x00"
        data = data[:at] + bad + data[at:]
    return data, starts


# --- the oracle -------------------------------------------------------------------------------


def expected(spec: Spec, starts: list[int]) -> tuple[list[dict[str, Any]], set[int]]:
    """For a well-formed file: the payloads to queue, in order, and the lines of refused rows."""
    payloads: list[dict[str, Any]] = []
    refused: set[int] = set()
    last_data = max((i for i, r in enumerate(spec.rows) if r.blank is None), default=-1)
    for index, (row, start) in enumerate(zip(spec.rows, starts, strict=True)):
        if row.blank is not None:
            if index < last_data:
                refused.add(start)  # a blank line between rows; trailing ones hold nothing
            continue
        payload = _oracle(spec, row)
        if payload is None:
            refused.add(start)
        else:
            payloads.append(payload)
    return payloads, refused


def _oracle(spec: Spec, row: Row) -> dict[str, Any] | None:
    values = {"phone1": row.phone, "firstName": row.name, "account": row.marker}
    line = _render_row(spec, 0, row)
    if len(line.encode("utf-8")) > MAX_LINE and not _BREAK.search(line):
        return None
    if spec.fmt == "csv":
        values = {k: v for k, v in values.items() if v.strip()}
    if any(formula_problem(v) for v in values.values()):
        return None
    payload, _ = validate_record(values, 0)
    return payload


# --- checks shared by both ways in ------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    accepted: int
    duplicates: int
    errors: list[tuple[int, int | None, str]]  # (index, row, field)


def check(
    spec: Spec, starts: list[int], outcome: Outcome, stored: list[dict[str, Any]], *, empty: bool
) -> None:
    """The guarantees for every file, then, for a well-formed one, the oracle's exact result."""
    assert len(stored) == outcome.accepted + outcome.duplicates
    for index, row, name in outcome.errors:
        assert isinstance(row, int) and row >= 1, (index, row, name)
        assert name, (index, row, name)
    owners = {normalise_phone(r.own): r for r in spec.rows if r.own is not None}
    for payload in stored:
        owner = owners.get(payload["phone1"])
        assert owner is not None, f"queued a phone of no row: {payload}"
        text = json.dumps(payload, ensure_ascii=False)
        others = [r.marker for r in spec.rows if r is not owner and r.marker in text]
        assert not others, f"{payload} holds text of rows {others}"
    if spec.encoding == "utf-16-le" and not empty:  # no byte order mark: refused whole
        assert (stored, outcome.errors) == ([], [(FILE_LEVEL, 1, STOPPED)])
    if spec.headless:
        assert stored == []
    if not spec.well_formed:
        return
    payloads, refused = expected(spec, starts)
    assert stored == payloads
    assert {row for index, row, _ in outcome.errors if index != FILE_LEVEL} == refused
    assert all(name != STOPPED for _, _, name in outcome.errors)


Stored = Callable[[str], list[dict[str, Any]]]


@pytest.fixture
def stored(redis_client: redis.Redis, keys: Keys) -> Stored:
    def payloads(target: str) -> list[dict[str, Any]]:
        raw = redis_client.lrange(keys.queue(target), 0, -1)
        return [json.loads(item)["r"] for item in raw]

    return payloads


# --- the fuzz ---------------------------------------------------------------------------------


@settings(
    max_examples=IMPORT_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=specs())
def test_generated_files_through_the_import(
    spec: Spec, tmp_path: Path, redis_client: redis.Redis, keys: Keys, stored: Stored
) -> None:
    # Given a generated lead file / When read_records feeds Producer.enqueue_stream (chunks of 3)
    # on a real Redis / Then no exception, queue == receipt, errors name line and field, no
    # invented lead, no mixed rows; for a well-formed file exactly the oracle's records
    data, starts = render(spec)
    event(f"{spec.fmt} {'well-formed' if spec.well_formed else 'malformed'}")
    target = f"service:{next(_SERVICES)}"
    path = tmp_path / f"leads.{spec.fmt}"
    path.write_bytes(data)
    producer = Producer(RecordQueue(redis_client, keys), max_targets=10 * IMPORT_EXAMPLES)

    receipt = producer.enqueue_stream(target, read_records(path, max_line_bytes=MAX_LINE), chunk=3)

    errors = [(e.index, e.row, e.field) for e in receipt.errors]
    event(f"queued {min(receipt.accepted, 3)}+, refused {min(receipt.rejected, 3)}+")
    if any(e.field == STOPPED for e in receipt.errors):
        event("reading stopped")
    assert all(isinstance(e, FieldError) for e in receipt.errors)
    outcome = Outcome(receipt.accepted, len(receipt.duplicates), errors)
    check(spec, starts, outcome, stored(target), empty=not data)


@settings(
    max_examples=CLI_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=specs())
def test_generated_files_through_the_command(
    spec: Spec, tmp_path: Path, keys: Keys, stored: Stored
) -> None:
    # Given a generated lead file / When `appendq enqueue FILE --json` runs / Then exit 0, 1 or 4,
    # one JSON document, and the same guarantees as through the import
    data, starts = render(spec)
    service = next(_SERVICES)
    path = tmp_path / f"leads.{spec.fmt}"
    path.write_bytes(data)
    env = {
        "APPENDQ_REDIS_URL": REDIS_URL,
        "APPENDQ_REDIS_PREFIX": keys.prefix,
        "APPENDQ_IMPORT_MAX_LINE_BYTES": str(MAX_LINE),
        "APPENDQ_MAX_TARGETS": str(10 * CLI_EXAMPLES),
    }

    result = CliRunner(env=env).invoke(
        main, ["enqueue", str(path), "--service", str(service), "--json"]
    )

    assert result.exit_code in (0, 1, 4), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert document["complete"] == all(e["field"] != STOPPED for e in document["errors"])
    errors = [(e["index"], e["row"], e["field"]) for e in document["errors"]]
    outcome = Outcome(document["accepted"], document["duplicate"], errors)
    check(spec, starts, outcome, stored(f"service:{service}"), empty=not data)
