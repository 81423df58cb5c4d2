"""The HTTP intake: ``POST /v1/leads`` into the Redis queue, and the ops endpoints (audit, retry,
status, metrics, health) over the same plain functions as the CLI.

``create_app(settings)`` builds the FastAPI app; the Runtime and the Producer are built in its
lifespan and closed at shutdown, nothing at import time. Handlers only pick their dependencies and
call the plain functions: ``appendq.http.intake`` (``authenticate``, ``Intake.submit``, ...) and
``appendq.http.ops`` (lookup, audit search, retry, health), which raise ``Refused`` for every
answer that is not a success. Idempotency is described in ``appendq.http.intake``; what a body may
be
(UTF-8, depth, duplicate keys) in ``appendq.http.validation``.

No request ends in a 500 with internals: bad values are 4xx naming the field (``InvalidValue``:
422; a phone budget: 413; too many targets: 429), FastAPI's own validation errors are answered
without echoing the input, and a database error that validation missed is a JSON error logged by
class and route only (never its message: it may hold the values searched for): see
``appendq.http.errors``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appendq.errors import ConfigError
from appendq.http.errors import install_handlers
from appendq.http.intake import MAX_RECORDS, Caller, Intake, Refused, authenticate
from appendq.http.ops import health, lookup_record, preview, retry, retry_filter, search_audit
from appendq.http.validation import (
    MAX_SMALL_BODY_BYTES,
    BodyError,
    SafeJSONResponse,
    ambiguous_keys,
    loads,
)
from appendq.leads import LeadRecord
from appendq.metrics import registry_for
from appendq.ops.retry import REASON_MAX
from appendq.ops.status import collect
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.target import ID_MAX
from producer.api import Producer, connect

log = logging.getLogger(__name__)


@dataclass
class Deps:
    """What the handlers use; built in the lifespan, one per app."""

    settings: Settings
    tokens: list[bytes]
    rt: Runtime
    producer: Producer
    registry: CollectorRegistry

    @property
    def intake(self) -> Intake:
        return Intake(self.settings, self.producer, self.rt.redis, self.rt.keys)


def _deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


_BEARER = HTTPBearer(auto_error=False, description="One of APPENDQ_API_TOKENS.")


async def _caller(request: Request, _: Annotated[object, Depends(_BEARER)]) -> Caller:
    return authenticate(_deps(request).tokens, request.headers.get("authorization"))


async def _body(request: Request, _: Annotated[Caller, Depends(_caller)]) -> bytes:
    """The raw body, refused past the limit by Content-Length and by the bytes actually read."""
    return await _read(request, _deps(request).settings.intake_max_body_bytes)


async def _small_body(request: Request, _: Annotated[Caller, Depends(_caller)]) -> bytes:
    return await _read(request, MAX_SMALL_BODY_BYTES)


async def _read(request: Request, limit: int) -> bytes:
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


DepsDep = Annotated[Deps, Depends(_deps)]
CallerDep = Annotated[Caller, Depends(_caller)]


class FieldErrorDoc(BaseModel):
    index: int = Field(description="0-based position of the record in `records`")
    row: int | None = None
    field: str
    message: str


class ReceiptDoc(BaseModel):
    model_config = ConfigDict(extra="allow")
    target: str = Field(examples=["service:1001"])
    accepted: int
    rejected: int
    record_ids: list[str] = Field(description="one id per accepted record, in order")
    errors: list[FieldErrorDoc]
    duplicate: int = Field(0, description="records not sent: same phone1/account today")
    duplicates: list[dict[str, Any]] = Field(
        default_factory=list, description="index, record_id and duplicate_of of each"
    )


class ErrorDoc(BaseModel):
    detail: str
    field: str | None = Field(None, description="the parameter or body field at fault")


#: How ``since`` and ``until`` are read (``appendq.clock.in_zone``), as the CLI reads them.
_ZONE = "ISO 8601; without an offset, in APPENDQ_TIMEZONE"


class ExpectedBatch(BaseModel):
    """One batch as ``GET /v1/batches/retry-preview`` showed it."""

    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=1, le=ID_MAX)
    status: str = Field(max_length=16)
    version: int = Field(ge=0, le=2**31 - 1)


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch: int | None = Field(None, ge=1, le=ID_MAX)
    status: list[str] = Field(default_factory=list)
    target: str | int | None = Field(None, examples=["service:1001"])
    since: datetime | None = Field(None, description=f"created at or after ({_ZONE})")
    until: datetime | None = Field(None, description=f"created before ({_ZONE})")
    reason: str = Field(
        description=f"why (recorded in the audit): one line, 1 to {REASON_MAX} characters",
        min_length=1,
        max_length=REASON_MAX,
    )
    expect: list[ExpectedBatch] | None = Field(
        None,
        max_length=10_000,
        description="the batches as the preview showed them (id, status, version): only those "
        "still exactly so are moved. Without it, batches that may already be at LiveVox "
        "(in_doubt, operator_hold) are left alone: re-send them by naming them.",
    )


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorDoc} for code in codes}


def _leads_body() -> dict[str, Any]:
    target = {"type": "integer", "minimum": 1}
    schema = {
        "type": "object",
        "description": "Exactly one of service and campaign.",
        "properties": {
            "service": {**target, "description": "LiveVox service id (today's campaign)"},
            "campaign": {**target, "description": "a pinned LiveVox campaign id"},
            "records": {
                "type": "array",
                "maxItems": MAX_RECORDS,
                "items": LeadRecord.model_json_schema(),
            },
        },
        "required": ["records"],
        "additionalProperties": False,
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _retry_body() -> dict[str, Any]:
    schema = RetryRequest.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _retry_request(raw: bytes, content_type: str | None) -> RetryRequest:
    """The retry body, parsed with the intake's own checks (depth, UTF-8, duplicate keys)."""
    try:
        body = loads(raw, content_type)
    except BodyError as exc:
        raise Refused(exc.status, exc.detail) from None
    if isinstance(body, dict) and ambiguous_keys(body):
        field = ambiguous_keys(body)[0][:60]
        raise Refused(422, f"{field!r} is given more than once: ambiguous", field=field)
    try:
        return RetryRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise Refused(422, f"{field}: {first['msg']}", field=field) from None


