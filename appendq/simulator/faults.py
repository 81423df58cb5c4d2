"""Scripted failures: a fault queued for a kind of call is consumed by the next calls of that kind,
``times`` calls in all (``POST /_admin/faults {"kind", "fault", "times", "client"}``).

A fault is read after the request body, before any processing::

    {"status": 500}                      answer 500 with an error body; nothing applied
    {"status": 500, "apply": true}       process the call normally, then answer 500 anyway
    {"stall_s": 5, "apply": true}        process the call, sleep 5 s, then give its normal answer
    {"stall_s": 5}                       sleep 5 s, then process the call and give its normal answer
                                         (an append lands late, after the client may have given up)
    {"stall_s": 5, "status": 503}        sleep 5 s, answer 503; nothing applied
    {"drop": true, "apply": false}       close the socket without answering; nothing applied
    {"drop": true, "apply": true}        process the call, then close the socket without answering

Faulted appends still take a slot of their client's rate window and are logged.

A fault with a ``client`` (``"client": "ACME"``) is consumed only by that client's calls: the
client of the call's session, or for a login the body's ``clientName`` (see
:mod:`appendq.simulator.admin`); one without (``null``) by the next call of its kind, whoever
makes it. A call takes the first fault of its kind, in the order they were queued, that is
unscoped or scoped to its client, so a fault waiting for one client never holds back the faults
queued after it for others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = (
    "append",
    "login",
    "search",
    "transactions",
    "campaign",
    "stats",
    "validate",
    "logout",
)


@dataclass(frozen=True)
class Fault:
    status: int | None = None
    apply: bool = False
    stall_s: float = 0.0
    drop: bool = False

    @property
    def applies_first(self) -> bool:
        """Whether the call is processed before the stall/answer/drop."""
        return self.apply

    @property
    def applies_late(self) -> bool:
        """A pure stall without ``apply``: processed after the stall, answered normally."""
        return not self.apply and self.status is None and not self.drop

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "apply": self.apply,
            "stall_s": self.stall_s,
            "drop": self.drop,
        }


def parse_fault(data: Any) -> Fault:
    if not isinstance(data, Mapping):
        raise ValueError("fault must be a JSON object")
    unknown = set(data) - {"status", "apply", "stall_s", "drop"}
    if unknown:
        raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
    status = data.get("status")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        raise ValueError("fault status must be an HTTP status code")
    stall = data.get("stall_s", 0)
    if isinstance(stall, bool) or not isinstance(stall, int | float) or stall < 0:
        raise ValueError("fault stall_s must be a number of seconds >= 0")
    flags = {k: data.get(k, False) for k in ("apply", "drop")}
    if not all(isinstance(v, bool) for v in flags.values()):
        raise ValueError("fault apply and drop must be booleans")
    fault = Fault(status, flags["apply"], float(stall), flags["drop"])
    if fault.status is None and not fault.drop and not fault.stall_s:
        raise ValueError("a fault needs status, stall_s or drop")
    return fault


@dataclass
class _Pending:
    fault: Fault
    times: int
    client: str | None

    def as_json(self) -> dict[str, Any]:
        return {"fault": self.fault.as_json(), "times": self.times, "client": self.client}


class FaultQueue:
    """Faults waiting per kind of call, each for a number of calls and optionally for one client
    (not thread-safe by itself)."""

    def __init__(self) -> None:
        self._queues: dict[str, list[_Pending]] = {}

    def push(self, kind: str, fault: Fault, times: int, client: str | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        self._queues.setdefault(kind, []).append(_Pending(fault, times, client))

    def take(self, kind: str, client: str | None = None) -> Fault | None:
        """The fault for a call of ``kind`` by ``client`` (None: no known client), used once."""
        queue = self._queues.get(kind, [])
        for index, entry in enumerate(queue):
            if entry.client is None or entry.client == client:
                entry.times -= 1
                if entry.times <= 0:
                    del queue[index]
                return entry.fault
        return None

    def clear(self) -> None:
        self._queues.clear()

    def pending(self) -> dict[str, list[dict[str, Any]]]:
        return {kind: [e.as_json() for e in queue] for kind, queue in self._queues.items() if queue}
