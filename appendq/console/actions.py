"""What an operator does in the console, each as a preview then a confirmed form with a reason:
retry batches (picked, or by filter), resume an account's halted Append calls, clear a target set
aside. And signing in and out.

Each action is a GET that changes nothing (the preview, or the confirmation page) and a POST with
the session's CSRF value and a required reason. The POST requires the operator role (an auditor
gets a 403 page, and sees no button to begin with) and records the signed-in token's name as the
actor (``console:<name>``) with the reason: in the batch's events for a retry
(``appendq.ops.retry``), in ``account_events`` for a resume, in ``target_events`` for a clear.
A retry moves only the batches ticked in the preview, each only while still in the state the
preview showed (``expect``); batches that may already be at LiveVox (in_doubt, operator_hold)
are shown with a warning and are not ticked unless the operator ticks them.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from appendq.console import forms
from appendq.console.pages import query_form, scope
from appendq.console.signin import Signed
from appendq.console.web import (
    ConsoleError,
    deps,
    may_act,
    read_form,
    render,
    signed_in,
)
from appendq.db.models import RETRYABLE_STATUSES
from appendq.drain import halt, set_aside
from appendq.errors import InvalidValue
from appendq.http import ops
from appendq.http.refused import Refused
from appendq.ops import retry as retries
from appendq.ops.retry import RetryFilter
from appendq.runtime import Runtime


def retry_preview(request: Request) -> HTMLResponse:
    """What a retry of the picked batches (``batch``) or of a filter would send again."""
    signed = may_act(signed_in(request))
    rt = deps(request).rt
    form = query_form(request)
    try:
        where = _retry_filter(form, signed, rt)
        with rt.sessions() as session:
            found = retries.preview_retry(session, where)
    except InvalidValue as exc:
        raise ConsoleError(422, str(exc), title="Nothing to preview") from None
    return _preview(request, signed, found, None, "", None)


def _preview(
    request: Request,
    signed: Signed,
    found: list[retries.BatchSummary],
    error: str | None,
    reason: str,
    ticked: set[int] | None,
    status: int = 200,
) -> HTMLResponse:
    """The preview: at most ``forms.MAX_PICKED`` batches (saying how many more matched), each
    ticked unless it may already be at LiveVox (or as ``ticked`` says, after a refused form)."""
    return render(
        request,
        "retry.html",
        signed,
        status,
        found=found[: forms.MAX_PICKED],
        more=max(len(found) - forms.MAX_PICKED, 0),
        error=error,
        reason=reason,
        ticked=ticked,
    )


def _retry_filter(form: forms.Form, signed: Signed, rt: Runtime) -> RetryFilter:
    account = forms.account(form)
    tz = rt.settings.tz
    asked = forms.statuses(form)
    statuses = tuple(s for s in asked if s in RETRYABLE_STATUSES)
    if asked and not statuses:
        shown = ", ".join(str(s) for s in asked)
        raise InvalidValue("status", f"{shown} batches cannot be retried")
    where = RetryFilter(
        batch_ids=forms.picked(form),
        statuses=statuses,
        accounts=scope(signed, rt, account) or (),
        **forms.narrowing(form, tz),
    )
    if where.empty:
        raise InvalidValue("batch", "pick batches, or filter them (status, target, times)")
    return where


async def retry_confirmed(request: Request) -> HTMLResponse:
    signed = may_act(signed_in(request))
    form = await read_form(request, signed)
    rt = deps(request).rt
    return await run_in_threadpool(_retry, request, signed, form, rt)


def _retry(request: Request, signed: Signed, form: forms.Form, rt: Runtime) -> HTMLResponse:
    try:
        reason = forms.reason(form)
        expect = forms.expected(form)
    except InvalidValue as exc:  # the same preview again, as ticked, saying what was missing
        found = _preview_again(rt, signed, forms.shown(form))
        ticked = {e.id for e in forms.expected(form, strict=False)}
        text = forms.one(form, "reason") or ""
        return _preview(request, signed, found, str(exc), text, ticked, 422)
    where = RetryFilter(batch_ids=tuple(e.id for e in expect), accounts=scope(signed, rt) or ())
    states = {e.id: (str(e.state.status), e.state.version) for e in expect}
    try:
        result = ops.retry(rt, where, reason=reason, actor=signed.actor, expect=states)
    except Refused as exc:
        raise ConsoleError(exc.status, exc.detail) from None
    return render(request, "retried.html", signed, result=result, reason=reason)


def _preview_again(rt: Runtime, signed: Signed, ids: tuple[int, ...]) -> list[retries.BatchSummary]:
    if not ids:
        return []
    with rt.sessions() as session:
        where = RetryFilter(batch_ids=ids, accounts=scope(signed, rt) or ())
        return retries.preview_retry(session, where)


def resume_page(request: Request, account: str) -> HTMLResponse:
    signed = may_act(signed_in(request))
    rt = deps(request).rt
    name = _account(signed, rt, account)
    stopped = halt.current(rt.redis, rt.lane(name).keys)
    return render(request, "resume.html", signed, account=name, halt=stopped, error=None)


async def resume_confirmed(request: Request, account: str) -> HTMLResponse:
    signed = may_act(signed_in(request))
    form = await read_form(request, signed)
    rt = deps(request).rt
    name = _account(signed, rt, account)
    try:
        reason = forms.reason(form)
    except InvalidValue as exc:
        stopped = halt.current(rt.redis, rt.lane(name).keys)
        return render(
            request, "resume.html", signed, 422, account=name, halt=stopped, error=str(exc)
        )
    try:
        lifted = await run_in_threadpool(
            lambda: halt.lift(
                rt.redis,
                rt.lane(name).keys,
                rt.sessions,
                account=name,
                reason=reason,
                actor=signed.actor,
                seen=next(iter(form.get("seen", [])), None),  # as shown, not stripped
            )
        )
    except halt.HaltChanged:
        stopped = halt.current(rt.redis, rt.lane(name).keys)
        changed = "The halt changed since this page was shown: read it again, then resume."
        return render(
            request, "resume.html", signed, 409, account=name, halt=stopped, error=changed
        )
    done = "Halt lifted: the next tick sends again." if lifted else "No halt was in force."
    return render(request, "done.html", signed, title=f"Account {name}", message=done)


def clear_page(request: Request, account: str) -> HTMLResponse:
    signed = may_act(signed_in(request))
    rt = deps(request).rt
    name = _account(signed, rt, account)
    target = _target(query_form(request))
    aside = set_aside.current(rt.redis, rt.lane(name).keys).get(target)
    return render(
        request, "clear.html", signed, account=name, target=target, aside=aside, error=None
    )


async def clear_confirmed(request: Request, account: str) -> HTMLResponse:
    signed = may_act(signed_in(request))
    form = await read_form(request, signed)
    rt = deps(request).rt
    name = _account(signed, rt, account)
    target = _target(form)
    lane = rt.lane(name)
    try:
        reason = forms.reason(form)
    except InvalidValue as exc:
        aside = set_aside.current(rt.redis, lane.keys).get(target)
        return render(
            request,
            "clear.html",
            signed,
            422,
            account=name,
            target=target,
            aside=aside,
            error=str(exc),
        )
    cleared = await run_in_threadpool(
        lambda: set_aside.clear(
            rt.redis,
            lane.keys,
            rt.sessions,
            target,
            reason=reason,
            actor=signed.actor,
            account=name,
        )
    )
    done = (
        f"{target} is back in the drain: the next tick drains it."
        if cleared
        else f"{target} was not set aside."
    )
    return render(request, "done.html", signed, title=f"Account {name}", message=done)


def _account(signed: Signed, rt: Runtime, account: str) -> str:
    accounts = scope(signed, rt, account)
    assert accounts is not None
    return accounts[0]


def _target(form: forms.Form) -> str:
    """The target as the set-aside hash names it (text: a malformed one may be set aside)."""
    try:
        target = forms.text(form, "target", 60)
    except InvalidValue as exc:
        raise ConsoleError(422, str(exc)) from None
    if target is None:
        raise ConsoleError(422, "target: name the target (service:ID or campaign:ID)")
    return target
