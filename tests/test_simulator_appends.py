"""The LiveVox simulator over real HTTP: the Append rules (records, campaign, client), poison
records and the rate window. Each test gets its own server on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.sim_http import LV, campaign, rec, running_simulator


@pytest.fixture
def lv() -> Iterator[LV]:
    with running_simulator() as simulator:
        yield simulator


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
