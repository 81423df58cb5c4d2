"""``/_admin``: JSON endpoints (no auth) that script the simulator for tests and demos.

=======  ==========================================  =========================================
method   path                                        body / answer
=======  ==========================================  =========================================
POST     /_admin/reset                               config (``{}``: default seed) -> state
GET      /_admin/state                               -> everything, campaigns with portal counts
                                                     and "client"; "rate_window_calls" (all
                                                     clients) and "rate_window_calls_by_client"
                                                     ({name: n}, every client)
POST     /_admin/campaigns                           campaign (config shape) -> campaign
PATCH    /_admin/campaigns/{id}                      any of name, serviceId, typeId, status,
                                                     allowAppend, requeue, day -> campaign
GET      /_admin/campaigns/{id}/records              -> [record as received + accountTransactionId,
                                                        receivedAt], in append (FIFO) order
PATCH    /_admin/clients/{name}                      {"appends_allowed": bool} -> client
PATCH    /_admin/services/{id}                       {"name", "report_at_end_of_day"} -> service
GET      /_admin/calls                               -> [{"at", "method", "path", "kind",
                                                         "client", "status", "campaignId",
                                                         "records", "fault"}], oldest first
DELETE   /_admin/calls                               -> 204
POST     /_admin/sessions/expire                     -> {"expired": n}
GET      /_admin/faults                              -> {"faults": {kind: [{"fault", "times",
                                                         "client"}]}}, oldest first
POST     /_admin/faults                              {"kind", "fault", "times", "client"}
                                                     (times default 1, client default null:
                                                     any client's calls) -> pending faults
DELETE   /_admin/faults                              -> 204
GET      /_admin/clock                               -> {"now", "offset_s"}
POST     /_admin/clock                               {"offset_s": N} and/or {"advance_s": N}
GET      /_admin/dialect                             -> the dialect (every field)
POST     /_admin/dialect                             {field: value, ...} (optionally "preset"
                                                     first) -> the dialect; reset restores the
                                                     configured one
=======  ==========================================  =========================================

A call's client (``"client"`` of a call and of a fault) is the client of its LV-Session session
(validate/logout without one: of the session in their path), or for a login the clientName of
its body if that names a client; null when there is none (see :mod:`appendq.simulator.faults`).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from appendq.simulator.faults import parse_fault
from appendq.simulator.routes import Reply, Request, route
from appendq.simulator.state import SimulatorState


def _reset(state: SimulatorState, request: Request, _: re.Match[str]) -> Reply:
    state.reset(_object(request.body))
    return Reply(200, state.snapshot())


def _state(state: SimulatorState, _: Request, __: re.Match[str]) -> Reply:
    return Reply(200, state.snapshot())


def _add_campaign(state: SimulatorState, request: Request, _: re.Match[str]) -> Reply:
    return Reply(201, state.add_campaign(request.body))


def _patch_campaign(state: SimulatorState, request: Request, match: re.Match[str]) -> Reply:
    return Reply(200, state.patch_campaign(int(match["cid"]), request.body))


def _records(state: SimulatorState, _: Request, match: re.Match[str]) -> Reply:
    return Reply(200, state.records(int(match["cid"])))


def _patch_client(state: SimulatorState, request: Request, match: re.Match[str]) -> Reply:
    return Reply(200, asdict(state.patch_client(match["name"], request.body)))


def _patch_service(state: SimulatorState, request: Request, match: re.Match[str]) -> Reply:
    return Reply(200, asdict(state.patch_service(int(match["sid"]), request.body)))


def _calls(state: SimulatorState, _: Request, __: re.Match[str]) -> Reply:
    return Reply(200, state.calls())


def _clear_calls(state: SimulatorState, _: Request, __: re.Match[str]) -> Reply:
    state.clear_calls()
    return Reply(204)


def _expire(state: SimulatorState, _: Request, __: re.Match[str]) -> Reply:
    return Reply(200, {"expired": state.expire_sessions()})


def _faults(state: SimulatorState, _: Request, __: re.Match[str]) -> Reply:
    return Reply(200, {"faults": state.pending_faults()})


def _add_fault(state: SimulatorState, request: Request, match: re.Match[str]) -> Reply:
    body = _object(request.body)
    unknown = set(body) - {"kind", "fault", "times", "client"}
    if unknown:
        raise ValueError(f"unknown fault request keys: {', '.join(sorted(unknown))}")
    times = body.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int):
        raise ValueError("times must be an integer")
    client = body.get("client")
    if client is not None and not isinstance(client, str):
        raise ValueError("client must be a client name or null")
    state.push_fault(str(body.get("kind")), parse_fault(body.get("fault")), times, client)
    return _faults(state, request, match)


def _clear_faults(state: SimulatorState, _: Request, __: re.Match[str]) -> Reply:
    state.clear_faults()
    return Reply(204)


def _clock(state: SimulatorState, request: Request, _: re.Match[str]) -> Reply:
    if request.method == "POST":
        body = _object(request.body)
        values = [body.get(k) for k in ("offset_s", "advance_s")]
        if not any(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ValueError('clock takes {"offset_s": N} or {"advance_s": N}')
        state.set_clock(*(None if v is None else float(v) for v in values))
    return Reply(200, {"now": state.now(), "offset_s": state.clock_offset})


def _dialect(state: SimulatorState, request: Request, _: re.Match[str]) -> Reply:
    if request.method == "POST":
        return Reply(200, state.set_dialect(_object(request.body)).as_json())
    return Reply(200, state.get_dialect().as_json())


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


ADMIN_ROUTES = (
    route("POST", r"_admin/reset", "admin", _reset),
    route("GET", r"_admin/state", "admin", _state),
    route("POST", r"_admin/campaigns", "admin", _add_campaign),
    route("PATCH", r"_admin/campaigns/(?P<cid>\d+)", "admin", _patch_campaign),
    route("GET", r"_admin/campaigns/(?P<cid>\d+)/records", "admin", _records),
    route("PATCH", r"_admin/clients/(?P<name>[^/]+)", "admin", _patch_client),
    route("PATCH", r"_admin/services/(?P<sid>\d+)", "admin", _patch_service),
    route("GET", r"_admin/calls", "admin", _calls),
    route("DELETE", r"_admin/calls", "admin", _clear_calls),
    route("POST", r"_admin/sessions/expire", "admin", _expire),
    route("GET", r"_admin/faults", "admin", _faults),
    route("POST", r"_admin/faults", "admin", _add_fault),
    route("DELETE", r"_admin/faults", "admin", _clear_faults),
    route("GET", r"_admin/clock", "admin", _clock),
    route("POST", r"_admin/clock", "admin", _clock),
    route("GET", r"_admin/dialect", "admin", _dialect),
    route("POST", r"_admin/dialect", "admin", _dialect),
)
