"""The LiveVox calls the simulator answers, as plain functions of (state, request, path match).

Paths are matched without their leading slash and without the version segment, so
``/campaign/v6.0/campaigns/5001`` and ``/campaign/campaigns/5001`` are the same route (unless
the dialect is ``unversioned_only``: then the server answers versioned paths 404).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from appendq.simulator.model import SimError
from appendq.simulator.state import SimulatorState

VERSION = re.compile(r"^v\d+(\.\d+)*$")


@dataclass(frozen=True)
class Request:
    method: str
    #: Path without leading slash, version segment and query: ``campaign/campaigns/5001``.
    path: str
    #: Path as sent, without query: ``/campaign/v6.0/campaigns/5001``.
    raw_path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_body: bytes = b""

    @cached_property
    def body(self) -> Any:
        """The JSON body (``{}`` when empty), parsed once."""
        if not self.raw_body.strip():
            return {}
        try:
            return json.loads(self.raw_body)
        except (ValueError, UnicodeDecodeError):
            raise SimError(400, "request body is not valid JSON") from None

    def int_param(self, name: str) -> int:
        values = self.query.get(name)
        if not values:
            raise SimError(400, f"query parameter {name} is required")
        try:
            return int(values[0])
        except ValueError:
            raise SimError(400, f"query parameter {name} must be an integer") from None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None


Action = Callable[[SimulatorState, Request, "re.Match[str]"], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    kind: str
    action: Action


def route(method: str, pattern: str, kind: str, action: Action) -> Route:
    return Route(method, re.compile(pattern + "$"), kind, action)


def find(routes: Sequence[Route], method: str, path: str) -> tuple[Route, re.Match[str]] | Reply:
    """The route for a request, or the 404/405 to answer."""
    allowed = False
    for candidate in routes:
        match = candidate.pattern.match(path)
        if match and candidate.method == method:
            return candidate, match
        allowed = allowed or match is not None
    if allowed:
        return Reply(405, {"code": 405, "message": f"method {method} not supported here"})
    return Reply(404, {"code": 404, "message": "no such resource"})


def versioned(raw_path: str) -> bool:
    """Whether a path carries a version segment (``/session/v6.0/login``)."""
    parts = [p for p in raw_path.split("/") if p]
    return len(parts) > 1 and VERSION.match(parts[1]) is not None


def normalise(raw_path: str) -> str:
    parts = [p for p in raw_path.split("/") if p]
    if len(parts) > 1 and VERSION.match(parts[1]):
        del parts[1]
    return "/".join(parts)


def _session(request: Request) -> str | None:
    return request.header("LV-Session")


def _login(state: SimulatorState, request: Request, _: re.Match[str]) -> Reply:
    return Reply(200, state.login(request.header("LV-Access"), request.body))


def _validate(state: SimulatorState, _: Request, match: re.Match[str]) -> Reply:
    if state.validate(match["sid"]):
        return Reply(204)
    return Reply(404, {"code": 404, "message": "session invalid or expired"})


def _logout(state: SimulatorState, _: Request, match: re.Match[str]) -> Reply:
    if state.logout(match["sid"]):
        return Reply(204)
    return Reply(404, {"code": 404, "message": "session invalid or expired"})


def _search(state: SimulatorState, request: Request, _: re.Match[str]) -> Reply:
    count, offset = request.int_param("count"), request.int_param("offset")
    found, more = state.search(_session(request), request.body, count, offset)
    return Reply(200, {"next": _next(request, count, offset, more), "campaign": found})


def _campaign(state: SimulatorState, request: Request, match: re.Match[str]) -> Reply:
    return Reply(200, state.campaign(_session(request), int(match["cid"])))


def _append(state: SimulatorState, request: Request, match: re.Match[str]) -> Reply:
    state.append(_session(request), int(match["cid"]), request.body)
    return Reply(204)


def _transactions(state: SimulatorState, request: Request, match: re.Match[str]) -> Reply:
    count, offset = request.int_param("count"), request.int_param("offset")
    page, more = state.transactions(_session(request), int(match["cid"]), count, offset)
    return Reply(200, {"next": _next(request, count, offset, more), "transaction": page})


def _stats(state: SimulatorState, request: Request, _: re.Match[str]) -> Reply:
    return Reply(200, state.stats(_session(request)))


def _next(request: Request, count: int, offset: int, more: bool) -> str:
    return f"{request.raw_path}?count={count}&offset={offset + count}" if more else ""


LIVEVOX_ROUTES = (
    route("POST", r"session/login", "login", _login),
    route("GET", r"session/validate/(?P<sid>[^/]+)", "validate", _validate),
    route("DELETE", r"session/logout/(?P<sid>[^/]+)", "logout", _logout),
    route("POST", r"campaign/campaigns/search", "search", _search),
    route("GET", r"campaign/campaigns/(?P<cid>\d+)", "campaign", _campaign),
    route("PUT", r"campaign/campaigns/(?P<cid>\d+)/transactions", "append", _append),
    route("GET", r"campaign/campaigns/(?P<cid>\d+)/transactionList", "transactions", _transactions),
    route("POST", r"realtime/service/stats", "stats", _stats),
)
