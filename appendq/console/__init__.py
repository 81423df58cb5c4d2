"""The operator's console: web pages under ``/ui/`` of ``appendq serve``, for operators and
auditors.

| page                               | what                                                    |
|------------------------------------|---------------------------------------------------------|
| ``/ui/login``                      | sign in with an auditor or operator token               |
| ``/ui/``                           | overview, live: per account and target, charts, halts    |
| ``/ui/batches``                    | batches by status, account, target, campaign, time      |
| ``/ui/batches/{id}``               | a batch: its records (phones masked), events, answers   |
| ``/ui/leads``                      | lead search by phone, lead account or record id         |
| ``/ui/retry``                      | retry preview, then confirm with a reason (operators)   |
| ``/ui/accounts/{name}/resume``     | lift a halt, with a reason (operators)                  |
| ``/ui/accounts/{name}/clear``      | clear a target set aside, with a reason (operators)     |

Who may do what: ``appendq.console.signin`` (sign-in, roles) and ``appendq.console.actions``
(the operator's actions). Server-rendered (Jinja2), with two vendored scripts
(``static/vendor``: htmx for the live overview, uPlot for the charts) and no build step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from appendq.console import actions, gate, pages
from appendq.console.web import PREFIX, ConsoleError, SignInNeeded, error_page, to_sign_in

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """The console's routes on ``app`` (kept out of the OpenAPI document)."""

    async def console_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)
        return error_page(request, exc)

    async def sign_in_needed(request: Request, exc: Exception) -> Response:
        return to_sign_in(request)

    app.add_exception_handler(ConsoleError, console_error)
    app.add_exception_handler(SignInNeeded, sign_in_needed)
    routes: list[tuple[str, str, Callable[..., Any]]] = [
        ("GET", "/", pages.overview_page),
        ("GET", "/live", pages.live_part),
        ("GET", "/charts.json", pages.charts_data),
        ("GET", "/batches", pages.batches_page),
        ("GET", "/batches/{batch_id}", pages.batch_page),
        ("GET", "/leads", pages.leads_page),
        ("POST", "/leads", pages.leads_search),
        ("GET", "/retry", actions.retry_preview),
        ("POST", "/retry", actions.retry_confirmed),
        ("GET", "/accounts/{account}/resume", actions.resume_page),
        ("POST", "/accounts/{account}/resume", actions.resume_confirmed),
        ("GET", "/accounts/{account}/clear", actions.clear_page),
        ("POST", "/accounts/{account}/clear", actions.clear_confirmed),
        ("GET", "/login", gate.login_page),
        ("POST", "/login", gate.login),
        ("POST", "/logout", gate.logout),
    ]
    for method, path, handler in routes:
        app.add_api_route(PREFIX + path, handler, methods=[method], include_in_schema=False)
    app.add_api_route(PREFIX, _to_overview, methods=["GET"], include_in_schema=False)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")


def _to_overview() -> Response:
    return RedirectResponse(f"{PREFIX}/", 308)
