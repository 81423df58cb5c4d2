"""The HTTP API: ``POST /v1/leads`` into the Redis queue, and the ops endpoints (a lead's lookup,
audit, retry, status, metrics, health) over the same plain functions as the CLI; and the
operator's console under ``/ui/`` (``appendq.console``).

``create_app(settings)`` builds the FastAPI app; the Runtime and the Producer are built in its
lifespan and closed at shutdown, nothing at import time. Handlers only pick their dependencies and
call the plain functions: ``appendq.http.intake`` (``Intake.submit``) and ``appendq.http.ops``
(lookup, audit search, retry, health), which raise ``Refused`` for every answer that is not a
success. Idempotency is described in ``appendq.http.intake``; what a body may be (UTF-8, depth,
duplicate keys) in ``appendq.http.validation``.

Who may call what: every route names its roles (``appendq.http.auth``: 401 without a known token,
403 for a role that may not), and the OpenAPI document lists them on each operation
(``x-appendq-roles``, and a sentence in its description). The ops routes take a LiveVox
``account``; a token limited to accounts is kept to its own (``appendq.http.ops.account_scope``).
Every read that returns records (the audit, a lead's lookup) writes an access-log row first
(``appendq.audit.access``).

No request ends in a 500 with internals: bad values are 4xx naming the field (``InvalidValue``:
422; a phone budget: 413; too many targets: 429), FastAPI's own validation errors are answered
without echoing the input, and a database error that validation missed is a JSON error logged by
class and route only (never its message: it may hold the values searched for): see
``appendq.http.errors``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from appendq import console
from appendq.audit.access import record_access
from appendq.console.signin import ConsoleSessions
from appendq.errors import ConfigError
from appendq.http import auth
from appendq.http.auth import Caller, authenticate
from appendq.http.errors import install_handlers
from appendq.http.intake import Intake
from appendq.http.ops import (
    account_scope,
    health,
    lookup_record,
    preview,
    retry_filter,
    retry_requested,
    search_audit,
    status_of,
)
from appendq.http.refused import Refused, read_capped
from appendq.http.schemas import (
    ZONE,
    ReceiptDoc,
    error_docs,
    leads_body,
    retry_body,
    retry_request,
)
from appendq.http.tokens import ApiToken, Role, as_tokens
from appendq.http.validation import MAX_SMALL_BODY_BYTES, SafeJSONResponse
from appendq.keys import Keys
from appendq.metrics import registry_for
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.target import ID_MAX
from producer.api import Producer, connect

log = logging.getLogger(__name__)


@dataclass
class Deps:
    """What the handlers use; built in the lifespan, one per app."""

    settings: Settings
    tokens: list[ApiToken]
    rt: Runtime
    producer: Producer
    registry: CollectorRegistry

    @property
    def intake(self) -> Intake:
        return Intake(self.settings, self.producer, self.rt.redis, self.rt.keys, self.rt.accounts)

    def accessed(self, caller: Caller, action: str, where: Mapping[str, Any], records: int) -> None:
        """The access-log row of a read that returned (or looked for) personal data."""
        record_access(
            self.rt.sessions,
            actor=caller.actor,
            channel="http",
            action=action,
            where=where,
            records=records,
        )


def _deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


_BEARER = HTTPBearer(auto_error=False, description="One of APPENDQ_API_TOKENS (name:role:secret).")


async def _caller(request: Request, _: Annotated[object, Depends(_BEARER)]) -> Caller:
    return authenticate(_deps(request).tokens, request.headers.get("authorization"))


DepsDep = Annotated[Deps, Depends(_deps)]
CallerDep = Annotated[Caller, Depends(_caller)]


def _allow(roles: Sequence[Role]) -> Callable[[Caller], Awaitable[None]]:
    """The route dependency that lets only ``roles`` through (403 otherwise), before any body
    is read."""

    async def allowed(caller: CallerDep) -> None:
        caller.require(roles)

    return allowed


async def _body(request: Request, _: CallerDep) -> bytes:
    """The raw body, refused past the limit by Content-Length and by the bytes actually read."""
    return await read_capped(request, _deps(request).settings.intake_max_body_bytes)


async def _small_body(request: Request, _: CallerDep) -> bytes:
    return await read_capped(request, MAX_SMALL_BODY_BYTES)


def post_leads(
    deps: DepsDep,
    caller: CallerDep,
    raw: Annotated[bytes, Depends(_body)],
    idempotency_key: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Validate and queue up to 10,000 records; bad records get per-record errors, good ones
    go in, marked as this token's. Same Idempotency-Key within a day: the first receipt again,
    nothing queued."""
    reply = deps.intake.submit(caller, raw, idempotency_key, content_type)
    return SafeJSONResponse(reply.body, reply.status, reply.headers)


