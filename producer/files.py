"""Read lead files (CSV or JSON Lines) as a stream, one record or one error per row.

``read_records`` yields ``(row, record)`` pairs where ``row`` is the 1-based line on which the row
STARTS and ``record`` is either a mapping of LiveVox field names to raw values (validated later by
``appendq.leads``) or the ``FieldError`` that made the row unreadable. Nothing reads the whole
file: text is decoded as it comes (``producer.filetext``), a line or CSV row longer than
``max_line_bytes`` is read past and refused, never held.

- Encoding: UTF-8; a byte order mark selects UTF-8, UTF-16 or UTF-32. Bytes not valid in it spoil
  only the field (or row) that holds them. A workbook, or NUL bytes where text should start, refuse
  the file.
- CSV is read by the standard library's reader: quoted cells may hold commas, quotes and line
  breaks, lines may end in LF, CRLF or CR. After a row whose quoting is broken (or a quote that is
  never closed) nothing more is read: no later line can be trusted to start a row, and reading on
  could take the text of a cell for a lead. That stop is an error with field ``file``.
- JSON Lines: one object per line; nesting and number sizes are bounded by the parser's limits.
- A text cell that starts like a spreadsheet formula (``=...``, or ``+``/``-``/``@`` followed by a
  function call or a ``|``) refuses its row: see ``formula_problem``.

Errors about the file as a whole carry ``index`` ``FILE_LEVEL``: an ignored CSV column (the rows
are still read), or the stop (field ``file``: nothing after that line was read).
"""

from __future__ import annotations

import csv
import difflib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appendq.errors import FieldError
from appendq.leads import LEAD_FIELDS, formula_problem
from producer.filetext import (
    MAX_LINE_BYTES,
    FileRefused,
    Lines,
    LineTooLong,
    Readable,
    has_bad_bytes,
    holds_bad_bytes,
    open_text,
    utf8_size,
)

#: ``FieldError.index`` of an error about the whole file rather than one record.
FILE_LEVEL = -1
#: ``FieldError.field`` of the file-level error after which nothing more was read.
STOPPED = "file"

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

Item = tuple[int, dict[str, Any] | FieldError]

_PHONE_DIGITS = 7  # a header cell with this many digits may be a phone number: never print it
_LOWER_FIELDS = {name.lower(): name for name in LEAD_FIELDS}
_SETTING = "APPENDQ_IMPORT_MAX_LINE_BYTES"


def format_for(path: Path, fmt: str | None = None) -> str:
    """``csv`` or ``jsonl``: ``fmt`` when given, else from the file name's extension."""
    if fmt is not None:
        if fmt not in FORMATS.values():
            raise ValueError(f"unknown format {fmt!r}: use csv or jsonl")
        return fmt
    if str(path) == "-":
        raise ValueError("reading standard input needs a format (csv or jsonl)")
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path.name}: name must end in .csv, .jsonl or .ndjson") from None


def read_records(
    path: Path, *, fmt: str | None = None, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Item]:
    """Yield ``(row, record or error)`` for each row of ``path`` (``-`` is standard input)."""
    kind = format_for(path, fmt)
    if str(path) == "-":
        yield from iter_records(sys.stdin.buffer, kind, max_line_bytes=max_line_bytes)
        return
    with path.open("rb") as stream:
        yield from iter_records(stream, kind, max_line_bytes=max_line_bytes)