def post_leads(
    deps: DepsDep,
    caller: CallerDep,
    raw: Annotated[bytes, Depends(_body)],
    idempotency_key: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Validate and queue up to 10,000 records; bad records get per-record errors, good ones
    go in. Same Idempotency-Key within a day: the first receipt again, nothing queued."""
    reply = deps.intake.submit(caller, raw, idempotency_key, content_type)
    return SafeJSONResponse(reply.body, reply.status, reply.headers)


def get_lead(record_id: str, deps: DepsDep, _: CallerDep) -> dict[str, Any]:
    """A record's status and timeline once a drain has batched it; before that, for a record
    queued through this intake: status ``queued``, target, queued_at, age_s, target_depth."""
    return lookup_record(deps.rt, record_id)


def get_audit(
    deps: DepsDep,
    _: CallerDep,
    phone: str | None = None,
    account: str | None = None,
    batch: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    record: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Records matching every filter given, with status and timeline (phones masked)."""
    return search_audit(
        deps.rt,
        phone=phone,
        account=account,
        batch_id=batch,
        record_id=record,
        region=deps.settings.default_region,
        limit=limit,
    )


def get_retry_preview(
    deps: DepsDep,
    _: CallerDep,
    status: Annotated[list[str] | None, Query()] = None,
    target: str | None = None,
    since: Annotated[datetime | None, Query(description=f"created at or after ({_ZONE})")] = None,
    until: Annotated[datetime | None, Query(description=f"created before ({_ZONE})")] = None,
    batch: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
) -> dict[str, Any]:
    """The batches a retry with these filters would send again; changes nothing."""
    where = retry_filter(
        batch=batch,
        statuses=status or [],
        target=target,
        since=since,
        until=until,
        tz=deps.settings.tz,
    )
    return preview(deps.rt, where)


def post_retry(
    deps: DepsDep,
    caller: CallerDep,
    raw: Annotated[bytes, Depends(_small_body)],
    content_type: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Send matching batches again; the reason and the caller go into the audit."""
    body = _retry_request(raw, content_type)
    where = retry_filter(
        batch=body.batch,
        statuses=body.status,
        target=None if body.target is None else str(body.target),
        since=body.since,
        until=body.until,
        tz=deps.settings.tz,
    )
    expect = None if body.expect is None else {e.id: (e.status, e.version) for e in body.expect}
    return retry(deps.rt, where, reason=body.reason, actor=caller.actor, expect=expect)


def get_status(deps: DepsDep, _: CallerDep) -> dict[str, Any]:
    """Queue depth and oldest age per target, hold reasons, rate budget, batches by status."""
    return collect(deps.rt)


def get_metrics(deps: DepsDep) -> Response:
    """Prometheus text, read from Redis and PostgreSQL at scrape time."""
    return Response(generate_latest(deps.registry), media_type=CONTENT_TYPE_LATEST)


def get_healthz(deps: DepsDep) -> JSONResponse:
    """200 when Redis and PostgreSQL answer, else 503 naming the one that did not."""
    checks = health(deps.rt)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(checks, 200 if ok else 503)


def _routes(app: FastAPI) -> None:
    intake: list[str | Enum] = ["intake"]
    ops: list[str | Enum] = ["operations"]
    monitoring: list[str | Enum] = ["monitoring"]
    app.post(
        "/v1/leads",
        status_code=202,
        responses={
            202: {"model": ReceiptDoc},
            **_errors(400, 401, 409, 413, 415, 422, 429, 503),
        },
        openapi_extra=_leads_body(),
        tags=intake,
    )(post_leads)
    app.get("/v1/leads/{record_id}", responses=_errors(401, 404), tags=intake)(get_lead)
    app.get("/v1/audit", responses=_errors(401, 422), tags=ops)(get_audit)
    app.get("/v1/batches/retry-preview", responses=_errors(401, 422), tags=ops)(get_retry_preview)
    app.post(
        "/v1/batches/retry",
        responses=_errors(400, 401, 413, 415, 422),
        openapi_extra=_retry_body(),
        tags=ops,
    )(post_retry)
    app.get("/v1/status", responses=_errors(401), tags=ops)(get_status)
    app.get("/metrics", response_class=Response, tags=monitoring)(get_metrics)
    app.get("/healthz", tags=monitoring)(get_healthz)


def create_app(settings: Settings, *, allow_no_auth: bool = False) -> FastAPI:
    """The intake app. Refuses to build without API tokens unless ``allow_no_auth`` (a local
    demo: anyone who reaches the port can enqueue and retry)."""
    tokens = _api_tokens(settings, allow_no_auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime.build(settings)
        producer = connect(settings, max_phones=settings.intake_max_phones)
        app.state.deps = Deps(settings, tokens, rt, producer, registry_for(rt))
        try:
            yield
        finally:
            producer.close()
            rt.close()

    app = FastAPI(
        title="appendq intake",
        summary="Queue leads for today's LiveVox campaign; audit and retry what happened.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    install_handlers(app)
    _routes(app)
    return app


def _api_tokens(settings: Settings, allow_no_auth: bool) -> list[bytes]:
    """The configured API tokens; with none, a ConfigError unless ``allow_no_auth``."""
    tokens = [t.get_secret_value().encode() for t in settings.api_tokens if t.get_secret_value()]
    if not tokens:
        if not allow_no_auth:
            raise ConfigError(
                "no API tokens: set APPENDQ_API_TOKENS (comma-separated) or, for a local "
                "demo only, pass --insecure-no-auth"
            )
        log.warning(
            "THE HTTP INTAKE RUNS WITHOUT AUTHENTICATION (--insecure-no-auth): anyone who can "
            "reach it can enqueue leads and retry batches. Never do this outside a local demo."
        )
    return tokens
