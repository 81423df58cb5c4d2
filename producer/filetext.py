"""Lead files as text: the encoding told by the byte order mark, and lines of bounded length.

``open_text`` looks at the first bytes of a binary stream: a UTF-8, UTF-16 or UTF-32 byte order
mark picks the codec (none means UTF-8); a spreadsheet workbook, or NUL bytes where text should
start (UTF-16 without a byte order mark, a binary file), refuse the file (``FileRefused``). The text
is decoded incrementally, so nothing holds the whole file. Bytes that are not valid in the codec
become lone surrogates (U+DC00 + byte), so the row holding them can be refused by name while the
rest of the file is read (``has_bad_bytes``).

``Lines`` gives the physical lines of that text one at a time, with their line ending (LF, CRLF
or a lone CR), numbered from 1. A line longer than ``max_bytes`` is never held whole: it is read
past in pieces and reported as ``LineTooLong`` with its number and how many double quotes it held
(the CSV reader needs that to know whether the next line starts a new row).
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO, cast

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: Default of APPENDQ_IMPORT_MAX_LINE_BYTES: the longest line (or CSV row) a lead file may hold.
MAX_LINE_BYTES = 1024 * 1024

_HANDLER = "appendq.bad-bytes"
_BAD_BYTE = re.compile("[\udc00-\udcff]")
_HEAD = 4
_SKIP_CHARS = 64 * 1024
_BUFFER = 64 * 1024

#: Byte order marks, longest first (a UTF-32 LE mark starts like a UTF-16 LE one).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32", "UTF-32"),
    (b"\x00\x00\xfe\xff", "utf-32", "UTF-32"),
    (b"\xef\xbb\xbf", "utf-8-sig", "UTF-8"),
    (b"\xff\xfe", "utf-16", "UTF-16"),
    (b"\xfe\xff", "utf-16", "UTF-16"),
)
_SIGNATURES = (
    (b"PK\x03\x04", "is a ZIP archive (an Excel .xlsx workbook?)"),
    (b"\xd0\xcf\x11\xe0", "is an Excel 97-2003 workbook (.xls)"),
)
_SAVE_AS = ", not a text file: save it as CSV UTF-8 (or JSON Lines) and import that"


class Readable(Protocol):
    """What the reader needs of a binary stream (a file, standard input, a wrapper)."""

    def read(self, size: int = -1, /) -> bytes: ...


class FileRefused(Exception):
    """The file as a whole cannot be read as text; the message says why and what to do."""


@dataclass(frozen=True)
class LineTooLong(Exception):
    """Physical line ``number`` is longer than the limit; it has been read past, to its end.

    ``quotes`` counts the double quotes it held (an odd count leaves a CSV quote open)."""

    number: int
    quotes: int


def has_bad_bytes(text: str) -> bool:
    """Whether ``text`` holds bytes that were not valid in the file's encoding."""
    return not text.isascii() and _BAD_BYTE.search(text) is not None


def holds_bad_bytes(value: object) -> bool:
    """Whether a parsed JSON value holds a string (key or value, at any depth) with bad bytes."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_bad_bytes(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def utf8_size(text: str) -> int:
    """Size of ``text`` in UTF-8 bytes (a bad byte counts as the 3 of its stand-in)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def open_text(stream: Readable | Iterable[bytes]) -> tuple[TextIO, str]:
    """The decoded text of ``stream`` and the name of its encoding (``UTF-8``, ``UTF-16``, ...).

    Raises ``FileRefused`` for a workbook or a file that does not start like text."""
    source = _Source(stream)
    head = source.peek(_HEAD)
    codec, label = "utf-8", "UTF-8"
    for bom, name, text_label in _BOMS:
        if head.startswith(bom):
            codec, label = name, text_label
            break
    else:
        for signature, what in _SIGNATURES:
            if head.startswith(signature):
                raise FileRefused(what + _SAVE_AS)
        if b"\x00" in head:
            raise FileRefused(
                "has NUL bytes where text should start: UTF-16 or UTF-32 without a byte order "
                "mark, or not a text file; save it as UTF-8 (or UTF-16 with its byte order mark)"
            )
    _register_handler()
    buffered = io.BufferedReader(source, _BUFFER)
    return io.TextIOWrapper(buffered, encoding=codec, errors=_HANDLER, newline=""), label