#: The ``account`` parameter of the ops endpoints.
_ACCOUNT = "a LiveVox account (APPENDQ_ACCOUNTS_FILE); a token limited to accounts: one of its own"


def get_lead(record_id: str, deps: DepsDep, caller: CallerDep) -> dict[str, Any]:
    """A record's status and timeline once a drain has batched it; before that, for a record
    queued through this intake: status ``queued``, target, queued_at, age_s, target_depth. An
    intake token finds only the records it submitted (phone numbers masked), a token limited to
    LiveVox accounts only theirs; another record is 404 as an unknown one. Both answers name the
    record's ``livevox_account``. Each lookup is written to the access log."""
    where = {"record": record_id}
    try:
        answer = lookup_record(deps.rt, record_id, caller)
    except Refused as exc:
        if exc.status == 404:
            deps.accessed(caller, "lead", where, 0)
        raise
    deps.accessed(caller, "lead", where, 1)
    return answer


def get_audit(
    deps: DepsDep,
    caller: CallerDep,
    request: Request,
    response: Response,
    phone: str | None = None,
    account: Annotated[str | None, Query(description=_ACCOUNT)] = None,
    lead_account: Annotated[str | None, Query(description="the lead's account number")] = None,
    batch: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    record: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(description=_AFTER, max_length=200)] = None,
) -> list[dict[str, Any]]:
    """Records matching every filter given, with status, LiveVox account and timeline (full
    phone numbers). A token limited to LiveVox accounts finds only their records. Each search
    is written to the access log (who, when, the filter with phones masked and the accounts it
    was kept to, how many). A full page has a `Link: <...>; rel="next"` header."""
    asked = dict(
        phone=phone, account=account, lead_account=lead_account, batch=batch, record=record
    )
    found, applied, cursor = search_audit(deps.rt, caller, asked, limit=limit, after=after)
    deps.accessed(caller, "audit", {**applied, "limit": limit}, len(found))
    if cursor is not None:
        response.headers["Link"] = f'<{request.url.include_query_params(after=cursor)}>; rel="next"'
    return found


_AFTER = "the cursor of the next page: the `after` in the previous page's Link header"


def get_retry_preview(
    deps: DepsDep,
    caller: CallerDep,
    status: Annotated[list[str] | None, Query()] = None,
    target: str | None = None,
    since: Annotated[datetime | None, Query(description=f"created at or after ({ZONE})")] = None,
    until: Annotated[datetime | None, Query(description=f"created before ({ZONE})")] = None,
    batch: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    account: Annotated[str | None, Query(description=_ACCOUNT)] = None,
) -> dict[str, Any]:
    """The batches a retry with these filters would send again (batches only, no record's
    data), of every LiveVox account or ``account``'s; changes nothing."""
    where = retry_filter(
        batch=batch,
        statuses=status or [],
        target=target,
        since=since,
        until=until,
        tz=deps.settings.tz,
        accounts=account_scope(caller, account, deps.rt.accounts),
    )
    return preview(deps.rt, where)


