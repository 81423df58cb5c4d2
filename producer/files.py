"""Read lead files (CSV or JSON Lines) one line at a time, one record or one error per line.

Files are read as bytes and decoded line by line, so a stray non-UTF-8 byte, an unclosed quote or a
broken JSON object spoils only its own row. Each record must fit on one line. ``read_records``
yields ``(row, record)`` pairs where ``row`` is the 1-based line number and ``record`` is either a
mapping of LiveVox field names to raw values (validated later by ``appendq.records``) or the
``FieldError`` that made the row unreadable. Errors about the file as a whole (an unknown CSV
column) carry ``index`` ``FILE_LEVEL`` and count as no record. Nothing reads the whole file.
"""

from __future__ import annotations

import csv
import difflib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from appendq.errors import FieldError
from appendq.records import LEAD_FIELDS

#: ``FieldError.index`` of an error about the whole file rather than one record.
FILE_LEVEL = -1

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

Item = tuple[int, dict[str, Any] | FieldError]

_BOM = b"\xef\xbb\xbf"
_NOT_UTF8 = "is not valid UTF-8"
_PHONE_DIGITS = 7  # a header cell with this many digits may be a phone number: never print it
_LOWER_FIELDS = {name.lower(): name for name in LEAD_FIELDS}


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


def read_records(path: Path, *, fmt: str | None = None) -> Iterator[Item]:
    """Yield ``(row, record or error)`` for each data line of ``path`` (``-`` is standard input)."""
    kind = format_for(path, fmt)
    if str(path) == "-":
        yield from iter_records(sys.stdin.buffer, kind)
        return
    with path.open("rb") as stream:
        yield from iter_records(stream, kind)


def iter_records(stream: BinaryIO | Iterable[bytes], fmt: str) -> Iterator[Item]:
    """Same as ``read_records`` over an open binary stream (or any iterable of byte lines)."""
    lines = _numbered_lines(stream)
    if fmt == "csv":
        return _csv_records(lines)
    if fmt == "jsonl":
        return _jsonl_records(lines)
    raise ValueError(f"unknown format {fmt!r}: use csv or jsonl")


def _numbered_lines(stream: Iterable[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, content without line ending)``; ``None`` content for a blank line.

    Blank lines at the very end of the file carry no record and are dropped.
    """
    blanks: list[int] = []
    for number, raw in enumerate(stream, start=1):
        if number == 1:
            raw = raw.removeprefix(_BOM)
        if not raw.strip():
            blanks.append(number)
            continue
        for blank in blanks:
            yield blank, None
        blanks.clear()
        yield number, raw.rstrip(b"\r\n")


def _blank(index: int, row: int) -> FieldError:
    return FieldError(index, "record", "blank line", row)


# --- JSON Lines -------------------------------------------------------------------------------


def _jsonl_records(lines: Iterator[tuple[int, bytes | None]]) -> Iterator[Item]:
    for index, (row, raw) in enumerate(lines):
        yield row, _blank(index, row) if raw is None else _json_line(raw, index, row)


def _json_line(raw: bytes, index: int, row: int) -> dict[str, Any] | FieldError:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return FieldError(index, _json_bad_field(raw), _NOT_UTF8, row)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return FieldError(index, "record", f"not valid JSON: {exc.msg} (column {exc.colno})", row)
    if not isinstance(value, dict):
        return FieldError(index, "record", "must be a JSON object of LiveVox fields", row)
    return value


def _json_bad_field(raw: bytes) -> str:
    """The field whose value holds the undecodable byte, or ``record`` when that can't be told."""
    try:
        value = json.loads(raw.decode("utf-8", "surrogateescape"))
    except json.JSONDecodeError:
        return "record"
    if isinstance(value, dict):
        for key, item in value.items():
            if _has_surrogate(key):
                return "record"
            if _has_surrogate(json.dumps(item, ensure_ascii=False)):
                return str(key)
    return "record"


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


# --- CSV --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    """Column ``i`` of the file feeds LiveVox field ``columns[i]``; ``None`` drops the column."""

    row: int
    columns: tuple[str | None, ...]


def _csv_records(lines: Iterator[tuple[int, bytes | None]]) -> Iterator[Item]:
    header: _Header | None = None
    index = 0
    for row, raw in lines:
        if header is None:
            if raw is None:
                continue  # blank lines before the header hold no record
            header, problems = _parse_header(raw, row)
            yield from ((row, problem) for problem in problems)
            continue
        yield row, _blank(index, row) if raw is None else _csv_line(raw, header, index, row)
        index += 1


def _split(raw: bytes) -> tuple[list[str], bool]:
    """The cells of one CSV line, and whether the line held bytes that are not UTF-8."""
    try:
        text, bad = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, bad = raw.decode("utf-8", "surrogateescape"), True
    return next(csv.reader([text], strict=True), []), bad


def _csv_problem(exc: csv.Error) -> str:
    if "unexpected end of data" in str(exc):
        return "has an unclosed quote (each record must fit on one line)"
    return f"is not valid CSV: {exc}"


def _parse_header(raw: bytes, row: int) -> tuple[_Header, list[FieldError]]:
    try:
        cells, _ = _split(raw)
    except csv.Error as exc:
        problem = f"{_csv_problem(exc)}; every column is ignored"
        return _Header(row, ()), [FieldError(FILE_LEVEL, "header", problem, row)]
    names = [cell.strip() for cell in cells]
    columns: list[str | None] = []
    problems: list[FieldError] = []
    for number, name in enumerate(names, start=1):
        why = _column_problem(name, columns)
        columns.append(name if why is None else None)
        if why is not None:
            problems.append(FieldError(FILE_LEVEL, _column_label(name, number), why, row))
    if names and not any(columns):
        problems.append(
            FieldError(
                FILE_LEVEL,
                "header",
                "the first line must name LiveVox fields (phone1, account, firstName, ...)",
                row,
            )
        )
    return _Header(row, tuple(columns)), problems


def _column_problem(name: str, seen: list[str | None]) -> str | None:
    ignored = "; the column is ignored"
    if _has_surrogate(name):
        return _NOT_UTF8 + ignored
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


def _csv_line(raw: bytes, header: _Header, index: int, row: int) -> dict[str, Any] | FieldError:
    try:
        cells, bad_bytes = _split(raw)
    except csv.Error as exc:
        return FieldError(index, "record", _csv_problem(exc), row)
    width = len(header.columns)
    if len(cells) > width:
        return FieldError(index, "record", f"has {len(cells)} cells, the header has {width}", row)
    record: dict[str, Any] = {}
    for name, cell in zip(header.columns, cells, strict=False):
        if name is None:
            continue
        if bad_bytes and _has_surrogate(cell):
            return FieldError(index, name, _NOT_UTF8, row)
        if cell.strip():
            record[name] = cell
    return record
