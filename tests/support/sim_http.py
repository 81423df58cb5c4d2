"""The LiveVox simulator over real HTTP, for its own tests (``tests/test_simulator*.py``): a server
on an ephemeral port with a fake clock pinned at noon today (America/New_York), moved through
``POST /_admin/clock``, and a thin client of its API and admin routes (several clients:
``seed("ACME", "BETA")``, ``login_as``, ``fault(..., client=)``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from appendq.simulator import SimulatorState, seeded_clients, start_in_thread

NY = ZoneInfo("America/New_York")
TOKEN = {"LV-Access": "simulator-token"}
CREDS = {
    "clientName": "SIMCLIENT",
    "userName": "appendq",
    "password": "simulator-password",
    "agent": False,
}


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.combine(datetime.now(NY).date(), dtime(12), NY).timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class LV:
    url: str
    http: httpx.Client

    def reset(self, **config: Any) -> None:
        self.http.post("/_admin/reset", json=config).raise_for_status()

    def seed(self, *clients: str, **config: Any) -> None:
        """Reset to one seeded LiveVox client per name (appendq.simulator.config.seeded_clients:
        the k-th has service 1001+100k and campaign 5001+100k), ``config`` over it."""
        self.reset(**{**seeded_clients(clients), **config})

    def login(self, **body: Any) -> str:
        answer = self.http.post("/session/v6.0/login", headers=TOKEN, json={**CREDS, **body})
        answer.raise_for_status()
        sid: str = answer.json()["sessionId"]
        return sid

    def login_as(self, client: str, token: str = TOKEN["LV-Access"]) -> str:
        """A session of a seeded client's user, logged in with ``token``."""
        answer = self.http.post(
            "/session/v6.0/login",
            headers={"LV-Access": token},
            json={**CREDS, "clientName": client},
        )
        answer.raise_for_status()
        sid: str = answer.json()["sessionId"]
        return sid

    def append(
        self, sid: str, records: list[dict[str, Any]], campaign: int = 5001, **kw: Any
    ) -> httpx.Response:
        return self.http.put(
            f"/campaign/v6.0/campaigns/{campaign}/transactions",
            headers={"LV-Session": sid},
            json={"records": records},
            **kw,
        )

    def search(
        self,
        sid: str,
        body: dict[str, Any],
        query: str = "count=10&offset=0",
        path: str = "/campaign/v6.0/campaigns/search",
    ) -> httpx.Response:
        return self.http.post(f"{path}?{query}", headers={"LV-Session": sid}, json=body)

    def stats(self, sid: str) -> httpx.Response:
        return self.http.post("/realtime/v6.0/service/stats", headers={"LV-Session": sid}, json={})

    def advance(self, seconds: float) -> None:
        self.http.post("/_admin/clock", json={"advance_s": seconds}).raise_for_status()

    def records(self, campaign: int = 5001) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.http.get(f"/_admin/campaigns/{campaign}/records").json()
        return found

    def calls(self, kind: str) -> list[dict[str, Any]]:
        return [c for c in self.http.get("/_admin/calls").json() if c["kind"] == kind]

    def state(self) -> dict[str, Any]:
        found: dict[str, Any] = self.http.get("/_admin/state").json()
        return found

    def campaign(self, campaign: int = 5001) -> dict[str, Any]:
        state = self.http.get("/_admin/state").json()
        return next(c for c in state["campaigns"] if c["id"] == campaign)

    def fault(
        self, kind: str, fault: dict[str, Any], times: int = 1, client: str | None = None
    ) -> None:
        """Queue a fault; with ``client``, for that client's calls only."""
        body: dict[str, Any] = {"kind": kind, "fault": fault, "times": times}
        if client is not None:
            body["client"] = client
        self.http.post("/_admin/faults", json=body).raise_for_status()


@contextmanager
def running_simulator() -> Iterator[LV]:
    """A simulator of its own, on a fake clock, and a client of it; shut down after."""
    server, url = start_in_thread(SimulatorState(clock=FakeClock()))
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            yield LV(url, http)
    finally:
        server.shutdown()
        server.server_close()


def rec(i: int, **extra: Any) -> dict[str, Any]:
    return {"phone1": f"212555{i:04d}", "account": f"A{i}", **extra}


def campaign(**overrides: Any) -> dict[str, Any]:
    return {
        "id": 5001,
        "serviceId": 1001,
        "typeId": 1,
        "status": "PLAYING",
        "allowAppend": True,
        **overrides,
    }


def day_range_ms(day_offset: int = 0) -> dict[str, int]:
    day = datetime.now(NY).date() + timedelta(days=day_offset)
    start = datetime.combine(day, dtime(0), NY).timestamp()
    return {"from": int(start * 1000), "to": int(start * 1000) + 86_400_000 - 1}
