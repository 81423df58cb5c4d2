"""``Refused``: every answer of the HTTP API that is not a success, raised by its plain functions
and answered as JSON by ``appendq.http.errors``."""

from __future__ import annotations

from typing import Any


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
