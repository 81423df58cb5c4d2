"""The LiveVox simulator over real HTTP: sessions, search, the Append rules, the rate window,
scripted faults, dialling and the portal counts. Each test gets its own server on an ephemeral port
and a fake clock pinned at noon today (America/New_York), moved through ``POST /_admin/clock``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from appendq.simulator import SimulatorState, start_in_thread

NY = ZoneInfo("America/New_York")
TOKEN = {"LV-Access": "simulator-token"}
CREDS = {
    "clientName": "SIMCLIENT",
    "userName": "appendq",
    "password": "simulator-password",
    "agent": False,
}
ROOT = Path(__file__).resolve().parents[1]


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

    def login(self, **body: Any) -> str:
        answer = self.http.post("/session/v6.0/login", headers=TOKEN, json={**CREDS, **body})
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

    def campaign(self, campaign: int = 5001) -> dict[str, Any]:
        state = self.http.get("/_admin/state").json()
        return next(c for c in state["campaigns"] if c["id"] == campaign)

    def fault(self, kind: str, fault: dict[str, Any], times: int = 1) -> None:
        self.http.post(
            "/_admin/faults", json={"kind": kind, "fault": fault, "times": times}
        ).raise_for_status()


@pytest.fixture
def lv() -> Iterator[LV]:
    server, url = start_in_thread(SimulatorState(clock=FakeClock()))
    with httpx.Client(base_url=url, timeout=5) as http:
        yield LV(url, http)
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


# --- sessions ------------------------------------------------------------------------------


def test_login_reuses_session_validates_and_logs_out(lv: LV) -> None:
    # Given the default seed, When the same user logs in twice, validates, logs out and calls on,
    # Then both logins share one sessionId, validate is 204 then 404, and the call after is 401.
    sid = lv.login()
    assert lv.login() == sid
    answer = lv.http.post("/session/login", headers=TOKEN, json=CREDS).json()
    assert answer["sessionId"] == sid and {"userId", "clientId", "daysUntilPasswordExpires"} <= set(
        answer
    )
    assert lv.http.get(f"/session/v6.0/validate/{sid}").status_code == 204
    assert lv.http.delete(f"/session/v6.0/logout/{sid}").status_code == 204
    assert lv.http.get(f"/session/v6.0/validate/{sid}").status_code == 404
    refused = lv.append(sid, [rec(1)])
    assert refused.status_code == 401
    assert refused.json() == {"code": 401, "message": "session invalid or expired"}


@pytest.mark.parametrize(
    "headers, body",
    [
        ({"LV-Access": "wrong"}, CREDS),
        (TOKEN, {**CREDS, "password": "wrong"}),
        (TOKEN, {**CREDS, "userName": "APPENDQ"}),
        ({}, CREDS),
    ],
)
def test_login_refused(lv: LV, headers: dict[str, str], body: dict[str, Any]) -> None:
    # Given the default user, When a login has a bad token, password or user name, Then 401.
    answer = lv.http.post("/session/v6.0/login", headers=headers, json=body)
    assert answer.status_code == 401 and answer.json()["code"] == 401


def test_session_expires_after_idle_time_rolling(lv: LV) -> None:
    # Given session_idle_s=10, When calls come 8 s apart and then after 11 s of silence,
    # Then the rolling session survives the first ones and answers 401 after the silence.
    lv.reset(session_idle_s=10)
    sid = lv.login()
    for _ in range(3):
        lv.advance(8)
        assert lv.stats(sid).status_code == 200
    lv.advance(11)
    assert lv.stats(sid).status_code == 401
    assert lv.login() != sid


def test_admin_expire_sessions(lv: LV) -> None:
    # Given a logged-in session, When /_admin/sessions/expire is called, Then the session is 401.
    sid = lv.login()
    assert lv.http.post("/_admin/sessions/expire").json() == {"expired": 1}
    assert lv.append(sid, [rec(1)]).status_code == 401


def test_agent_and_other_roles_may_not_append(lv: LV) -> None:
    # Given an agent session and a Supervisor user, When they append, Then 403 (the agent may
    # still search campaigns) and nothing is stored.
    lv.reset(
        users=[
            {"user": "appendq", "password": "simulator-password"},
            {"user": "viewer", "password": "pw", "role": "Supervisor"},
        ]
    )
    agent = lv.login(agent=True)
    search = lv.http.post(
        "/campaign/v6.0/campaigns/search?count=10&offset=0",
        headers={"LV-Session": agent},
        json={"dateRange": day_range_ms()},
    )
    assert search.status_code == 200 and search.json()["campaign"]
    assert (
        lv.http.get("/campaign/v6.0/campaigns/5001", headers={"LV-Session": agent}).status_code
        == 403
    )
    assert lv.append(agent, [rec(1)]).status_code == 403
    viewer = lv.login(userName="viewer", password="pw")
    answer = lv.append(viewer, [rec(1)])
    assert answer.status_code == 403 and "Supervisor" in answer.json()["message"]
    assert lv.records() == []


# --- campaigns -----------------------------------------------------------------------------


def five_campaigns(lv: LV) -> str:
    lv.reset(
        services=[{"id": 1001}, {"id": 1002}],
        campaigns=[
            campaign(),
            campaign(id=5002, typeId=2, status="PAUSED"),
            campaign(id=5003, serviceId=1002, status="READY"),
            campaign(id=5004, status="STOPPED"),
            campaign(id=5005, day="yesterday"),
        ],
    )
    return lv.login()


def test_search_pages_in_id_order(lv: LV) -> None:
    # Given five campaigns, four of them today's, When today's are searched 2 at a time,
    # Then the pages follow `next` in id order and show no allowAppend.
    sid = five_campaigns(lv)
    body = {"dateRange": day_range_ms()}
    first = lv.search(sid, body, "count=2&offset=0").json()
    assert [c["id"] for c in first["campaign"]] == [5001, 5002]
    assert first["next"] == "/campaign/v6.0/campaigns/search?count=2&offset=2"
    second = lv.search(sid, body, path=first["next"].split("?")[0], query="count=2&offset=2")
    assert [c["id"] for c in second.json()["campaign"]] == [5003, 5004]
    assert second.json()["next"] == ""
    summary = {"id", "name", "typeId", "serviceId", "status", "uploadDate"}
    assert set(first["campaign"][0]) == summary


def test_search_filters(lv: LV) -> None:
    # Given five campaigns over two services, types, states and days, When searched by service,
    # type and state, or by an ISO-8601 range for yesterday, Then only the matching ones come.
    sid = five_campaigns(lv)
    narrow = {
        "dateRange": day_range_ms(),
        "service": {"service": [{"id": 1001}]},
        "type": {"type": [{"id": 1}]},
        "state": ["PLAYING", "PAUSED", "READY"],
    }
    found = lv.search(sid, narrow, path="/campaign/campaigns/search").json()
    assert [c["id"] for c in found["campaign"]] == [5001]
    yesterday = datetime.now(NY).date() - timedelta(days=1)
    iso = {"dateRange": {"from": f"{yesterday}T00:00:00", "to": f"{yesterday}T23:59:59"}}
    assert [c["id"] for c in lv.search(sid, iso).json()["campaign"]] == [5005]
    strings = {"dateRange": {k: str(v) for k, v in day_range_ms().items()}, "state": ["READY"]}
    assert [c["id"] for c in lv.search(sid, strings).json()["campaign"]] == [5003]


@pytest.mark.parametrize(
    "query, body",
    [
        ("count=10&offset=0", {}),
        ("offset=0", {"dateRange": day_range_ms()}),
        ("count=1001&offset=0", {"dateRange": day_range_ms()}),
        ("count=10&offset=0", {"dateRange": {"from": "soon", "to": 1}}),
    ],
)
def test_search_bad_requests(lv: LV, query: str, body: dict[str, Any]) -> None:
    # Given a session, When a search lacks dateRange, count, or has count > 1000, Then 400.
    answer = lv.http.post(
        f"/campaign/v6.0/campaigns/search?{query}", headers={"LV-Session": lv.login()}, json=body
    )
    assert answer.status_code == 400 and answer.json()["code"] == 400


def test_campaign_details_and_404(lv: LV) -> None:
    # Given the default seed, When campaign 5001 and 999 are fetched, Then details and a 404.
    head = {"LV-Session": lv.login()}
    details = lv.http.get("/campaign/v6.0/campaigns/5001", headers=head).json()
    assert details["typeId"] == 1 and details["serviceId"] == 1001
    assert details["status"] == "PLAYING" and details["buildDate"] == details["uploadDate"]
    assert lv.http.get("/campaign/v6.0/campaigns/999", headers=head).status_code == 404


# --- appends -------------------------------------------------------------------------------


def test_append_stores_records_in_fifo_order(lv: LV) -> None:
    # Given today's playing campaign, When two batches are appended (also unversioned paths),
    # Then both answer 204 and the records are stored in order with rising transaction ids.
    sid = lv.login()
    assert (
        lv.append(sid, [rec(1), rec(2, phone2=["2125559999"], firstName="Ann")]).status_code == 204
    )
    second = lv.http.put(
        "/campaign/campaigns/5001/transactions",
        headers={"LV-Session": sid},
        json={"records": [rec(3)]},
    )
    assert second.status_code == 204 and second.content == b""
    stored = lv.records()
    assert [r["account"] for r in stored] == ["A1", "A2", "A3"]
    ids = [r["accountTransactionId"] for r in stored]
    assert ids == sorted(ids) and len(set(ids)) == 3 and "receivedAt" in stored[0]
    assert stored[1]["phone2"] == ["2125559999"] and stored[1]["firstName"] == "Ann"
    counts = lv.campaign()
    assert (counts["uploaded"], counts["loaded"], counts["total"], counts["remaining"]) == (
        3,
        3,
        3,
        3,
    )
    assert [c["records"] for c in lv.calls("append")] == [2, 1]


@pytest.mark.parametrize(
    "records, message",
    [
        ([rec(i) for i in range(10_001)], "10001 records"),
        ([], "empty"),
        ([rec(0), {"account": "A1"}], "record 1: phone1 is required"),
        ([rec(0, phone2=[f"21255500{i:02d}" for i in range(30)])], "record 0: 31 phone numbers"),
        ([rec(0), rec(1), rec(2, comment="hi")], "record 2: field 'comment' is not a LiveVox"),
        ([rec(0, account="x" * 51)], "record 0: account is longer than 50"),
        ([rec(0, extra20="x" * 151)], "record 0: extra20 is longer than 150"),
        ([rec(0, dob="1399")], "record 0: dob must be MMDD"),
    ],
)
def test_append_batch_refused_400(lv: LV, records: list[dict[str, Any]], message: str) -> None:
    # Given today's playing campaign, When a batch breaks a record rule, Then 400 naming the
    # record index and field, and nothing is stored.
    lv.reset(rate_max_calls=100)
    answer = lv.append(lv.login(), records)
    assert answer.status_code == 400 and answer.json()["code"] == 400
    assert message in answer.json()["message"]
    assert lv.records() == []


def test_thirty_phones_are_accepted(lv: LV) -> None:
    # Given today's campaign, When a record has phone1 and 29 phone2, Then it is accepted.
    phones = [f"21255500{i:02d}" for i in range(29)]
    assert lv.append(lv.login(), [rec(0, phone2=phones)]).status_code == 204


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"status": "STOPPED"}, "is STOPPED"),
        ({"status": "DONE"}, "is DONE"),
        ({"status": "LOADING"}, "is LOADING"),
        ({"day": "yesterday"}, "not one of today's campaigns"),
        ({"typeId": 2}, "type 2 (Callback)"),
        ({"typeId": 4}, "type 4 (Scheduled Callback)"),
        ({"typeId": 5}, "type 5 (Manual)"),
        ({"allowAppend": False}, "Allow Append"),
        ({"requeue": True}, "requeue"),
    ],
)
def test_append_campaign_refused_409(lv: LV, overrides: dict[str, Any], message: str) -> None:
    # Given a campaign that may not take appends, When a batch is appended, Then 409 saying why.
    lv.reset(campaigns=[campaign(**overrides)])
    answer = lv.append(lv.login(), [rec(1)])
    assert answer.status_code == 409 and message in answer.json()["message"]
    assert lv.records() == []


def test_client_appends_off_and_unknown_campaign(lv: LV) -> None:
    # Given the client setting "campaign appends allowed" off, When appending, Then 409; and
    # When appending to an unknown campaign, Then 404.
    lv.reset(clients=[{"name": "SIMCLIENT", "appends_allowed": False}])
    sid = lv.login()
    answer = lv.append(sid, [rec(1)])
    assert answer.status_code == 409 and "client SIMCLIENT" in answer.json()["message"]
    assert lv.append(sid, [rec(1)], campaign=999).status_code == 404


def test_admin_patch_campaign_changes_acceptance(lv: LV) -> None:
    # Given a created campaign 5002, When it is stopped and played again through /_admin,
    # Then appends answer 409 while stopped and 204 after.
    created = lv.http.post("/_admin/campaigns", json={"id": 5002, "serviceId": 1001})
    assert created.status_code == 201 and created.json()["status"] == "PLAYING"
    sid = lv.login()
    lv.http.patch("/_admin/campaigns/5002", json={"status": "STOPPED"}).raise_for_status()
    assert lv.append(sid, [rec(1)], campaign=5002).status_code == 409
    lv.http.patch("/_admin/campaigns/5002", json={"status": "PLAYING"}).raise_for_status()
    assert lv.append(sid, [rec(1)], campaign=5002).status_code == 204
    assert lv.http.patch("/_admin/campaigns/5002", json={"status": "NAPPING"}).status_code == 400
    assert lv.http.post("/_admin/reset", json={"campaings": []}).status_code == 400


def test_poison_record_refuses_whole_batch(lv: LV) -> None:
    # Given poison_phones, When a batch holds POISON at record 17 or a poison phone at record 3,
    # Then the whole batch answers 400 naming the first bad record, and nothing is stored.
    lv.reset(poison_phones=["2125550003"], rate_max_calls=10)
    sid = lv.login()
    batch = [rec(i) for i in range(20)]
    batch[17]["phone1"] = "POISON"
    assert lv.append(sid, batch).json()["message"] == "record 3: phone1 rejected"
    answer = lv.append(sid, [r for i, r in enumerate(batch) if i != 3])
    assert answer.status_code == 400 and answer.json()["message"] == "record 16: phone1 rejected"
    answer = lv.append(sid, [rec(0, extra4="POISON")])
    assert answer.json()["message"] == "record 0: extra4 rejected"
    assert lv.records() == []


# --- the rate window -----------------------------------------------------------------------


def test_sixth_append_in_window_is_429(lv: LV) -> None:
    # Given 5 calls per 60 s, When 6 appends come within the window, Then the 6th is 429 and the
    # call log shows it; When the window has passed, Then appends are accepted again.
    sid = lv.login()
    statuses = [lv.append(sid, [rec(i)]).status_code for i in range(6)]
    assert statuses == [204] * 5 + [429]
    assert [c["status"] for c in lv.calls("append")] == [204] * 5 + [429]
    assert len(lv.records()) == 5
    lv.advance(60)
    assert lv.append(sid, [rec(9)]).status_code == 204


def test_refused_appends_count_in_window(lv: LV) -> None:
    # Given 2 calls per window and a stopped campaign, When a refused and an accepted append are
    # followed by a third, Then the third is 429: refused attempts take a slot too.
    lv.reset(rate_max_calls=2, campaigns=[campaign(), campaign(id=5002, status="STOPPED")])
    sid = lv.login()
    assert lv.append(sid, [rec(1)], campaign=5002).status_code == 409
    assert lv.append(sid, [rec(1)]).status_code == 204
    answer = lv.append(sid, [rec(2)])
    assert answer.status_code == 429 and "rate limit" in answer.json()["message"]


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, status, stored",
    [
        ({"status": 500}, 500, 0),
        ({"status": 502, "apply": True}, 502, 1),
        ({"status": 429}, 429, 0),
    ],
)
def test_status_faults(lv: LV, fault: dict[str, Any], status: int, stored: int) -> None:
    # Given a status fault on the next append, When appending, Then that status with an error
    # body, the batch applied only with apply=true, and the attempt counted in the window.
    lv.fault("append", fault)
    answer = lv.append(lv.login(), [rec(1)])
    assert answer.status_code == status and answer.json()["code"] == status
    assert len(lv.records()) == stored
    assert lv.calls("append")[0]["fault"]["status"] == status
    assert lv.http.get("/_admin/state").json()["rate_window_calls"] == 1


@pytest.mark.parametrize("apply, stored", [(False, 0), (True, 1)])
def test_drop_fault(lv: LV, apply: bool, stored: int) -> None:
    # Given a drop fault, When appending, Then the client sees the connection closed without an
    # answer, the records are stored only with apply=true, and the call log has status null.
    lv.fault("append", {"drop": True, "apply": apply})
    sid = lv.login()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        lv.append(sid, [rec(1)])
    assert len(lv.records()) == stored
    assert lv.calls("append")[0]["status"] is None
    assert lv.append(sid, [rec(2)]).status_code == 204  # a fresh connection works


def test_stall_fault_past_client_timeout(lv: LV) -> None:
    # Given a 1 s stall with apply=true, When the client waits 0.2 s, Then it times out but the
    # batch is already stored; and a stall with status 503 answers 503 late without applying.
    lv.fault("append", {"stall_s": 1.0, "apply": True})
    sid = lv.login()
    with pytest.raises(httpx.ReadTimeout):
        lv.append(sid, [rec(1)], timeout=0.2)
    assert [r["account"] for r in lv.records()] == ["A1"]
    lv.fault("append", {"stall_s": 0.3, "status": 503})
    started = time.monotonic()
    assert lv.append(sid, [rec(2)]).status_code == 503
    assert time.monotonic() - started >= 0.3 and len(lv.records()) == 1


def test_stall_without_apply_lands_late(lv: LV) -> None:
    # Given a 0.5 s stall without apply, When the client gives up after 0.1 s, Then nothing has
    # landed yet but the records land when the stall ends.
    lv.fault("append", {"stall_s": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        lv.append(lv.login(), [rec(1)], timeout=0.1)
    assert lv.records() == []
    deadline = time.monotonic() + 3
    while not lv.records() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["account"] for r in lv.records()] == ["A1"]


def test_faults_on_login_search_transactions(lv: LV) -> None:
    # Given faults queued for login (2 calls), search and transactions, When those calls are
    # made, Then each faulted call fails as scripted and the next call of its kind works.
    lv.fault("login", {"status": 503}, times=2)
    for _ in range(2):
        assert lv.http.post("/session/login", headers=TOKEN, json=CREDS).status_code == 503
    head = {"LV-Session": lv.login()}
    lv.fault("search", {"status": 500})
    search = "/campaign/v6.0/campaigns/search?count=10&offset=0"
    assert lv.http.post(search, headers=head, json={"dateRange": day_range_ms()}).status_code == 500
    lv.fault("transactions", {"drop": True})
    listing = "/campaign/v6.0/campaigns/5001/transactionList?count=10&offset=0"
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        lv.http.get(listing, headers=head)
    assert lv.http.get(listing, headers=head).status_code == 200
    assert lv.http.get("/_admin/faults").json() == {"faults": {}}
    lv.fault("append", {"status": 500}, times=3)
    assert lv.http.delete("/_admin/faults").status_code == 204
    assert lv.append(head["LV-Session"], [rec(1)]).status_code == 204


# --- dialling and counts -------------------------------------------------------------------


def test_dialling_moves_completed_and_remaining(lv: LV) -> None:
    # Given 10 initial records (2 more invalid) dialled at 1/s, When 4 s pass, the campaign is
    # paused for 10 s, then plays on and 2 records are appended, Then the portal counts follow.
    lv.reset(dial_per_s=1, campaigns=[campaign(initialRecords=10, initialInvalid=2)])
    lv.advance(4)
    c = lv.campaign()
    assert (c["uploaded"], c["loaded"], c["completed"], c["remaining"], c["percent_done"]) == (
        12,
        10,
        4,
        6,
        40.0,
    )
    lv.http.patch("/_admin/campaigns/5001", json={"status": "PAUSED"}).raise_for_status()
    lv.advance(10)
    assert lv.campaign()["completed"] == 4
    lv.http.patch("/_admin/campaigns/5001", json={"status": "PLAYING"}).raise_for_status()
    lv.advance(100)
    assert lv.campaign()["remaining"] == 0 and lv.campaign()["status"] == "PLAYING"
    assert lv.append(lv.login(), [rec(1), rec(2)]).status_code == 204
    c = lv.campaign()
    assert (c["uploaded"], c["total"], c["completed"], c["remaining"]) == (14, 12, 10, 2)
    stats = lv.http.post(
        "/realtime/v6.0/service/stats", headers={"LV-Session": lv.login()}, json={}
    ).json()["stats"]
    assert stats == [
        {
            "serviceId": 1001,
            "serviceName": "Sales",
            "loaded": 12,
            "remaining": 2,
            "percentComplete": 83.33,
            "playingDialable": 2,
        }
    ]


def test_drained_campaign_reports_when_service_does_not_wait(lv: LV) -> None:
    # Given a service with report_at_end_of_day=false and 2 records dialled at 1/s, When 3 s
    # pass, Then the campaign is DONE and appends are refused with 409.
    lv.reset(
        dial_per_s=1,
        services=[{"id": 1001, "report_at_end_of_day": False}],
        campaigns=[campaign(initialRecords=2)],
    )
    sid = lv.login()
    lv.advance(3)
    assert lv.campaign()["status"] == "DONE"
    answer = lv.append(sid, [rec(1)])
    assert answer.status_code == 409 and "DONE" in answer.json()["message"]


def test_transaction_list_pages_initial_then_appended(lv: LV) -> None:
    # Given 3 initial records and 4 appended ones, When transactionList is read 5 at a time,
    # Then 5 then 2 transactions come back, initial first, appended with phones and consumer.
    lv.reset(campaigns=[campaign(initialRecords=3)])
    head = {"LV-Session": lv.login()}
    appended = [
        rec(1, phone2=["2125550002"], firstName="Ann", lastName="Lee", extra1="x"),
        rec(2),
        rec(3),
        rec(4),
    ]
    assert lv.append(head["LV-Session"], appended).status_code == 204
    base = "/campaign/v6.0/campaigns/5001/transactionList"
    first = lv.http.get(f"{base}?count=5&offset=0", headers=head).json()
    assert len(first["transaction"]) == 5 and first["next"] == f"{base}?count=5&offset=5"
    second = lv.http.get(first["next"], headers=head).json()
    assert [t["account"] for t in second["transaction"]] == ["A3", "A4"]
    assert second["next"] == ""
    mine = first["transaction"][3]
    assert mine["phone"] == [
        {"phone": "2125550001", "ordinal": 1},
        {"phone": "2125550002", "ordinal": 2},
    ]
    assert mine["consumer"] == {"firstName": "Ann", "lastName": "Lee", "email": None}
    assert mine["extra"] == {"extra1": "x"} and mine["serviceId"] == 1001
    assert mine["accountTransactionId"] == lv.records()[0]["accountTransactionId"]
    assert lv.http.get(f"{base}?count=1001&offset=0", headers=head).status_code == 400


# --- the command ---------------------------------------------------------------------------


def test_command_serves_until_sigterm(tmp_path: Path) -> None:
    # Given a config file and a --rate-max-calls option, When `python -m appendq.simulator` runs
    # on a free port, Then it prints its URL, serves the file's campaigns with the option over
    # the file's value, and exits 0 on SIGTERM.
    config = tmp_path / "sim.json"
    config.write_text(json.dumps({"campaigns": [campaign(id=7001)], "rate_max_calls": 3}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appendq.simulator",
            "--port",
            "0",
            "--config",
            str(config),
            "--rate-max-calls",
            "2",
            "--rate-window-s",
            "5",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        state = httpx.get(f"{line.rsplit(' ', 1)[1]}/_admin/state", timeout=5).json()
        assert [c["id"] for c in state["campaigns"]] == [7001]
        assert state["settings"]["rate_max_calls"] == 2
        assert state["settings"]["rate_window_s"] == 5.0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
