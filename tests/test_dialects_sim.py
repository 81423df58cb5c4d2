"""The simulator's LiveVox dialects over real HTTP: each field of appendq.simulator.dialect changes
the answers it says it changes, and the three ways of setting a dialect (configuration, /_admin,
command line / contract snapshot) merge as documented."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest

from appendq.simulator import SimulatorState, start_in_thread
from appendq.simulator.command import build_config
from appendq.simulator.dialect import (
    CHOICES,
    DIALECTS,
    Dialect,
    dialect_from_contract,
    parse_dialect,
    parse_dialect_option,
)
from tests.conftest import Sim
from tests.support.sim_http import LV, FakeClock, day_range_ms, rec

TX = "/campaign/v6.0/campaigns/5001/transactionList?count=100&offset=0"


@pytest.fixture
def lv() -> Iterator[LV]:
    server, url = start_in_thread(SimulatorState(clock=FakeClock()))
    with httpx.Client(base_url=url, timeout=5) as http:
        yield LV(url, http)
    server.shutdown()
    server.server_close()


def play(lv: LV, **fields: Any) -> dict[str, Any]:
    answer = lv.http.post("/_admin/dialect", json=fields)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def transactions(lv: LV, sid: str) -> list[dict[str, Any]]:
    answer = lv.http.get(TX, headers={"LV-Session": sid})
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()["transaction"]
    return found


# --- each field ----------------------------------------------------------------------------

PHONES = ["2125550001", "2125550002"]


@pytest.mark.parametrize(
    ("phone_key", "expected"),
    [
        (
            "phone",
            {"phone": [{"phone": PHONES[0], "ordinal": 1}, {"phone": PHONES[1], "ordinal": 2}]},
        ),
        (
            "phones",
            {"phones": [{"phone": PHONES[0], "ordinal": 1}, {"phone": PHONES[1], "ordinal": 2}]},
        ),
        ("phone_strings", {"phone": PHONES}),
        ("phones_strings", {"phones": PHONES}),
        ("none", {}),
    ],
)
def test_phone_key(lv: LV, phone_key: str, expected: dict[str, Any]) -> None:
    # Given a dialect's phone_key, When a record with two phones is appended and listed,
    # Then its transaction carries the phones under that key in that shape (none: no phone key).
    play(lv, phone_key=phone_key)
    sid = lv.login()
    assert lv.append(sid, [{"phone1": PHONES[0], "phone2": [PHONES[1]]}]).status_code == 204
    [entry] = transactions(lv, sid)
    assert {k: v for k, v in entry.items() if k in ("phone", "phones")} == expected


@pytest.mark.parametrize(
    ("numbering", "prefix"),
    [
        ("zero", "record 2: "),
        ("one", "record 3: "),
        ("phone", "phone 2125550002: "),
        ("none", "invalid record: "),
    ],
)
def test_numbering(lv: LV, numbering: str, prefix: str) -> None:
    # Given a dialect's numbering, When the third record of a batch is refused,
    # Then the 400 names it that way (0-based, 1-based, by phone1, or not at all).
    play(lv, numbering=numbering)
    sid = lv.login()
    batch = [rec(0), rec(1), {"phone1": "2125550002", "account": "POISON"}]
    answer = lv.append(sid, batch)
    assert answer.status_code == 400
    assert answer.json()["message"] == f"{prefix}account rejected"
    assert answer.json()["code"] == 400
    assert lv.records() == []


@pytest.mark.parametrize("status", CHOICES["refusal_status"])
@pytest.mark.parametrize("change", [{"allowAppend": False}, {"status": "STOPPED"}, {"typeId": 2}])
def test_refusal_status(lv: LV, status: int, change: dict[str, Any]) -> None:
    # Given a dialect's refusal_status and a campaign that won't take appends (allow-append off,
    # stopped, callback type), When a good batch is appended, Then that status answers it.
    play(lv, refusal_status=status)
    lv.http.patch("/_admin/campaigns/5001", json=change).raise_for_status()
    answer = lv.append(lv.login(), [rec(0)])
    assert answer.status_code == status
    assert answer.json()["code"] == status
    assert "5001" in answer.json()["message"]


@pytest.mark.parametrize("status", CHOICES["rate_limit_status"])
def test_rate_limit_status(lv: LV, status: int) -> None:
    # Given a window of one call and a dialect's rate_limit_status, When two appends are made,
    # Then the second is answered with that status and stores nothing.
    lv.reset(rate_max_calls=1, dialect={"rate_limit_status": status})
    sid = lv.login()
    assert lv.append(sid, [rec(0)]).status_code == 204
    answer = lv.append(sid, [rec(1)])
    assert answer.status_code == status
    assert "rate limit" in answer.json()["message"]
    assert len(lv.records()) == 1


@pytest.mark.parametrize("word", CHOICES["built_word"])
def test_built_word(lv: LV, word: str) -> None:
    # Given a Built (READY) campaign and a dialect's built_word, When it is searched and read,
    # Then search and details answer that word, the filter takes it, and READY (when not the
    # word) finds nothing.
    play(lv, built_word=word)
    lv.http.patch("/_admin/campaigns/5001", json={"status": "READY"}).raise_for_status()
    sid = lv.login()
    body = {"dateRange": day_range_ms()}
    [found] = lv.search(sid, body).json()["campaign"]
    assert found["status"] == word
    details = lv.http.get("/campaign/v6.0/campaigns/5001", headers={"LV-Session": sid}).json()
    assert details["status"] == word
    assert [c["id"] for c in lv.search(sid, {**body, "state": [word]}).json()["campaign"]] == [5001]
    by_ready = lv.search(sid, {**body, "state": ["READY"]}).json()["campaign"]
    assert [c["id"] for c in by_ready] == ([5001] if word == "READY" else [])
    assert lv.campaign()["status"] == "READY"  # stored internally as READY
    assert lv.append(sid, [rec(0)]).status_code == 204


def test_tx_visibility_immediate_delayed_never(lv: LV) -> None:
    # Given a campaign with 2 initial records, When one record is appended under each
    # visibility, Then immediate lists it at once, delayed only after tx_delay_s, never not at
    # all (the initial records always show).
    lv.reset(campaigns=[{"id": 5001, "serviceId": 1001, "initialRecords": 2}])
    sid = lv.login()
    assert lv.append(sid, [rec(0)]).status_code == 204
    assert len(transactions(lv, sid)) == 3
    lv.advance(10)
    play(lv, tx_visibility="delayed", tx_delay_s=5)
    assert lv.append(sid, [rec(1)]).status_code == 204
    lv.advance(4.9)
    assert [t["account"] for t in transactions(lv, sid)][2:] == ["A0"]
    lv.advance(0.2)
    assert [t["account"] for t in transactions(lv, sid)][2:] == ["A0", "A1"]
    play(lv, tx_visibility="never")
    accounts = [t["account"] for t in transactions(lv, sid)]
    assert len(accounts) == 2 and all(a.startswith("INIT-") for a in accounts)
    assert len(lv.records()) == 2


def test_tx_visibility_pages_over_what_shows(lv: LV) -> None:
    # Given 3 initial records and delayed visibility, When 2 records are appended and the list
    # is read 2 at a time, Then next pages only over the 3 that show until the delay has passed.
    lv.reset(
        campaigns=[{"id": 5001, "serviceId": 1001, "initialRecords": 3}],
        dialect={"tx_visibility": "delayed", "tx_delay_s": 10},
    )
    sid = lv.login()
    assert lv.append(sid, [rec(0), rec(1)]).status_code == 204
    base = "/campaign/v6.0/campaigns/5001/transactionList?count=2&offset="
    second = lv.http.get(f"{base}2", headers={"LV-Session": sid}).json()
    assert len(second["transaction"]) == 1 and second["next"] == ""
    lv.advance(10)
    second = lv.http.get(f"{base}2", headers={"LV-Session": sid}).json()
    assert len(second["transaction"]) == 2 and second["next"].endswith("offset=4")


def test_unknown_fields_refuse_or_drop(lv: LV) -> None:
    # Given a record with a field outside LiveVox's list, When appended under "refuse" and then
    # "drop", Then the first is a 400 naming the record and the field, the second lands without it.
    sid = lv.login()
    batch = [rec(0), rec(1, notes="call after 5")]
    refused = lv.append(sid, batch)
    assert refused.status_code == 400
    assert refused.json()["message"] == "record 1: field 'notes' is not a LiveVox record field"
    play(lv, unknown_fields="drop")
    assert lv.append(sid, batch).status_code == 204
    stored = lv.records()
    assert [r["account"] for r in stored] == ["A0", "A1"]
    assert all("notes" not in r for r in stored)
    assert all("notes" not in t["extra"] for t in transactions(lv, sid))


def test_malformed_campaign_on_every_page(lv: LV) -> None:
    # Given malformed_campaign and three of today's campaigns, When searched two at a time,
    # Then each page has one extra entry with a missing (page 0) or non-numeric (page 1) id and
    # a null status, and paging (next) is unchanged.
    play(lv, malformed_campaign=True)
    for ident in (5002, 5003):
        lv.http.post("/_admin/campaigns", json={"id": ident, "serviceId": 1001}).raise_for_status()
    sid = lv.login()
    body = {"dateRange": day_range_ms()}
    first = lv.search(sid, body, "count=2&offset=0").json()
    second = lv.search(sid, body, "count=2&offset=2").json()
    assert [c.get("id") for c in first["campaign"]] == [5001, 5002, None]
    assert [c.get("id") for c in second["campaign"]] == [5003, "X-1"]
    assert first["campaign"][-1]["status"] is None and second["campaign"][-1]["typeId"] is None
    assert first["next"].endswith("offset=2") and second["next"] == ""


def test_unversioned_only(lv: LV) -> None:
    # Given unversioned_only, When the versioned and unversioned login and search are called,
    # Then the versioned ones answer 404 and the unversioned ones work; admin is unaffected.
    play(lv, unversioned_only=True)
    creds = {"clientName": "SIMCLIENT", "userName": "appendq", "password": "simulator-password"}
    token = {"LV-Access": "simulator-token"}
    assert lv.http.post("/session/v6.0/login", headers=token, json=creds).status_code == 404
    answer = lv.http.post("/session/login", headers=token, json=creds)
    assert answer.status_code == 200
    sid = answer.json()["sessionId"]
    body = {"dateRange": day_range_ms()}
    assert lv.search(sid, body).status_code == 404
    assert lv.search(sid, body, path="/campaign/campaigns/search").status_code == 200
    assert [c["status"] for c in lv.calls("other")] == [404, 404]


# --- setting a dialect ---------------------------------------------------------------------


def test_admin_dialect_merges_and_reset_restores(lv: LV) -> None:
    # Given the default dialect, When /_admin/dialect is posted twice (a preset, then a field),
    # Then each answer is the full merged dialect, GET and /_admin/state agree, and a reset
    # goes back to the default; a bad field is a 400 that changes nothing.
    assert lv.http.get("/_admin/dialect").json() == Dialect().as_json()
    assert play(lv, preset="java") == DIALECTS["java"].as_json()
    merged = play(lv, tx_delay_s=2)
    assert merged == {**DIALECTS["java"].as_json(), "tx_delay_s": 2.0}
    assert lv.http.get("/_admin/state").json()["dialect"] == merged
    for bad in ({"phone_key": "tel"}, {"refusal_status": 500}, {"colour": 1}, {"preset": "x"}):
        assert lv.http.post("/_admin/dialect", json=bad).status_code == 400
    assert lv.http.get("/_admin/dialect").json() == merged
    lv.reset()
    assert lv.http.get("/_admin/dialect").json() == Dialect().as_json()
    lv.reset(dialect={"preset": "dotnet", "numbering": "one"})
    expected = {**DIALECTS["dotnet"].as_json(), "numbering": "one"}
    assert lv.http.get("/_admin/dialect").json() == expected


def test_sim_fixture_dialect_and_reset(sim: Sim) -> None:
    # Given the shared test simulator, When Sim.dialect sets fields and Sim.reset runs,
    # Then the dialect answered is the merged one and the reset restores the default.
    assert sim.dialect(preset="quiet", phone_key="phones")["phone_key"] == "phones"
    sim.reset()
    assert sim.admin.get("/_admin/dialect").json() == Dialect().as_json()


def test_command_line_dialect_over_contract_over_file(tmp_path: Path) -> None:
    # Given a config file with a dialect, a contract snapshot and a --dialect option,
    # When the simulator's configuration is built, Then --dialect wins over the contract, which
    # wins over the file; fields not named anywhere keep their defaults.
    config = tmp_path / "sim.json"
    config.write_text(json.dumps({"dialect": {"numbering": "one", "refusal_status": 404}}))
    contract = tmp_path / "contract.json"
    contract.write_text(json.dumps({"dialect": {"phone_key": "phones", "built_word": "ACTIVE"}}))
    assert build_config(config).dialect == Dialect(numbering="one", refusal_status=404)
    assert build_config(config, contract).dialect == Dialect(
        phone_key="phones", built_word="ACTIVE"
    )
    combined = build_config(config, contract, "built_word=prebuilt,tx_delay_s=1.5")
    assert combined.dialect == Dialect(phone_key="phones", built_word="PREBUILT", tx_delay_s=1.5)
    assert build_config(None, None, "legacy,malformed_campaign=true").dialect == Dialect(
        **{**DIALECTS["legacy"].as_json(), "malformed_campaign": True}
    )


@pytest.mark.parametrize(
    "bad",
    ["phone_key=tel", "java,dotnet", "numbering=one,java", "unversioned_only=maybe", "nosuch"],
)
def test_bad_dialect_option(bad: str) -> None:
    # Given a malformed --dialect value, When parsed, Then a ValueError says what is wrong.
    with pytest.raises(ValueError, match="dialect"):
        parse_dialect_option(bad)


def test_contract_needs_a_dialect_object() -> None:
    # Given contract snapshots without a dialect object, When loaded, Then they are refused.
    bad: Any
    for bad in ({}, {"dialect": "java"}, []):
        with pytest.raises(ValueError, match="contract"):
            dialect_from_contract(bad)


def test_presets_cover_every_value() -> None:
    # Given the presets, When their fields are gathered, Then every value of every choice field
    # and both values of each flag occur in some preset (so a chaos run can visit each), and
    # the presets the contract names exist with the agreed fields.
    for name, allowed in CHOICES.items():
        assert {getattr(d, name) for d in DIALECTS.values()} == set(allowed), name
    for flag in ("malformed_campaign", "unversioned_only"):
        assert {getattr(d, flag) for d in DIALECTS.values()} == {True, False}
    assert DIALECTS["default"] == Dialect()
    java, dotnet, quiet = DIALECTS["java"], DIALECTS["dotnet"], DIALECTS["quiet"]
    assert (java.phone_key, java.numbering, java.refusal_status) == ("phones", "one", 400)
    assert (dotnet.refusal_status, dotnet.built_word, dotnet.rate_limit_status) == (
        404,
        "ACTIVE",
        503,
    )
    assert (quiet.numbering, quiet.tx_visibility, quiet.tx_delay_s) == ("none", "delayed", 5.0)
    assert quiet.unknown_fields == "drop" and DIALECTS["unreadable"].phone_key == "none"
    assert {f.name for f in fields(Dialect)} == {
        *CHOICES,
        "tx_delay_s",
        "malformed_campaign",
        "unversioned_only",
    }
    assert parse_dialect({"built_word": "active"}).built_word == "ACTIVE"