def iter_records(
    stream: Readable | Iterable[bytes], fmt: str, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Item]:
    """Same as ``read_records`` over an open binary stream (or any iterable of byte strings)."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}: use csv or jsonl")
    if max_line_bytes < 1:
        raise ValueError("max_line_bytes must be at least 1")
    return _records(stream, fmt, max_line_bytes)


def _records(stream: Readable | Iterable[bytes], fmt: str, max_line_bytes: int) -> Iterator[Item]:
    try:
        text, encoding = open_text(stream)
    except FileRefused as exc:
        yield 1, FieldError(FILE_LEVEL, STOPPED, f"{exc}; nothing was read", 1)
        return
    lines = Lines(text, max_line_bytes)
    if fmt == "csv":
        yield from _csv_records(lines, encoding)
    else:
        yield from _jsonl_records(lines, encoding)


def _blank(index: int, row: int) -> FieldError:
    return FieldError(index, "record", "blank line", row)


def _too_long(max_bytes: int, first: int, number: int) -> str:
    limit = f"{max_bytes:,} bytes ({_SETTING})"
    if number == first:
        return f"line {number} is longer than {limit}"
    return f"runs from line {first} past {limit} at line {number}: a quote that is never closed?"


# --- JSON Lines -------------------------------------------------------------------------------


def _jsonl_records(lines: Lines, encoding: str) -> Iterator[Item]:
    index = 0
    blanks: list[int] = []
    while True:
        problem: str | None = None
        try:
            text = lines.next()
        except LineTooLong as exc:
            text, problem = "", _too_long(lines.max_bytes, exc.number, exc.number)
        if text is None:
            return
        if problem is None and not text.strip():
            blanks.append(lines.number)
            continue
        row = lines.number
        for blank in blanks:
            yield blank, _blank(index, blank)
            index += 1
        blanks.clear()
        if problem is not None:
            yield row, FieldError(index, "record", problem, row)
        else:
            yield row, _json_line(text, index, row, encoding)
        index += 1


def _json_line(text: str, index: int, row: int, encoding: str) -> dict[str, Any] | FieldError:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if has_bad_bytes(text):
            return FieldError(index, "record", f"is not valid {encoding}", row)
        return FieldError(index, "record", f"not valid JSON: {exc.msg} (column {exc.colno})", row)
    except RecursionError:
        return FieldError(index, "record", "not valid JSON: nested too deeply", row)
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        return FieldError(index, "record", f"not valid JSON: {str(exc).split(';')[0]}", row)
    if not isinstance(value, dict):
        return FieldError(index, "record", "must be a JSON object of LiveVox fields", row)
    bad_bytes = has_bad_bytes(text)
    for key, item in value.items():
        field = key if key in LEAD_FIELDS else "record"
        if bad_bytes and (has_bad_bytes(key) or holds_bad_bytes(item)):
            return FieldError(index, field, f"is not valid {encoding}", row)
        if field != "record" and isinstance(item, str) and (why := formula_problem(item)):
            return FieldError(index, field, why, row)
    return value


# --- CSV --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    """Column ``i`` of the file feeds LiveVox field ``columns[i]``; ``None`` drops the column."""

    row: int
    columns: tuple[str | None, ...]


@dataclass(frozen=True)
class _Row:
    """One CSV row: its first and last line, its cells or the problem that spoilt it, and, when
    no later line can be trusted to start a row, why reading stops there."""

    first: int
    last: int
    cells: list[str] | None
    problem: str | None = None
    stop: str | None = None
    blank: bool = False


class _Feed:
    """The physical lines for ``csv.reader``, keeping count of the row being read."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self.start()

    def start(self) -> None:
        self.first = self.lines.number + 1
        self.count = 0
        self.size = 0
        self.quotes = 0
        self.blank = True

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        line = self.lines.next()
        if line is None:
            raise StopIteration
        self.count += 1
        self.quotes += line.count('"')
        self.blank = self.blank and not line.strip()
        self.size += utf8_size(line.rstrip("\r\n"))
        if self.size > self.lines.max_bytes:
            raise LineTooLong(self.lines.number, self.quotes)
        return line


def _next_row(reader: Iterator[list[str]], feed: _Feed) -> _Row | None:
    feed.start()
    try:
        cells = next(reader)
    except StopIteration:
        return None
    except LineTooLong as exc:
        problem = _too_long(feed.lines.max_bytes, feed.first, exc.number)
        if exc.number == feed.first and exc.quotes % 2 == 0:
            return _Row(feed.first, exc.number, None, problem)
        why = f"a quote in row {feed.first} is left open, so no later line can be trusted"
        return _Row(feed.first, exc.number, None, problem, why)
    except csv.Error as exc:
        return _broken_row(feed, str(exc))
    last = feed.lines.number
    if feed.quotes % 2:  # a quote the reader took as text: an opening quote it did not see?
        problem = (
            "has a double quote inside a cell that is not quoted (a cell holding a quote must "
            "be quoted, its quotes doubled)"
        )
        why = f"the quoting of row {feed.first} is broken, so no later line can be trusted"
        return _Row(feed.first, last, None, problem, why)
    return _Row(feed.first, last, cells, blank=feed.blank and last == feed.first)


