"""What the HTTP edge checks before anything else runs: the body's encoding, its nesting depth,
duplicate keys; query and body values bound for PostgreSQL; and JSON answers that can always be
encoded. Record contents are checked by ``appendq.leads`` (text rules, finite numbers, id
ranges); this module only makes sure nothing reaches those checks (or the database) that could
crash them instead.

Decisions (README, "HTTP intake: what a body may be"):

- **Encoding**: UTF-8 only (RFC 8259). A declared charset other than UTF-8 is 415; bytes that are
  not UTF-8 (UTF-16 included: ``json.loads`` would otherwise guess it) are 400. A UTF-8 byte order
  mark is ignored. A Content-Type other than JSON is 415; none at all is taken as JSON.
- **Depth**: at most ``MAX_DEPTH`` (32) nested arrays/objects, checked on the raw bytes before
  parsing (a record is depth 3: body, records, record). Deeper is 400, never a RecursionError.
- **Duplicate keys** are ambiguous (which one wins differs between parsers): in a record, that
  record is refused naming the field; in the body itself, the request is 422.
- **Numbers**: ``NaN``/``Infinity``/``1e400`` in a record field are refused per record by
  ``appendq.leads`` (not stored as "inf"); as service/campaign they are 422.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

MAX_DEPTH = 32
#: Search terms in query strings (account, phone, record) are short; refuse anything longer.
MAX_QUERY_TEXT = 200
#: A retry request is a few filters and a reason; anything bigger is refused unread.
MAX_SMALL_BODY_BYTES = 64 * 1024

#: A JSON string, or an unterminated one running to the end: every match attempt succeeds in one
#: linear scan, so stripping strings is O(n) whatever the body (no backtracking, no restarts).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PAIRS = {ord("]"): ord("["), ord("}"): ord("{")}
_BOM = b"\xef\xbb\xbf"


class BodyError(Exception):
    """A body refused as a whole: HTTP status and a message for the client."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Ambiguous:
    """The value of a key that appears more than once in one JSON object."""

    def __init__(self, key: str, times: int) -> None:
        self.key = key
        self.times = times

    def __repr__(self) -> str:
        return f"<{self.key!r} given {self.times} times>"


def check_content_type(content_type: str | None) -> None:
    """JSON, in UTF-8 if a charset is named; 415 otherwise. No Content-Type is taken as JSON."""
    if content_type is None or not content_type.strip():
        return
    media, *params = (part.strip() for part in content_type.split(";"))
    media = media.lower()
    if media not in ("application/json", "*/*") and not media.endswith("+json"):
        raise BodyError(415, f"Content-Type {media[:60]!r}: send application/json")
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise BodyError(415, f"charset {charset[:30]!r}: send the body as UTF-8 JSON")


def decode(raw: bytes) -> str:
    """The body as text: UTF-8 (a leading byte order mark dropped), else 400 saying why."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = ""
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw[:4]:
            hint = " (it looks like UTF-16 or UTF-32)"
        raise BodyError(
            400, f"body is not UTF-8{hint}: invalid byte at offset {exc.start}; send UTF-8 JSON"
        ) from None


def check_depth(raw: bytes, limit: int = MAX_DEPTH) -> None:
    """Refuse (400) a body whose arrays/objects nest deeper than ``limit``, before parsing it.

    Strings are cut out (brackets inside them do not count), then innermost ``[]``/``{}`` pairs
    are removed ``limit`` times, each pass at C speed; a body nested no deeper than ``limit`` is
    then empty. What is left is walked (it is short: no balanced pair survives in it) to tell a
    body too deep from one whose brackets do not match (left to the parser to report).
    """
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    stack: list[int] = []
    for char in brackets:
        if char in _PAIRS:
            if not stack or stack.pop() != _PAIRS[char]:
                return  # unbalanced: not JSON, json.loads says where
        else:
            stack.append(char)
            if len(stack) > limit:
                raise BodyError(400, f"body nests arrays/objects deeper than {limit} levels")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        counts: dict[str, int] = {}
        for key, _ in pairs:
            counts[key] = counts.get(key, 0) + 1
        for key, times in counts.items():
            if times > 1:
                obj[key] = Ambiguous(key, times)
    return obj


def loads(raw: bytes, content_type: str | None = None) -> Any:
    """Parse a JSON body after the checks above; BodyError for anything refused whole.

    A key given twice in one object gets an ``Ambiguous`` value (see ``ambiguous_fields``).
    """
    check_content_type(content_type)
    text = decode(raw)
    check_depth(raw)
    try:
        return json.loads(text, object_pairs_hook=_pairs)
    except RecursionError:  # cannot happen after check_depth; never a 500 if it did
        raise BodyError(400, f"body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise BodyError(400, f"body is not valid JSON: {str(exc)[:200]}") from None


def ambiguous_keys(obj: Mapping[str, Any]) -> list[str]:
    """Keys of ``obj`` given more than once."""
    return [key for key, value in obj.items() if isinstance(value, Ambiguous)]


def explain_ambiguous(records: list[Any], errors: list[dict[str, Any]]) -> None:
    """Say "given twice" in the receipt's errors about a record field that was duplicated (the
    record was refused by validation, which saw a value that is not text)."""
    where = {
        (index, key)
        for index, raw in enumerate(records)
        if isinstance(raw, Mapping)
        for key in ambiguous_keys(raw)
    }
    for error in errors:
        if (error.get("index"), error.get("field")) in where:
            error["message"] = "is given more than once in the record: ambiguous, send it once"


class SafeJSONResponse(JSONResponse):
    """A JSON answer that can always be encoded: non-ASCII is escaped (an unpaired surrogate
    echoed from the request would otherwise fail UTF-8 encoding: a 500)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":"), default=str).encode()