class Lines:
    """Physical lines of ``text`` at most ``max_bytes`` long (line ending not counted)."""

    def __init__(self, text: TextIO, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.text = text
        self.max_bytes = max_bytes
        #: Number of the last line handed out (or read past).
        self.number = 0
        self._pending = ""
        self._limit = max_bytes + 2  # room for "\r\n" after a line of the largest size

    def next(self) -> str | None:
        """The next line with its ending, ``None`` at the end; ``LineTooLong`` past the limit."""
        piece = self._read(self._limit)
        if not piece:
            return None
        self.number += 1
        ended = _ends_line(piece)
        if not ended and len(piece) < self._limit:
            ended = True  # the last line, without a line ending
        if ended and utf8_size(piece.rstrip("\r\n")) <= self.max_bytes:
            return piece
        quotes = piece.count('"')
        if not ended:
            quotes += self._skip_rest()
        raise LineTooLong(self.number, quotes)

    def _read(self, limit: int) -> str:
        """Up to ``limit`` characters of a line (one more for a CRLF ending)."""
        piece, self._pending = self._pending, ""
        if not _ends_line(piece) and len(piece) < limit:
            piece += self.text.readline(limit - len(piece))
        if piece.endswith("\r"):  # a CRLF may have been cut in two by the limit: look ahead
            after = self.text.readline(1)
            if after == "\n":
                piece += after
            else:
                self._pending = after
        return piece

    def _skip_rest(self) -> int:
        """Read past the rest of a line cut at the limit; the double quotes it held."""
        quotes = 0
        while piece := self._read(_SKIP_CHARS):
            quotes += piece.count('"')
            if _ends_line(piece):
                break
        return quotes


def _ends_line(text: str) -> bool:
    return text.endswith(("\n", "\r"))


class _Source(io.RawIOBase):
    """The bytes of a binary stream (or an iterable of byte strings), readable ahead of time.

    Reads with ``read1`` where the stream has it, so that a slow pipe is processed as it comes.
    Never closes the stream it reads (standard input stays the caller's)."""

    def __init__(self, stream: Readable | Iterable[bytes]) -> None:
        super().__init__()
        self._stream: Readable | None = None
        self._chunks: Iterator[bytes] | None = None
        if hasattr(stream, "read"):
            self._stream = cast(Readable, stream)
        else:
            self._chunks = iter(stream)
        self._ahead = b""

    def readable(self) -> bool:
        return True

    def peek(self, size: int) -> bytes:
        """Up to ``size`` first bytes (fewer only at the end), left to be read again."""
        while len(self._ahead) < size:
            more = self._fetch(size - len(self._ahead))
            if not more:
                break
            self._ahead += more
        return self._ahead[:size]

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._ahead or self._fetch(len(view))
        taken = data[: len(view)]
        self._ahead = data[len(view) :]
        view[: len(taken)] = taken
        return len(taken)

    def _fetch(self, size: int) -> bytes:
        if self._chunks is not None:
            return next((chunk for chunk in self._chunks if chunk), b"")
        assert self._stream is not None
        read1 = getattr(self._stream, "read1", None)
        data = read1(size) if read1 is not None else self._stream.read(size)
        return bytes(data or b"")


def _escape_bad_bytes(exc: UnicodeError) -> tuple[str, int]:
    """Decode error handler: each bad byte becomes U+DC00 + byte (any byte, unlike
    ``surrogateescape``, so that it also works for UTF-16 and UTF-32)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), exc.end


def _register_handler() -> None:
    try:
        codecs.lookup_error(_HANDLER)
    except LookupError:
        codecs.register_error(_HANDLER, _escape_bad_bytes)
