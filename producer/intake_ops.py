"""The operator and auditor side of the HTTP intake, as plain functions of the Runtime: a record's
lookup, the audit search, retry preview and retry, and the health check. ``producer.http`` serves
them; they raise ``Refused`` (``producer.intake``) for every answer that is not a success.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from appendq import audit, operator
from appendq.db.models import BatchStatus
from appendq.operator import RetryFilter
from appendq.runtime import Runtime
from producer.api import parse_target
from producer.intake import Refused


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
