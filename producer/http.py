"""The HTTP intake: ``POST /v1/leads`` into the Redis queue, and the ops endpoints (audit, retry,
status, metrics, health) over the same plain functions as the CLI.

``create_app(settings)`` builds the FastAPI app; the Runtime and the Producer are built in its
lifespan and closed at shutdown, nothing at import time. Handlers only pick their dependencies and
call the plain functions below (``authenticate``, ``parse_submission``, ``Intake.submit``, ...),
which raise ``Refused`` for every answer that is not a success.

Idempotency (``Idempotency-Key``): per token (a hash of it) and key, one Redis string
(``Keys.idempotency``): ``pending`` while the first request runs (SET NX), then the receipt and a
hash of the body for a day. A concurrent request with the key gets 409; a later one the first
receipt with ``Idempotent-Replayed: true``; the key with another body gets 422.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from appendq import audit, operator
from appendq.db.models import BatchStatus
from appendq.errors import ConfigError
from appendq.keys import Keys
from appendq.metrics import registry_for
from appendq.operator import RetryFilter
from appendq.records import LeadRecord
from appendq.runtime import Runtime
from appendq.settings import LIVEVOX_BATCH_LIMIT, Settings
from appendq.status import collect
from producer.api import Producer, connect, parse_target

log = logging.getLogger(__name__)

MAX_RECORDS = LIVEVOX_BATCH_LIMIT
MAX_IDEMPOTENCY_KEY = 200
IDEMPOTENCY_TTL_S = 86_400
#: A ``pending`` marker outlives any request (10,000 records take well under a second) but not a
#: day: should the intake die mid-request, the client can retry with the same key after this.
PENDING_TTL_S = 600
PENDING = b"pending"
RETRY_AFTER_CAP_S = 300
_TARGET_KINDS = ("service", "campaign")


class Refused(Exception):
    """Any answer but success: HTTP status, a message for the client, extra headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """Who called: ``actor`` for the audit (``api:`` + a hash prefix, never the token) and
    ``scope``, the full hash, which keeps one caller's Idempotency-Keys apart from another's."""

    actor: str
    scope: str


ANONYMOUS = Caller("api:anonymous", "anonymous")


