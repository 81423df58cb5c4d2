"""Signing in and out of the console (``appendq.console.signin`` holds the sessions).

The sign-in form carries a one-time value also set as a short-lived cookie (double submit), so no
other site can sign a browser in as someone; signing in ends the session the browser held
before; after it, the visitor lands on the console page asked for (``next``, a console path
only: never an open redirect). Signing out needs the session's CSRF value.
"""

from __future__ import annotations

import secrets

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from appendq.console import forms
from appendq.console.pages import query_form
from appendq.console.signin import COOKIE, LOGIN_COOKIE, same
from appendq.console.web import (
    HEADERS,
    PREFIX,
    capped_body,
    read_form,
    render,
    sessions,
    set_cookie,
    signed_in,
)
from appendq.errors import InvalidValue
from appendq.http.refused import Refused

#: How long a sign-in form stays good.
LOGIN_FORM_S = 600


def login_page(request: Request) -> Response:
    if sessions(request).open:  # no tokens configured: nothing to sign in to
        return RedirectResponse(f"{PREFIX}/", 303, headers=HEADERS)
    back = _safe_next(forms.one(query_form(request), "next") or "")
    return _login_again(request, back, None, 200)


async def login(request: Request) -> Response:
    try:
        form = forms.parse_form(await capped_body(request))
    except InvalidValue:
        form = {}
    back = _safe_next(forms.one(form, "next") or "")
    nonce = request.cookies.get(LOGIN_COOKIE)
    if nonce is None or not same(forms.one(form, "nonce"), nonce):
        return _login_again(request, back, "The sign-in form expired: try again.", 403)
    sessions(request).sign_out(request.cookies.get(COOKIE))  # the browser's previous session
    try:
        session_id, _ = await run_in_threadpool(
            sessions(request).sign_in, forms.one(form, "token") or ""
        )
    except Refused as exc:
        message = "Unknown token." if exc.status == 401 else exc.detail
        return _login_again(request, back, message, exc.status)
    response = RedirectResponse(back or f"{PREFIX}/", 303, headers=HEADERS)
    set_cookie(request, response, COOKIE, session_id)  # a session cookie: ends with the browser
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


def _login_again(request: Request, back: str, message: str | None, status: int) -> HTMLResponse:
    """The sign-in page, with a fresh one-time value in the form and in a cookie."""
    nonce = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, status, next=back, nonce=nonce, error=message)
    set_cookie(request, response, LOGIN_COOKIE, nonce, max_age=LOGIN_FORM_S)
    return response


def _safe_next(value: str) -> str:
    """Only a console path: never another site (an open redirect)."""
    if value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value:
        return value
    return ""


async def logout(request: Request) -> Response:
    signed = signed_in(request)
    await read_form(request, signed)
    sessions(request).sign_out(request.cookies.get(COOKIE))
    response = RedirectResponse(f"{PREFIX}/login", 303, headers=HEADERS)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
