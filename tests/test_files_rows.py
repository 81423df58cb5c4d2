"""``producer.files``: each row of a lead file (CSV, JSON Lines) is a record or an error naming its
row and field, and a bad row never stops the good ones; the acceptance criteria's bad input file is
``BAD_CSV`` (``BAD_JSONL``), shared with the ``appendq enqueue`` tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from appendq.errors import FieldError
from appendq.keys import Keys
from appendq.queue.record_queue import RecordQueue
from producer import FILE_LEVEL, Producer, iter_records, read_records
from tests.conftest import phone, queued
from tests.test_producer import where

TARGET = "service:1001"


@pytest.fixture
def producer(redis_client: redis.Redis, keys: Keys) -> Producer:
    return Producer(RecordQueue(redis_client, keys))


HEADER = b"phone1,phone2,firstName,lastName,account\n"
PHONES_31 = ";".join(phone(100 + i) for i in range(30)).encode()

#: The "bad input" file of the acceptance criteria, as CSV: rows 2 and 9 are the good ones.
BAD_CSV = (
    HEADER
    + f"{phone(1)},,Ann,Lee,A1\n".encode()  # row 2: good
    + b",,Bob,Ray,A2\n"  # row 3: no phone1
    + f"{phone(3)},".encode()
    + PHONES_31
    + b",Cy,Do,A3\n"  # row 4: 31 phone numbers
    + b"21255501O4,,Di,Em,A4\n"  # row 5: not a number
    + f"{phone(5)},,{'x' * 51},Fo,A5\n".encode()  # row 6: firstName too long
    + b"\n"  # row 7: blank line
    + phone(7).encode()
    + b",,G\xe9rard,Hu,A7\n"  # row 8: a latin-1 byte
    + f"{phone(9)},,Ivy,Jo,A9\n".encode()  # row 9: good
)
BAD_CSV_ERRORS = [
    (3, "phone1"),
    (4, "phone2"),
    (5, "phone1"),
    (6, "firstName"),
    (7, "record"),
    (8, "firstName"),
]


def _jsonl(*objects: dict[str, Any] | bytes) -> bytes:
    return b"".join(o if isinstance(o, bytes) else json.dumps(o).encode() + b"\n" for o in objects)


#: The same bad input as JSON Lines: rows 1 and 8 are the good ones.
BAD_JSONL = _jsonl(
    {"phone1": phone(1), "firstName": "Ann", "account": "A1"},
    {"firstName": "Bob", "account": "A2"},
    {"phone1": phone(3), "phone2": [phone(100 + i) for i in range(30)], "account": "A3"},
    {"phone1": "21255501O4", "account": "A4"},
    {"phone1": phone(5), "firstName": "x" * 51, "account": "A5"},
    b"\n",
    b'{"phone1": "' + phone(7).encode() + b'", "firstName": "G\xe9rard", "account": "A7"}\n',
    {"phone1": phone(9), "firstName": "Ivy", "account": "A9"},
    b'{"phone1": "2125550110", "account": \n',
)
BAD_JSONL_ERRORS = [
    (2, "phone1"),
    (3, "phone2"),
    (4, "phone1"),
    (5, "firstName"),
    (6, "record"),
    (7, "firstName"),
    (9, "record"),
]


@pytest.mark.parametrize(
    ("name", "content", "errors", "rows"),
    [
        ("bad.csv", BAD_CSV, BAD_CSV_ERRORS, 8),
        ("bad.jsonl", BAD_JSONL, BAD_JSONL_ERRORS, 9),
    ],
)
def test_bad_input_file_reports_each_row_and_queues_the_rest(
    tmp_path: Path,
    producer: Producer,
    redis_client: redis.Redis,
    keys: Keys,
    name: str,
    content: bytes,
    errors: list[tuple[int, str]],
    rows: int,
) -> None:
    # Given the acceptance criteria's bad input file / When streamed / Then each bad row is
    # reported with its row and field, the 2 good rows are queued, and no row is unaccounted for
    path = tmp_path / name
    path.write_bytes(content)

    receipt = producer.enqueue_stream(TARGET, read_records(path))

    assert sorted(set(where(receipt.errors))) == errors
    assert receipt.accepted == 2
    assert receipt.accepted + receipt.rejected == rows
    assert [r.payload["account"] for r in queued(redis_client, keys)] == ["A1", "A9"]
    by_row = {e.row: e.message for e in receipt.errors}
    assert by_row[errors[4][0]] == "blank line"
    assert by_row[errors[5][0]] == "is not valid UTF-8"
    assert "21255501O4" not in " ".join(str(e) for e in receipt.errors)


def _read(content: bytes, fmt: str = "csv") -> list[tuple[int, dict[str, Any] | FieldError]]:
    return list(iter_records(content.splitlines(keepends=True), fmt))


def test_csv_unknown_column_is_reported_once_and_dropped() -> None:
    # Given a header with an unknown and a miscased column / When read / Then one file-level error
    # each, with a hint, and the rows are read without them
    items = _read(b"phone1,shoeSize,FirstName\n" + f"{phone(0)},9,Al\n".encode() * 3)

    header_errors = [e for _, e in items if isinstance(e, FieldError)]
    assert [(e.index, e.row, e.field) for e in header_errors] == [
        (FILE_LEVEL, 1, "shoeSize"),
        (FILE_LEVEL, 1, "FirstName"),
    ]
    assert "did you mean 'firstName'?" in header_errors[1].message
    assert [r for _, r in items if isinstance(r, dict)] == [{"phone1": phone(0)}] * 3


def test_csv_header_that_is_really_data_never_prints_the_phone() -> None:
    # Given a file without a header / When read / Then the columns are named by position only
    items = _read(f"{phone(0)},Al\n{phone(1)},Bo\n".encode())

    errors = [e for _, e in items if isinstance(e, FieldError)]
    assert [e.field for e in errors] == ["column 1", "Al", "header"]
    assert phone(0) not in " ".join(str(e) for e in errors)


def test_csv_row_level_problems_spoil_only_their_row() -> None:
    # Given extra cells, CRLF endings, a BOM, a good row, an unclosed quote and trailing blank
    # lines / When read / Then the extra cells spoil their row only; the unclosed quote swallows
    # the rest of the file into one cell: that row is refused and reading stops (issue 7, defect 5)
    content = (
        b"\xef\xbb\xbfphone1,firstName,account\r\n"
        + f'{phone(0)},Al,A0,extra\r\n{phone(2)},,A2\r\n{phone(1)},"Bo,A1\r\n'.encode()
        + f"{phone(3)},,A3\r\n".encode()
        + b"\r\n\n"
    )
    items = _read(content)

    assert [(row, str(r)) for row, r in items] == [
        (2, "row 2: record: has 4 cells, the header has 3"),
        (3, str({"phone1": phone(2), "account": "A2"})),
        (4, "row 4: record: has a quote that is never closed: lines 4-7 were read as one cell"),
        (
            7,
            "row 7: file: reading stopped at line 7: lines 5-7 were not read as rows; nothing "
            "after it was read",
        ),
    ]


def test_csv_a_quote_read_as_text_stops_reading_so_a_notes_phone_never_becomes_a_lead() -> None:
    # Given a bad byte just before the opening quote of a two-line notes cell (the reader then
    # takes that quote as text, and the cell's line break as the end of the row: found by the
    # fuzz test) / When read / Then that row is refused, reading stops, and the phone written in
    # the notes (its second line) is never read as a row; the rows before it are.
    content = (
        f'phone1,firstName\n"{phone(0)}",""\n"{phone(1)}",'.encode()
        + b'\xff"call back at\n'
        + f'{phone(9)}, ask for Bob"\n"{phone(2)}",""\n'.encode()
    )
    items = _read(content)

    assert [(row, str(r)) for row, r in items] == [
        (2, str({"phone1": phone(0)})),
        (
            3,
            "row 3: record: has a double quote inside a cell that is not quoted (a cell holding "
            "a quote must be quoted, its quotes doubled)",
        ),
        (
            3,
            "row 3: file: reading stopped at line 3: the quoting of row 3 is broken, so no "
            "later line can be trusted; nothing after it was read",
        ),
    ]


def test_csv_only_one_trailing_newline_is_no_record() -> None:
    # Given a file ending with and without a newline / When read / Then both hold the same record
    with_newline = _read(b"phone1\n" + phone(0).encode() + b"\n")
    without = _read(b"phone1\n" + phone(0).encode())

    assert with_newline == without == [(2, {"phone1": phone(0)})]


def test_csv_bad_byte_in_a_dropped_column_does_not_spoil_the_row() -> None:
    # Given a non-UTF-8 byte in an unknown column / When read / Then the row is read without it
    items = _read(b"phone1,notes\n" + phone(0).encode() + b",caf\xe9\n")

    assert items[-1] == (2, {"phone1": phone(0)})


def test_jsonl_non_object_line_is_an_error() -> None:
    # Given a JSON array on a line / When read / Then that row is refused as not an object
    items = _read(b'[1, 2]\n{"phone1": "' + phone(0).encode() + b'"}\n', "jsonl")

    assert str(items[0][1]) == "row 1: record: must be a JSON object of LiveVox fields"
    assert items[1] == (2, {"phone1": phone(0)})


def test_read_records_refuses_unknown_extensions(tmp_path: Path) -> None:
    # Given a .txt file / When read / Then the reader says which extensions it knows
    with pytest.raises(ValueError, match=r"\.csv, \.jsonl or \.ndjson"):
        next(read_records(tmp_path / "leads.txt"))