def authenticate(tokens: Sequence[bytes], authorization: str | None) -> Caller:
    """The caller behind ``Authorization: Bearer <token>``; every token is compared, each in
    constant time. With no tokens configured (``--insecure-no-auth``) everyone is anonymous."""
    if not tokens:
        return ANONYMOUS
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Refused(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    candidate = given.strip().encode()
    found: bytes | None = None
    for token in tokens:
        if hmac.compare_digest(candidate, token):
            found = token
    if found is None:
        raise Refused(401, "invalid token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    digest = hashlib.sha256(found).hexdigest()
    return Caller(f"api:{digest[:8]}", digest)


def parse_submission(raw: bytes) -> tuple[str, list[Any]]:
    """``{"service": ID | "campaign": ID, "records": [...]}`` -> (target, records).

    The records themselves are validated one by one by the Producer; here only the shape.
    """
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Refused(422, 'body must be a JSON object: {"service": ID, "records": [...]}')
    unknown = sorted(set(body) - {"records", *_TARGET_KINDS})
    if unknown:
        raise Refused(422, f"unknown fields {unknown}: expected service or campaign, and records")
    kinds = [k for k in _TARGET_KINDS if k in body]
    if len(kinds) != 1:
        raise Refused(422, "give exactly one of service and campaign")
    ident = body[kinds[0]]
    if isinstance(ident, bool) or not isinstance(ident, int) or ident <= 0:
        raise Refused(422, f"{kinds[0]} must be a positive integer")
    records = body.get("records")
    if not isinstance(records, list):
        raise Refused(422, "records must be a list of LiveVox records")
    if len(records) > MAX_RECORDS:
        raise Refused(
            422, f"{len(records):,} records: at most {MAX_RECORDS:,} per request, split it"
        )
    return f"{kinds[0]}:{ident}", records


class Idempotency:
    """The ``Idempotency-Key`` store (see the module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def slot(self, caller: Caller, key: str) -> str:
        if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
            raise Refused(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.keys.idempotency(f"{caller.scope[:16]}:{digest}")

    def begin(self, slot: str, body_hash: str) -> dict[str, Any] | None:
        """Take the key (None), or return the receipt of the request that took it first."""
        for _ in range(3):  # the key may expire or be released between SET NX and GET
            if self.redis.set(slot, PENDING, nx=True, ex=PENDING_TTL_S):
                return None
            stored = self.redis.get(slot)
            if stored == PENDING:
                raise Refused(
                    409, "a request with this Idempotency-Key is in progress", {"Retry-After": "1"}
                )
            if stored is not None:
                saved = json.loads(stored)
                if saved["body_sha256"] != body_hash:
                    raise Refused(422, "this Idempotency-Key was used with a different body")
                receipt: dict[str, Any] = saved["receipt"]
                return receipt
        raise Refused(409, "a request with this Idempotency-Key is in progress")

    def finish(self, slot: str, body_hash: str, receipt: dict[str, Any]) -> None:
        saved = json.dumps({"body_sha256": body_hash, "receipt": receipt})
        self.redis.set(slot, saved, ex=IDEMPOTENCY_TTL_S)

    def release(self, slot: str) -> None:
        self.redis.delete(slot)


def queued_depth(client: redis.Redis, keys: Keys) -> int:
    """Records waiting in Redis over all targets (queued + in flight): one round trip."""
    targets = client.smembers(keys.targets)
    if not targets:
        return 0
    with client.pipeline(transaction=False) as pipe:
        for raw in targets:
            target = raw.decode() if isinstance(raw, bytes) else str(raw)
            pipe.llen(keys.queue(target))
            pipe.llen(keys.inflight(target))
        return sum(int(n) for n in pipe.execute())


def retry_after_s(settings: Settings, depth: int) -> int:
    """Seconds until enough drain ticks (one batch each) bring the backlog under the limit."""
    excess = depth - settings.intake_max_depth
    ticks = max(1, math.ceil(excess / settings.batch_max))
    return min(RETRY_AFTER_CAP_S, math.ceil(settings.drain_interval_s * ticks))


@dataclass
class Intake:
    """``POST /v1/leads`` as a plain function of its dependencies."""

    settings: Settings
    producer: Producer
    redis: redis.Redis
    keys: Keys

    def submit(self, caller: Caller, raw: bytes, idempotency_key: str | None) -> Reply:
        started = time.perf_counter()
        target, records = parse_submission(raw)
        body_hash = hashlib.sha256(raw).hexdigest()
        idem = Idempotency(self.redis, self.keys)
        slot = idem.slot(caller, idempotency_key) if idempotency_key is not None else None
        if slot is not None:
            replay = idem.begin(slot, body_hash)
            if replay is not None:
                return Reply(202, replay, {"Idempotent-Replayed": "true"})
        try:
            self._check_backlog()
            receipt = self.producer.enqueue(target, records).to_dict()
        except BaseException:
            if slot is not None:
                idem.release(slot)
            raise
        if slot is not None:
            idem.finish(slot, body_hash, receipt)
        _log_submission(caller, receipt, time.perf_counter() - started)
        return Reply(202, receipt)

    def _check_backlog(self) -> None:
        depth = queued_depth(self.redis, self.keys)
        if depth > self.settings.intake_max_depth:
            wait = retry_after_s(self.settings, depth)
            raise Refused(
                503,
                f"{depth:,} records already queued (limit {self.settings.intake_max_depth:,}): "
                f"retry in {wait} s",
                {"Retry-After": str(wait)},
            )


def _log_submission(caller: Caller, receipt: dict[str, Any], elapsed_s: float) -> None:
    duplicates = receipt.get("duplicate", len(receipt.get("duplicates") or ()))
    log.info(
        "intake: %s accepted %d, rejected %d, duplicates %d in %.0f ms (%s)",
        receipt["target"],
        receipt["accepted"],
        receipt["rejected"],
        duplicates,
        elapsed_s * 1000,
        caller.actor,
        extra={
            "target": receipt["target"],
            "accepted": receipt["accepted"],
            "rejected": receipt["rejected"],
            "duplicates": duplicates,
            "elapsed_ms": round(elapsed_s * 1000, 1),
            "actor": caller.actor,
        },
    )


def lookup_record(rt: Runtime, record_id: str) -> dict[str, Any]:
    """``GET /v1/leads/{id}``: the record's status and timeline from the audit."""
    try:
        uuid.UUID(record_id)
    except ValueError:
        raise Refused(404, f"{record_id!r} is not a record id") from None
    with rt.sessions() as session:
        found = audit.find_records(session, record_id=record_id, limit=1)
    if not found:
        raise Refused(
            404,
            f"record {record_id}: not yet batched or unknown (a queued record reaches the audit "
            "when a drain claims it)",
        )
    return found[0].to_dict()


def search_audit(rt: Runtime, **where: Any) -> list[dict[str, Any]]:
    """``GET /v1/audit``: records matching every filter given (at least one)."""
    filters = {k: v for k, v in where.items() if v is not None and k not in ("limit", "region")}
    if not filters:
        raise Refused(422, "give phone, account, batch or record")
    with rt.sessions() as session:
        try:
            found = audit.find_records(session, **where)
        except ValueError as exc:  # a phone or record id that cannot match anything
            raise Refused(422, str(exc)) from None
    return [r.to_dict() for r in found]


def retry_filter(
    *,
    batch: int | None,
    statuses: Sequence[str],
    target: str | None,
    since: datetime | None,
    until: datetime | None,
) -> RetryFilter:
    """A ``RetryFilter`` from request parameters; 422 on an unknown or final status or target."""
    names = [s.strip() for text in statuses for s in text.split(",") if s.strip()]
    wrong = [s for s in names if s not in {str(r) for r in operator.RETRYABLE}]
    if wrong:
        allowed = ", ".join(str(r) for r in operator.RETRYABLE)
        raise Refused(422, f"status {wrong}: only {allowed} batches can be retried")
    try:
        where = str(parse_target(target)) if target is not None else None
    except ValueError as exc:
        raise Refused(422, str(exc)) from None
    return RetryFilter(
        batch_id=batch,
        statuses=tuple(BatchStatus(s) for s in names),
        target=where,
        since=_aware(since),
        until=_aware(until),
    )


def _aware(moment: datetime | None) -> datetime | None:
    """Times without a zone are UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def retry(rt: Runtime, where: RetryFilter, *, reason: str, actor: str) -> dict[str, Any]:
    """``POST /v1/batches/retry``: every matching batch back to ready, with reason and actor."""
    if where == RetryFilter():
        raise Refused(422, "give batch, status, target, since or until (all of them: status)")
    with rt.sessions() as session:
        try:
            moved = operator.retry_batches(session, where, reason=reason, actor=actor)
        except ValueError as exc:
            raise Refused(422, str(exc)) from None
        session.commit()
    return {"count": len(moved), "actor": actor, "batches": [m.to_dict() for m in moved]}


def preview(rt: Runtime, where: RetryFilter) -> dict[str, Any]:
    with rt.sessions() as session:
        found = operator.preview_retry(session, where)
    return {"count": len(found), "batches": [b.to_dict() for b in found]}


def health(rt: Runtime) -> dict[str, str]:
    """``ok`` or the error's name, for Redis and PostgreSQL."""
    checks = {"redis": "ok", "postgres": "ok"}
    try:
        rt.redis.ping()
    except (redis.RedisError, OSError) as exc:
        checks["redis"] = type(exc).__name__
    try:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        checks["postgres"] = type(exc).__name__
    return checks


# --- the FastAPI edge: dependencies, documentation models, routes --------------------------------


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
    limit = _deps(request).settings.intake_max_body_bytes
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


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch: int | None = None
    status: list[str] = Field(default_factory=list)
    target: str | int | None = Field(None, examples=["service:1001"])
    since: datetime | None = None
    until: datetime | None = None
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] = Field(
        description="why (recorded in the audit)"
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


def post_leads(
    deps: DepsDep,
    caller: CallerDep,
    raw: Annotated[bytes, Depends(_body)],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Validate and queue up to 10,000 records; bad records get per-record errors, good ones
    go in. Same Idempotency-Key within a day: the first receipt again, nothing queued."""
    reply = deps.intake.submit(caller, raw, idempotency_key)
    return JSONResponse(reply.body, reply.status, reply.headers)


def get_lead(record_id: str, deps: DepsDep, _: CallerDep) -> dict[str, Any]:
    """A record's status and timeline (once a drain has claimed it)."""
    return lookup_record(deps.rt, record_id)


def get_audit(
    deps: DepsDep,
    _: CallerDep,
    phone: str | None = None,
    account: str | None = None,
    batch: int | None = None,
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
    since: datetime | None = None,
    until: datetime | None = None,
    batch: int | None = None,
) -> dict[str, Any]:
    """The batches a retry with these filters would send again; changes nothing."""
    where = retry_filter(
        batch=batch, statuses=status or [], target=target, since=since, until=until
    )
    return preview(deps.rt, where)


def post_retry(deps: DepsDep, caller: CallerDep, body: RetryRequest) -> dict[str, Any]:
    """Send matching batches again; the reason and the caller go into the audit."""
    where = retry_filter(
        batch=body.batch,
        statuses=body.status,
        target=None if body.target is None else str(body.target),
        since=body.since,
        until=body.until,
    )
    return retry(deps.rt, where, reason=body.reason, actor=caller.actor)


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
        responses={202: {"model": ReceiptDoc}, **_errors(400, 401, 409, 413, 422, 503)},
        openapi_extra=_leads_body(),
        tags=intake,
    )(post_leads)
    app.get("/v1/leads/{record_id}", responses=_errors(401, 404), tags=intake)(get_lead)
    app.get("/v1/audit", responses=_errors(401, 422), tags=ops)(get_audit)
    app.get("/v1/batches/retry-preview", responses=_errors(401, 422), tags=ops)(get_retry_preview)
    app.post("/v1/batches/retry", responses=_errors(401, 422), tags=ops)(post_retry)
    app.get("/v1/status", responses=_errors(401), tags=ops)(get_status)
    app.get("/metrics", response_class=Response, tags=monitoring)(get_metrics)
    app.get("/healthz", tags=monitoring)(get_healthz)


def create_app(settings: Settings, *, allow_no_auth: bool = False) -> FastAPI:
    """The intake app. Refuses to build without API tokens unless ``allow_no_auth`` (a local
    demo: anyone who reaches the port can enqueue and retry)."""
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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime.build(settings)
        producer = connect(settings)
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
    )
    app.add_exception_handler(Refused, _refused)
    for unavailable in (redis.ConnectionError, redis.TimeoutError, OperationalError):
        app.add_exception_handler(unavailable, _unavailable)
    _routes(app)
    return app


async def _refused(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return JSONResponse({"detail": exc.detail}, exc.status, exc.headers)


async def _unavailable(_: Request, exc: Exception) -> Response:
    log.warning("request failed, storage unavailable: %s", type(exc).__name__)
    return JSONResponse(
        {"detail": f"storage unavailable ({type(exc).__name__}); nothing was queued"},
        503,
        {"Retry-After": "5"},
    )
