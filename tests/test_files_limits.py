"""Lead files read in bounded memory (issue 7, defect 10): a line, a CSV row over its quoted line
breaks, and a cell each have a limit; past it the row is refused by number, or reading stops, and
the rows around it keep their numbers."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from appendq.errors import FieldError
from producer import read_records
from producer.files import STOPPED
from tests.conftest import phone
from tests.test_files_reading import read


def test_a_file_without_line_breaks_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    # Given a 40 MB CSV and a 40 MB JSON Lines file without a line break / When read with the
    # 1 MiB default / Then one clean error naming line 1 each, and at most a few MB allocated
    big = b"phone1," + b"x" * (40 * 1024 * 1024)
    csv_path = tmp_path / "big.csv"
    csv_path.write_bytes(big)
    jsonl_path = tmp_path / "big.jsonl"
    jsonl_path.write_bytes(b'{"phone1": "' + big)

    tracemalloc.start()
    try:
        csv_items = list(read_records(csv_path))
        jsonl_items = list(read_records(jsonl_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [(row, str(e)) for row, e in csv_items] == [
        (
            1,
            "row 1: file: the header (line 1) cannot be read: line 1 is longer than 1,048,576 "
            "bytes (APPENDQ_IMPORT_MAX_LINE_BYTES); nothing was read",
        )
    ]
    assert [(row, str(e)) for row, e in jsonl_items] == [
        (1, "row 1: record: line 1 is longer than 1,048,576 bytes (APPENDQ_IMPORT_MAX_LINE_BYTES)")
    ]
    assert peak < 8 * 1024 * 1024, f"peak {peak:,} bytes"


def test_a_long_unclosed_quote_stops_at_the_limit() -> None:
    # Given an unclosed quote followed by 100,000 short lines / When read with a 4 KiB limit /
    # Then the row is refused once it passes the limit (16 bytes on line 2, then 12 a line: at
    # line 343), and reading stops there
    content = f'phone1,extra1\n{phone(1)},"open\n'.encode() + f"{phone(2)},x\n".encode() * 100_000

    items = read(content, max_line_bytes=4096)

    assert [(row, e.field) for row, e in items if isinstance(e, FieldError)] == [
        (2, "record"),
        (343, STOPPED),
    ]
    assert "runs from line 2 past 4,096 bytes" in str(items[0][1])


@pytest.mark.parametrize("ending", ["\r\n", "\r", "\n"])
def test_lines_around_the_limit_keep_their_numbers(ending: str) -> None:
    # Given JSON Lines whose line 2 is 2 bytes under to 3 over a 1,024-byte limit, then a blank
    # line ending like it (CR then CRLF: a cut between CR and LF must not make a line) and a good
    # row / When read / Then line 2 is read or refused by number, and the good row is line 4
    for size in range(1022, 1028):
        line = json.dumps({"phone1": phone(1), "extra1": "x" * (size - 38)})
        assert len(line) == size
        blank = "\r\n" if ending == "\r" else ending
        content = f"{{}}{ending}{line}{ending}{blank}{json.dumps({'phone1': phone(2)})}{ending}"

        items = read(content.encode(), "jsonl", max_line_bytes=1024)

        rows = [(row, getattr(item, "message", "record")) for row, item in items]
        second = "record" if size <= 1024 else "line 2 is longer than 1,024 bytes"
        assert rows[1][0] == 2 and rows[1][1].startswith(second), (size, rows)
        assert rows[2:] == [(3, "blank line"), (4, "record")], (size, rows)


def test_a_cell_past_the_csv_field_limit_spoils_only_its_row() -> None:
    # Given a 200,000-character quoted cell on one line (under the 1 MiB line limit, over the csv
    # module's 131,072) / When read / Then that row is refused and the next is read
    content = f'phone1,extra1\n{phone(1)},"{"x" * 200_000}"\n{phone(2)},ok\n'.encode()

    items = read(content)

    assert [(row, str(item)) for row, item in items] == [
        (2, "row 2: record: has a cell longer than 131,072 characters"),
        (3, str({"phone1": phone(2), "extra1": "ok"})),
    ]
