"""The operator and auditor side of the HTTP intake, as plain functions of the Runtime: a record's
lookup, the audit search, retry preview and retry, and the health check. ``appendq.http.app`` serves
them; they raise ``Refused`` (``appendq.http.refused``) for every answer that is not a success.

Every value that reaches PostgreSQL is checked first (ids within BIGINT, search terms and the
operator's reason as one line of text, capped): a bad one is a 422 naming it, never a database
error.

LiveVox accounts (``account_scope``): a caller may keep a question to one account (the
``account`` parameter); a token limited to some accounts gets its accounts forced on every
question, a 403 naming the account when it asks for another, and finds another account's
records and batches exactly as it finds ones that do not exist (404 for a lead, "not found" for
a batch): it learns nothing of them, not even that they exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from appendq.accounts import Accounts, check_name
from appendq.audit import timeline
from appendq.clock import in_zone
from appendq.db.models import RETRYABLE_STATUSES, BatchStatus
from appendq.errors import InvalidValue
from appendq.http.auth import Caller
from appendq.http.intake_queue import find_queued
from appendq.http.refused import Refused
from appendq.http.schemas import RetryRequest
from appendq.http.validation import MAX_QUERY_TEXT
from appendq.leads import check_text
from appendq.ops import retry as retries
from appendq.ops.retry import RetryFilter
from appendq.ops.status import collect
from appendq.runtime import Runtime
from appendq.target import check_id
from producer.door import parse_target


def refuse(exc: InvalidValue) -> Refused:
    """A 422 naming the field."""
    return Refused(422, str(exc), field=exc.field)


def lookup_record(rt: Runtime, record_id: str, caller: Caller) -> dict[str, Any]:
    """``GET /v1/leads/{id}``: the record's status and timeline from the audit; for a record the
    HTTP intake queued and no drain has batched yet, ``queued`` with its target and age
    (``appendq.http.intake_queue.find_queued``). A caller that does not read every record (an
    intake token) finds only the records it submitted, phones masked: another's record is
    "unknown", exactly as a record that does not exist; so is a record of a LiveVox account a
    token limited to others may not use. Both answers name the record's LiveVox account
    ``livevox_account`` (``account`` is the lead's account number, once batched)."""
    try:
        uuid.UUID(record_id)
    except ValueError:
        raise Refused(404, f"{record_id[:60]!r} is not a record id") from None
    found = _audited(rt, record_id, caller.reads_all)
    if found is not None:
        return _visible(found, caller, record_id)
    queued = find_queued(rt, record_id)
    if queued is not None and queued.get("target_depth", 0) > 0:
        return _visible(queued, caller, record_id)
    found = _audited(rt, record_id, caller.reads_all)  # batched between the two looks
    if found is not None:
        return _visible(found, caller, record_id)
    if queued is not None:
        _visible(queued, caller, record_id)
        raise Refused(
            404,
            f"record {record_id}: queued for {queued['target']} at {queued['queued_at']}, no "
            "longer in that queue and not in the audit (was the target cleared?)",
        )
    raise _unknown(record_id)


def _visible(answer: dict[str, Any], caller: Caller, record_id: str) -> dict[str, Any]:
    """``answer`` if ``caller`` may see this record (its own, or every record, of an account it
    may use), else the 404 of an unknown record."""
    mine = caller.reads_all or answer.get("submitted_by") == caller.name
    if mine and caller.may_use(answer["livevox_account"]):
        return answer
    raise _unknown(record_id)


def _unknown(record_id: str) -> Refused:
    return Refused(
        404,
        f"record {record_id}: unknown (records queued by the HTTP intake are found at once; "
        "others once a drain batches them)",
    )


def _audited(rt: Runtime, record_id: str, full_phones: bool) -> dict[str, Any] | None:
    with rt.sessions() as session:
        found = timeline.find_records(
            session, record_id=record_id, limit=1, full_phones=full_phones
        )
    return found[0].to_dict() if found else None


#: The audit's record filters as the API names them, and as ``timeline.find_records`` does (the
#: lead's ``lead_account`` is its ``account``; the LiveVox ``account`` is ``account_scope``'s).
_AUDIT_FILTERS = {
    "phone": "phone",
    "lead_account": "account",
    "batch": "batch_id",
    "record": "record_id",
}


def search_audit(
    rt: Runtime, caller: Caller, asked: Mapping[str, Any], *, limit: int, after: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
    """``GET /v1/audit``: the records matching every filter ``asked`` (at least one of phone,
    account, lead_account, batch, record), phones in full for a caller allowed them, kept to
    the accounts the caller may use, after the cursor ``after``; the filter as applied, for the
    access log (the accounts forced on a limited caller included); the next page's cursor."""
    if all(v is None for v in asked.values()):
        raise Refused(422, "give phone, account, lead_account, batch or record")
    try:
        for name in ("phone", "record"):
            check_text(asked.get(name), name, max_len=MAX_QUERY_TEXT)
        check_text(asked.get("lead_account"), "lead_account", max_len=timeline.ACCOUNT_MAX)
        if asked.get("batch") is not None:
            check_id(asked["batch"], "batch")
    except InvalidValue as exc:
        raise refuse(exc) from None
    scope = account_scope(caller, asked.get("account"), hint=_LEAD_ACCOUNT_HINT)
    where = {_AUDIT_FILTERS[k]: v for k, v in asked.items() if k in _AUDIT_FILTERS}
    with rt.sessions() as session:
        try:
            page = timeline.find_page(
                session,
                **where,
                livevox_account=scope,
                region=rt.settings.default_region,
                limit=limit,
                full_phones=caller.reads_all,
                after=after,
            )
        except InvalidValue as exc:
            raise refuse(exc) from None
        except ValueError as exc:  # a phone or record id that cannot match anything
            raise Refused(422, str(exc)) from None
    applied = {**asked, "account": list(scope) if scope else None}
    return [r.to_dict() for r in page.records], applied, page.next


_LEAD_ACCOUNT_HINT = "account is the LiveVox account; a lead's account number is lead_account"


def account_scope(
    caller: Caller,
    account: str | None,
    configured: Accounts | None = None,
    *,
    hint: str | None = None,
) -> tuple[str, ...] | None:
    """The LiveVox accounts a question is kept to: ``(account,)`` when one is asked (422 if it
    is not an account name, or with ``configured`` not one of them; 403 if the caller may not
    use it), else the accounts of a caller limited to some, else None (every account)."""
    if account is None:
        return None if caller.accounts is None else tuple(sorted(caller.accounts))
    try:
        name = check_name(account)
    except InvalidValue as exc:
        raise Refused(422, f"{exc} ({hint})" if hint else str(exc), field="account") from None
    caller.require_account(name)
    if configured is not None and name not in configured:
        known = f" (known: {', '.join(configured)})" if caller.accounts is None else ""
        raise Refused(422, f"account: no account {name!r}{known}", field="account")
    return (name,)


def status_of(rt: Runtime, caller: Caller, account: str | None) -> dict[str, Any]:
    """``GET /v1/status``: every account's status, or ``account``'s; a caller limited to some
    accounts sees only those (403 for another)."""
    scope = account_scope(caller, account, rt.accounts)
    return collect(rt, account, among=scope)


def retry_filter(
    *,
    batch: int | None,
    statuses: Sequence[str],
    target: str | None,
    since: datetime | None,
    until: datetime | None,
    tz: tzinfo,
    accounts: tuple[str, ...] | None = None,
) -> RetryFilter:
    """A ``RetryFilter`` from request parameters (a time without a zone is in ``tz``,
    APPENDQ_TIMEZONE), kept to ``accounts`` (``account_scope``; None: every account); 422 on an
    unknown or final status or target."""
    names = [s.strip() for text in statuses for s in text.split(",") if s.strip()]
    wrong = [s for s in names if s not in {str(r) for r in RETRYABLE_STATUSES}]
    if wrong:
        allowed = ", ".join(str(r) for r in RETRYABLE_STATUSES)
        raise Refused(422, f"status {wrong}: only {allowed} batches can be retried")
    try:
        where = str(parse_target(target)) if target is not None else None
        if batch is not None:
            check_id(batch, "batch")
    except InvalidValue as exc:
        raise refuse(exc) from None
    except ValueError as exc:
        raise Refused(422, str(exc), field="target") from None
    return RetryFilter(
        batch_id=batch,
        statuses=tuple(BatchStatus(s) for s in names),
        target=where,
        since=in_zone(since, tz),
        until=in_zone(until, tz),
        accounts=accounts or (),
    )


def retry_requested(rt: Runtime, caller: Caller, body: RetryRequest) -> dict[str, Any]:
    """``POST /v1/batches/retry``: the batches ``body`` names back to ready, as ``caller``, kept
    to the LiveVox accounts it may use (``account_scope``)."""
    where = retry_filter(
        batch=body.batch,
        statuses=body.status,
        target=None if body.target is None else str(body.target),
        since=body.since,
        until=body.until,
        tz=rt.settings.tz,
        accounts=account_scope(caller, body.account, rt.accounts),
    )
    expect = None if body.expect is None else {e.id: (e.status, e.version) for e in body.expect}
    return retry(rt, where, reason=body.reason, actor=caller.actor, expect=expect)


def retry(
    rt: Runtime,
    where: RetryFilter,
    *,
    reason: str,
    actor: str,
    expect: Mapping[int, tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """``POST /v1/batches/retry``: matching batches back to ready, with reason and actor.

    ``expect`` (id -> (status, version) as the preview showed): only those batches, and only
    while still so. Without it, the batches matching now are moved except those that may
    already be at LiveVox (in_doubt, operator_hold): re-sending them may make
    LiveVox hold their records twice, so a caller must name them with their previewed state."""
    if where.empty:
        raise Refused(422, "give batch, status, target, since or until (all of them: status)")
    try:
        retries.check_reason(reason)  # one line, at most retries.REASON_MAX characters
    except InvalidValue as exc:
        raise refuse(exc) from None
    with rt.sessions() as session:
        try:
            only, doubtful = _expected(session, where, expect)
            result = retries.retry(session, where, reason=reason, actor=actor, only=only)
        except InvalidValue as exc:
            raise refuse(exc) from None
        except ValueError as exc:
            raise Refused(422, str(exc)) from None
        session.commit()
    return {
        "count": len(result.moved),
        "actor": actor,
        "batches": [m.to_dict() for m in result.moved],
        "left": [b.to_dict() for b in result.left],
        "doubtful": [b.to_dict() for b in doubtful],
    }


def _expected(
    session: Session, where: RetryFilter, expect: Mapping[int, tuple[str, int]] | None
) -> tuple[dict[int, retries.PreviewedState], list[retries.BatchSummary]]:
    """(``only`` for ``retries.retry``, the batches left alone as doubtful)."""
    if expect is not None:
        try:
            only = {i: retries.PreviewedState(BatchStatus(s), v) for i, (s, v) in expect.items()}
        except ValueError as exc:
            raise Refused(422, f"expect: {exc}") from None
        return only, []
    found = retries.preview_retry(session, where)
    doubtful = [b for b in found if b.may_duplicate]
    return {b.id: b.seen() for b in found if not b.may_duplicate}, doubtful


def preview(rt: Runtime, where: RetryFilter) -> dict[str, Any]:
    with rt.sessions() as session:
        found = retries.preview_retry(session, where)
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
