"""The console's plumbing: templates, headers, who is signed in, and its errors as pages.

Pages are Jinja2 templates (``appendq/console/templates``, autoescaped, undefined names are
errors) under a strict Content-Security-Policy: scripts, styles and data only from the console
itself, no inline script or style, no framing. ``signed_in`` finds the visitor's session
(``appendq.console.signin``); a page without one redirects to the sign-in page, a fragment or
a JSON read answers 401. ``ConsoleError`` is any answer that is not the page asked for (a bad
filter, a role that may not act, a stale form), rendered as a page that says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool

from appendq.console import forms
from appendq.console.signin import COOKIE, ConsoleSessions, Signed, same
from appendq.db.models import RETRYABLE_STATUSES
from appendq.errors import InvalidValue
from appendq.http.validation import MAX_SMALL_BODY_BYTES

if TYPE_CHECKING:
    from appendq.http.app import Deps

PREFIX = "/ui"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

TEMPLATES = Environment(
    loader=PackageLoader("appendq.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


#: The overview's live part once the session has ended.
SIGNED_OUT = (
    '<div id="live"><p class="banner warn" role="alert">Your session has ended: '
    f'<a href="{PREFIX}/login?next={PREFIX}/">sign in again</a> to see live figures.</p></div>'
)


class ConsoleError(Exception):
    """An answer other than the page asked for: ``status`` and a sentence for the visitor."""

    def __init__(self, status: int, message: str, *, title: str = "Cannot do that") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title


class SignInNeeded(Exception):
    """No live session: pages redirect to the sign-in page, fragments answer 401."""


def deps(request: Request) -> Deps:
    found: Deps = request.app.state.deps
    return found


def sessions(request: Request) -> ConsoleSessions:
    found: ConsoleSessions = request.app.state.console
    return found


def signed_in(request: Request, *, touch: bool = True) -> Signed:
    """The visitor's session, or ``SignInNeeded``; ``touch=False`` for the overview's own
    refreshes, which must not keep an unattended tab signed in."""
    found = sessions(request).find(request.cookies.get(COOKIE), touch=touch)
    if found is None:
        raise SignInNeeded()
    return found


def may_act(signed: Signed) -> Signed:
    """``signed`` if it may act (an operator), else a 403 page."""
    if not signed.may_act:
        raise ConsoleError(
            403,
            f"{signed.caller.name} is an auditor: auditors read everything and change nothing. "
            "Sign in with an operator token to retry, resume or clear.",
            title="Operators only",
        )
    return signed


async def read_form(request: Request, signed: Signed) -> dict[str, list[str]]:
    """A state-changing form's fields, once its CSRF value matched the session's (403 if not)."""
    body = await capped_body(request)
    try:
        form = await run_in_threadpool(forms.parse_form, body)
    except InvalidValue as exc:
        raise ConsoleError(422, str(exc), title="Form refused") from None
    if not same(forms.one(form, "csrf"), signed.csrf):
        raise ConsoleError(
            403,
            "This form has expired or did not come from the console: reload the page and "
            "submit it again.",
            title="Form expired",
        )
    return form


async def capped_body(request: Request) -> bytes:
    """The body, refused past ``MAX_SMALL_BODY_BYTES`` (413)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_SMALL_BODY_BYTES:
            raise ConsoleError(413, "This form is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None = None
) -> None:
    """A console cookie: HttpOnly, SameSite=Lax, scoped to the console, Secure over HTTPS or
    with APPENDQ_CONSOLE_SECURE_COOKIE (behind a proxy that ends TLS); without ``max_age`` it
    ends with the browser."""
    secure = deps(request).settings.console_secure_cookie or request.url.scheme == "https"
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="lax", path=PREFIX, secure=secure
    )


def when_in(tz: tzinfo) -> Callable[[datetime | float | None], str]:
    """A moment as the console shows it: local time in APPENDQ_TIMEZONE, to the second."""

    def when(moment: datetime | float | None) -> str:
        if moment is None:
            return "—"
        at = moment if isinstance(moment, datetime) else datetime.fromtimestamp(moment, tz)
        return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")

    return when


def age(seconds: float | None) -> str:
    """``95.2`` -> ``1 min 35 s``."""
    if seconds is None:
        return "—"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def render(
    request: Request, template: str, signed: Signed | None, status: int = 200, **context: Any
) -> HTMLResponse:
    """``template`` with the console's context, headers and ``status``."""
    settings = deps(request).settings
    html = TEMPLATES.get_template(template).render(
        signed=signed,
        open_console=sessions(request).open,
        path=request.url.path,
        when=when_in(settings.tz),
        age=age,
        quote=quote,
        now=time.time(),
        tz_name=str(settings.tz),
        retryable=[str(s) for s in RETRYABLE_STATUSES],
        **context,
    )
    return HTMLResponse(html, status, headers=HEADERS)


def to_sign_in(request: Request) -> Response:
    """A page asked without a session: to the sign-in page, back here after."""
    if request.url.path == f"{PREFIX}/live":  # htmx swaps this in and stops polling (286)
        return HTMLResponse(SIGNED_OUT, 286, headers=HEADERS)
    if request.url.path.endswith(".json"):
        return Response("sign in again", 401, headers=HEADERS)
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(back, safe='')}", 303, headers=HEADERS)


def error_page(request: Request, exc: ConsoleError) -> HTMLResponse:
    signed = sessions(request).find(request.cookies.get(COOKIE))
    return render(request, "error.html", signed, exc.status, title=exc.title, message=exc.message)
