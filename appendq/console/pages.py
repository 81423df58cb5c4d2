"""The console's read pages: the overview (and its live part and charts), the batches, a batch,
and the lead search. Each is kept to the LiveVox accounts the signed-in token may use; a page
that shows records (a batch's, a search's) writes its access-log row first, as the API does
(``appendq.audit.access``: channel ``ui``, actor ``console:<token name>``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from appendq.audit import timeline
from appendq.audit.access import record_access
from appendq.console import forms, reads
from appendq.console.signin import Signed
from appendq.console.web import ConsoleError, deps, read_form, render, signed_in
from appendq.db.models import Batch, BatchStatus
from appendq.errors import InvalidValue
from appendq.http.ops import account_scope
from appendq.http.refused import Refused
from appendq.runtime import Runtime

#: Matches one lead search shows.
SEARCH_LIMIT = 50


def query_form(request: Request) -> dict[str, list[str]]:
    params = request.query_params
    return {key: params.getlist(key) for key in params}


def scope(signed: Signed, rt: Runtime, account: str | None = None) -> tuple[str, ...] | None:
    """The accounts a page is kept to: ``account`` if asked (and allowed), else the caller's
    own, else None (every account)."""
    try:
        return account_scope(signed.caller, account, rt.accounts)
    except Refused as exc:
        raise ConsoleError(exc.status, exc.detail) from None


def shown_accounts(signed: Signed, rt: Runtime) -> list[str]:
    """The configured accounts this visitor may see (for the filters' choices)."""
    return [n for n in rt.accounts if signed.caller.may_use(n)]


def overview_page(request: Request) -> HTMLResponse:
    signed = signed_in(request)
    rt = deps(request).rt
    accounts = scope(signed, rt)
    with rt.sessions() as session:
        halts = reads.halts(session, accounts)
    return render(
        request,
        "overview.html",
        signed,
        data=reads.overview(rt, accounts),
        halts=halts,
        statuses=[str(s) for s in BatchStatus],
    )


def live_part(request: Request) -> HTMLResponse:
    """The overview's live part alone (htmx swaps it in every few seconds)."""
    signed = signed_in(request, touch=False)
    rt = deps(request).rt
    data = reads.overview(rt, scope(signed, rt))
    statuses = [str(s) for s in BatchStatus]
    return render(request, "_live.html", signed, data=data, statuses=statuses)


def charts_data(request: Request) -> JSONResponse:
    signed = signed_in(request, touch=False)
    rt = deps(request).rt
    return JSONResponse(reads.charts(rt, scope(signed, rt)), headers={"Cache-Control": "no-store"})


def batches_page(request: Request) -> HTMLResponse:
    signed = signed_in(request)
    rt = deps(request).rt
    form = query_form(request)
    error: str | None = None
    rows: list[Batch] = []
    cursor: int | None = None
    try:
        where = _batch_filter(form, signed, rt)
        with rt.sessions() as session:
            rows, cursor = reads.batches(session, where)
    except InvalidValue as exc:
        error = str(exc)
    return render(
        request,
        "batches.html",
        signed,
        422 if error else 200,
        form=form,
        one=forms.one,
        error=error,
        rows=rows,
        cursor=cursor,
        accounts=shown_accounts(signed, rt),
        statuses=[str(s) for s in BatchStatus],
        query=_without(request, "before"),
    )


def _batch_filter(form: forms.Form, signed: Signed, rt: Runtime) -> reads.BatchFilter:
    tz = rt.settings.tz
    account = forms.account(form)
    return reads.BatchFilter(
        statuses=forms.statuses(form),
        account=account,
        before=forms.integer(form, "before"),
        accounts=scope(signed, rt, account),
        **forms.narrowing(form, tz),
    )


def _without(request: Request, name: str) -> str:
    """The page's query string without ``name`` (for the next page's link)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != name]
    return urlencode(kept)


def batch_page(request: Request, batch_id: str) -> HTMLResponse:
    signed = signed_in(request)
    rt = deps(request).rt
    try:
        number = forms.integer({"batch": [batch_id]}, "batch") or 0
        after = forms.position(query_form(request), "after")
    except InvalidValue as exc:
        raise ConsoleError(404, str(exc), title="No such batch") from None
    return _batch_page(request, signed, rt, number, -1 if after is None else after)


def _batch_page(
    request: Request, signed: Signed, rt: Runtime, batch_id: int, after: int
) -> HTMLResponse:
    accounts = scope(signed, rt)
    with rt.sessions() as session:
        found = reads.batch_page(session, batch_id, accounts, after)
        if found is None:
            raise ConsoleError(404, f"There is no batch {batch_id}.", title="No such batch")
        record_access(
            rt.sessions,
            actor=signed.actor,
            channel="ui",
            action="batch",
            where={"batch": batch_id, "after": after},
            records=len(found.records),
        )
        return render(request, "batch.html", signed, page=found, after=after)


def leads_page(request: Request) -> HTMLResponse:
    """The search form; a link may ask by record id or lead account in the query string."""
    return _leads(request, signed_in(request), query_form(request))


async def leads_search(request: Request) -> HTMLResponse:
    """The search as the form posts it: a phone number never goes into a URL (browser history,
    proxies' logs)."""
    signed = signed_in(request)
    form = await read_form(request, signed)
    return await run_in_threadpool(_leads, request, signed, form)


def _leads(request: Request, signed: Signed, form: forms.Form) -> HTMLResponse:
    rt = deps(request).rt
    found, error, asked = [], None, {}
    try:
        asked = _lead_question(form)
        if asked:
            found = _search(rt, signed, asked, forms.account(form))
    except InvalidValue as exc:
        error = str(exc)
    except ValueError as exc:  # a phone or record id that cannot match anything
        error = str(exc)
    return render(
        request,
        "leads.html",
        signed,
        422 if error else 200,
        form=form,
        one=forms.one,
        error=error,
        asked=asked,
        found=found,
        limit=SEARCH_LIMIT,
        accounts=shown_accounts(signed, rt),
    )


def _lead_question(form: forms.Form) -> dict[str, Any]:
    asked = {
        "phone": forms.text(form, "phone", 40),
        "account": forms.text(form, "lead_account", timeline.ACCOUNT_MAX),
        "record_id": forms.text(form, "record", 60),
    }
    return {k: v for k, v in asked.items() if v is not None}


def _search(
    rt: Runtime, signed: Signed, asked: dict[str, Any], account: str | None
) -> list[timeline.RecordAudit]:
    accounts = scope(signed, rt, account)
    with rt.sessions() as session:
        found = timeline.find_records(
            session,
            **asked,
            livevox_account=accounts,
            region=rt.settings.default_region,
            limit=SEARCH_LIMIT,
        )
    where = {**asked, "livevox_account": list(accounts) if accounts else None}
    record_access(  # the phone asked is masked there
        rt.sessions,
        actor=signed.actor,
        channel="ui",
        action="lead_search",
        where=where,
        records=len(found),
    )
    return found