def post_retry(
    deps: DepsDep,
    caller: CallerDep,
    raw: Annotated[bytes, Depends(_small_body)],
    content_type: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Send matching batches again; the reason and the caller (api:<token name>) go into the
    audit. A token limited to LiveVox accounts moves only their batches: another account's is
    not found, as a batch that does not exist."""
    return retry_requested(deps.rt, caller, retry_request(raw, content_type))


def get_status(
    deps: DepsDep,
    caller: CallerDep,
    account: Annotated[str | None, Query(description=_ACCOUNT)] = None,
) -> dict[str, Any]:
    """Per LiveVox account (every one, or ``account``; a limited token: its own): queue depth
    and oldest age per target, hold reasons, halt, rate budget, batches by status; and the
    batches of the accounts shown, by status."""
    return status_of(deps.rt, caller, account)


def get_metrics(deps: DepsDep) -> Response:
    """Prometheus text, read from Redis and PostgreSQL at scrape time (counts only, no record's
    data)."""
    return Response(generate_latest(deps.registry), media_type=CONTENT_TYPE_LATEST)


def get_healthz(deps: DepsDep) -> JSONResponse:
    """200 when Redis and PostgreSQL answer, else 503 naming the one that did not."""
    checks = health(deps.rt)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(checks, 200 if ok else 503)


def _route(
    app: FastAPI,
    method: str,
    path: str,
    handler: Callable[..., Any],
    roles: Sequence[Role],
    **options: Any,
) -> None:
    """``handler`` at ``method path``, open to ``roles`` only (none: open to all), which the
    OpenAPI document shows (``x-appendq-roles``, and a sentence of the description)."""
    extra = {**options.pop("openapi_extra", {}), "x-appendq-roles": [r.value for r in roles]}
    app.add_api_route(
        path,
        handler,
        methods=[method],
        description=f"{inspect.getdoc(handler) or ''}\n\n{auth.roles_sentence(roles)}",
        openapi_extra=extra,
        dependencies=[Depends(_allow(roles))] if roles else None,
        **options,
    )


def _routes(app: FastAPI) -> None:
    intake: list[str | Enum] = ["intake"]
    ops: list[str | Enum] = ["operations"]
    monitoring: list[str | Enum] = ["monitoring"]
    leads_answers = {202: {"model": ReceiptDoc}, **error_docs(400, 401, 403, 409, 413, 415, 422)}
    _route(
        app,
        "POST",
        "/v1/leads",
        post_leads,
        auth.SUBMIT,
        status_code=202,
        responses={**leads_answers, **error_docs(429, 503)},
        openapi_extra=leads_body(),
        tags=intake,
    )
    lookup = {"responses": error_docs(401, 403, 404), "tags": intake}
    _route(app, "GET", "/v1/leads/{record_id}", get_lead, auth.LOOKUP, **lookup)
    reads = error_docs(401, 403, 422)
    _route(app, "GET", "/v1/audit", get_audit, auth.READ, responses=reads, tags=ops)
    path = "/v1/batches/retry-preview"
    _route(app, "GET", path, get_retry_preview, auth.READ, responses=reads, tags=ops)
    _route(
        app,
        "POST",
        "/v1/batches/retry",
        post_retry,
        auth.ACT,
        responses=error_docs(400, 401, 403, 413, 415, 422),
        openapi_extra=retry_body(),
        tags=ops,
    )
    _route(app, "GET", "/v1/status", get_status, auth.READ, responses=reads, tags=ops)
    metrics = {"response_class": Response, "tags": monitoring}
    _route(app, "GET", "/metrics", get_metrics, auth.OPEN, **metrics)
    _route(app, "GET", "/healthz", get_healthz, auth.OPEN, tags=monitoring)


def create_app(settings: Settings, *, allow_no_auth: bool = False) -> FastAPI:
    """The intake app. Refuses to build without API tokens unless ``allow_no_auth`` (a local
    demo: anyone who reaches the port has every role)."""
    tokens = _api_tokens(settings, allow_no_auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime.build(settings)
        # The template of every request's producer: each gets its account's queue and day
        # (``Producer.on_queue``); the first account is only where the template's connection is.
        first = next(iter(rt.accounts))
        s = settings
        producer = connect(
            s, account=first, max_phones=s.intake_max_phones, budget_s=s.intake_validation_budget_s
        )
        app.state.deps = Deps(settings, tokens, rt, producer, registry_for(rt))
        app.state.console = ConsoleSessions(rt.redis, Keys(settings.redis_prefix), tokens)
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
    console.mount(app)
    return app


def _api_tokens(settings: Settings, allow_no_auth: bool) -> list[ApiToken]:
    """The configured API tokens (a warning counts the bare ones); with none, a ConfigError
    unless ``allow_no_auth``."""
    try:
        tokens = as_tokens(settings.api_tokens)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not tokens:
        if not allow_no_auth:
            raise ConfigError(
                "no API tokens: set APPENDQ_API_TOKENS (name:role:secret, comma-separated) or, "
                "for a local demo only, pass --insecure-no-auth"
            )
        log.warning(
            "THE HTTP INTAKE RUNS WITHOUT AUTHENTICATION (--insecure-no-auth): anyone who can "
            "reach it has every role: enqueue leads, read every lead's record with full phone "
            "numbers, retry batches. Never do this outside a local demo."
        )
    bare = sum(t.bare for t in tokens)
    if bare:
        log.warning(
            "%d of the %d API tokens are bare (no name:role:): each is an intake token named "
            "token-<N>, that may submit leads and read back only its own; name them in "
            "APPENDQ_API_TOKENS as name:role:secret",
            bare,
            len(tokens),
            extra={"bare_tokens": bare, "tokens": len(tokens)},
        )
    return tokens
