"""The LiveVox simulator over real HTTP: scripted faults (status, drop, stall) on every kind of
call, dialling and the portal counts, the transaction list. Each test gets its own server on a
fake clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.sim_http import CREDS, LV, TOKEN, campaign, day_range_ms, rec, running_simulator


@pytest.fixture
def lv() -> Iterator[LV]:
    with running_simulator() as simulator:
        yield simulator


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
