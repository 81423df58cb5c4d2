"""The HTTP intake's error answers: every failure is a JSON answer that can always be encoded,
and none carries internals.

Bad values are 4xx naming the field (``InvalidValue``: 422; a phone budget: 413; too many
targets: 429 with Retry-After); FastAPI's own validation errors are answered without echoing the
input; Redis or PostgreSQL unreachable is 503. A database error that validation missed is the
net, not the fix: 422 for a value the database could not take (DataError), else 500, logged by
class and route only (never its message: it may hold the values searched for). Anything else
unexpected is a JSON 500 logged by class and code location.
"""

from __future__ import annotations

import logging
import traceback

import redis
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, OperationalError, StatementError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appendq.errors import (
    InvalidValue,
    PhoneBudgetExceeded,
    TooManyTargets,
    ValidationBudgetExceeded,
)
from appendq.http.refused import Refused
from appendq.http.validation import SafeJSONResponse

#: The intake's logger (``appendq.http``): log filters select on it.
log = logging.getLogger("appendq.http")


def install_handlers(app: FastAPI) -> None:
    """Every error answer of the intake app (module docstring)."""
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(InvalidValue, _invalid)
    app.add_exception_handler(TooManyTargets, _too_many_targets)
    app.add_exception_handler(PhoneBudgetExceeded, _phone_budget)
    app.add_exception_handler(ValidationBudgetExceeded, _phone_budget)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    for unavailable in (redis.ConnectionError, redis.TimeoutError, OperationalError):
        app.add_exception_handler(unavailable, _unavailable)
    app.add_exception_handler(StatementError, _database_error)
    app.add_middleware(LastResort)


async def _refused(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return SafeJSONResponse(exc.body(), exc.status, exc.headers)


async def _invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidValue)
    return SafeJSONResponse({"detail": str(exc), "field": exc.field}, 422)


async def _too_many_targets(request: Request, exc: Exception) -> Response:
    """Targets free up as drains empty them: come back later (not a fault of the request)."""
    assert isinstance(exc, TooManyTargets)
    wait = str(max(1, round(request.app.state.deps.settings.drain_interval_s)))
    return SafeJSONResponse({"detail": str(exc), "field": exc.field}, 429, {"Retry-After": wait})


async def _phone_budget(_: Request, exc: Exception) -> Response:
    return SafeJSONResponse({"detail": str(exc), "field": "records"}, 413)


async def _request_invalid(_: Request, exc: Exception) -> Response:
    """FastAPI's validation errors without the ``input`` they would echo (it may be personal
    data, or text that cannot be encoded)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e["type"]}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    field = ".".join(first["loc"][1:]) or None
    return SafeJSONResponse({"detail": errors, "field": field}, 422)


async def _database_error(request: Request, exc: Exception) -> Response:
    """A database error that validation missed (the cause is fixed where it is found; this is the
    net): 422 for a value the database could not take, else 500; nothing of its message."""
    assert isinstance(exc, StatementError)
    cause = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
    log.error(
        "request failed in the database: %s (%s) on %s %s",
        type(exc).__name__,
        cause,
        request.method,
        request.url.path,
        extra={"error": type(exc).__name__, "cause": cause, "path": request.url.path},
    )
    if isinstance(exc, DataError):
        return SafeJSONResponse(
            {"detail": f"a value in this request cannot be stored or searched ({cause})"}, 422
        )
    return SafeJSONResponse({"detail": f"internal error ({type(exc).__name__})"}, 500)


class LastResort:
    """Any other unexpected error: a JSON 500, logged by class and code location only (its
    message may hold request data). A plain ASGI middleware, inside Starlette's own error
    middleware, so nothing reaches the server's traceback log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f"{frame[0].filename}:{frame[0].lineno}" if frame else "?"
            path = str(scope.get("path", ""))
            log.error(
                "request failed: %s at %s on %s %s",
                type(exc).__name__,
                where,
                scope.get("method", ""),
                path,
                extra={"error": type(exc).__name__, "where": where, "path": path},
            )
            if started:  # too late for an answer of our own
                return
            answer = SafeJSONResponse({"detail": f"internal error ({type(exc).__name__})"}, 500)
            await answer(scope, receive, send)


async def _unavailable(_: Request, exc: Exception) -> Response:
    log.warning("request failed, storage unavailable: %s", type(exc).__name__)
    return SafeJSONResponse(
        {"detail": f"storage unavailable ({type(exc).__name__}); nothing was queued"},
        503,
        {"Retry-After": "5"},
    )