def _broken_row(feed: _Feed, message: str) -> _Row:
    first, last = feed.first, feed.lines.number
    if "field larger than field limit" in message:
        problem = f"has a cell longer than {csv.field_size_limit():,} characters"
        if last == first and feed.quotes % 2 == 0:
            return _Row(first, last, None, problem)
        return _Row(first, last, None, problem, f"a quote in row {first} is left open")
    if "unexpected end of data" in message:
        problem = f"has a quote that is never closed: lines {first}-{last} were read as one cell"
        if last == first:
            return _Row(first, last, None, problem)  # the last line: nothing else was lost
        lost = f"line {last} was" if last == first + 1 else f"lines {first + 1}-{last} were"
        return _Row(first, last, None, problem, f"{lost} not read as rows")
    problem = f"is not valid CSV: {message}"
    why = f"the quoting of row {first} is broken, so no later line can be trusted to start a row"
    return _Row(first, last, None, problem, why)


def _csv_records(lines: Lines, encoding: str) -> Iterator[Item]:
    feed = _Feed(lines)
    reader = csv.reader(feed, strict=True)
    header: _Header | None = None
    index = 0
    blanks: list[int] = []
    while (row := _next_row(reader, feed)) is not None:
        if row.blank:
            if header is not None:
                blanks.append(row.first)  # blank lines before the header hold no record
            continue
        if header is None:
            header, problems = _parse_header(row, encoding)
            yield from ((row.first, problem) for problem in problems)
            if row.cells is None:
                return
            continue
        for blank in blanks:
            yield blank, _blank(index, blank)
            index += 1
        blanks.clear()
        if row.cells is None:
            yield row.first, FieldError(index, "record", row.problem or "unreadable", row.first)
            if row.stop is not None:
                yield row.last, _stopped(row)
                return
        else:
            yield row.first, _csv_record(row.cells, header, index, row.first, encoding)
        index += 1


def _stopped(row: _Row) -> FieldError:
    message = f"reading stopped at line {row.last}: {row.stop}; nothing after it was read"
    return FieldError(FILE_LEVEL, STOPPED, message, row.last)


def _parse_header(row: _Row, encoding: str) -> tuple[_Header, list[FieldError]]:
    if row.cells is None:
        problem = f"the header (line {row.first}) cannot be read: {row.problem}; nothing was read"
        return _Header(row.first, ()), [FieldError(FILE_LEVEL, STOPPED, problem, row.first)]
    names = [cell.strip() for cell in row.cells]
    columns: list[str | None] = []
    problems: list[FieldError] = []
    for number, name in enumerate(names, start=1):
        why = _column_problem(name, columns, encoding)
        columns.append(name if why is None else None)
        if why is not None:
            problems.append(FieldError(FILE_LEVEL, _column_label(name, number), why, row.first))
    if names and not any(columns):
        problems.append(
            FieldError(
                FILE_LEVEL,
                "header",
                "the first line must name LiveVox fields (phone1, account, firstName, ...)",
                row.first,
            )
        )
    return _Header(row.first, tuple(columns)), problems


def _column_problem(name: str, seen: list[str | None], encoding: str) -> str | None:
    ignored = "; the column is ignored"
    if has_bad_bytes(name):
        return f"is not valid {encoding}" + ignored
    if not name:
        return "has no name in the header" + ignored
    if name in seen:
        return "appears twice in the header; the second one is ignored"
    if name in LEAD_FIELDS:
        return None
    hint = ""
    if name.lower() in _LOWER_FIELDS:
        hint = f" (did you mean {_LOWER_FIELDS[name.lower()]!r}?)"
    elif ";" in name or "\t" in name:
        hint = " (the file must be comma-separated)"
    elif close := difflib.get_close_matches(name, LEAD_FIELDS, n=1):
        hint = f" (did you mean {close[0]!r}?)"
    return "is not a LiveVox record field" + ignored + hint


def _column_label(name: str, number: int) -> str:
    """The column's name when it is safe to print, else its position (never a phone number)."""
    digits = sum(char.isdigit() for char in name)
    if name and len(name) <= 50 and name.isprintable() and digits < _PHONE_DIGITS:
        return name
    return f"column {number}"


def _csv_record(
    cells: list[str], header: _Header, index: int, row: int, encoding: str
) -> dict[str, Any] | FieldError:
    width = len(header.columns)
    if len(cells) > width:
        return FieldError(index, "record", f"has {len(cells)} cells, the header has {width}", row)
    record: dict[str, Any] = {}
    for name, cell in zip(header.columns, cells, strict=False):
        if name is None:
            continue
        if has_bad_bytes(cell):
            return FieldError(index, name, f"is not valid {encoding}", row)
        if why := formula_problem(cell):
            return FieldError(index, name, why, row)
        if cell.strip():
            record[name] = cell
    return record
