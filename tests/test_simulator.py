"""The LiveVox simulator over real HTTP: sessions, campaign search and details, and the command.
Appends and the rate window are in ``test_simulator_appends.py``; faults, dialling and the
transaction list in ``test_simulator_faults.py``. Each test gets its own server on an ephemeral
port and a fake clock pinned at noon today (America/New_York), moved through
``POST /_admin/clock``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.sim_http import (
    CREDS,
    LV,
    NY,
    TOKEN,
    campaign,
    day_range_ms,
    rec,
    running_simulator,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lv() -> Iterator[LV]:
    with running_simulator() as simulator:
        yield simulator


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
