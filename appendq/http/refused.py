"""``Refused``: every answer of the HTTP API that is not a success, raised by its plain functions
and answered as JSON by ``appendq.http.errors``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request


class Refused(Exception):
    """Any answer but success: HTTP status, a message for the client, extra headers; ``field``
    names the parameter or body field at fault, ``extra`` adds fields to the JSON body."""

    def __init__(
        self,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        *,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.field = field
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        field = {"field": self.field} if self.field else {}
        return {"detail": self.detail, **field, **self.extra}


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) past ``limit`` by Content-Length and by the bytes read."""
    too_big = Refused(413, f"body larger than {limit:,} bytes: send fewer records per request")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)
