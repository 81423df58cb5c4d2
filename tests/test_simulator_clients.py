"""The LiveVox simulator with several clients (LiveVox accounts) over real HTTP: each client's own
rate window, faults scoped to a client, per-client LV-Access tokens, the client of every logged
call, ``seeded_clients`` and ``--clients``. Each test gets its own server on a fake clock, seeded
with ACME (service 1001, campaign 5001) and BETA (service 1101, campaign 5101)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appendq.settings import SIMULATOR_PASSWORD
from appendq.simulator import SimConfig, parse_config, seeded_clients
from appendq.simulator.command import build_config
from tests.support.sim_http import CREDS, LV, TOKEN, campaign, day_range_ms, rec, running_simulator

ROOT = Path(__file__).resolve().parents[1]
ACME, BETA = 5001, 5101  # each client's seeded campaign


@pytest.fixture
def lv() -> Iterator[LV]:
    with running_simulator() as simulator:
        simulator.seed("ACME", "BETA")
        yield simulator


def login_answer(lv: LV, client: str, token: str = TOKEN["LV-Access"]) -> httpx.Response:
    body = {**CREDS, "clientName": client}
    return lv.http.post("/session/v6.0/login", headers={"LV-Access": token}, json=body)


# --- rate windows --------------------------------------------------------------------------


def test_each_client_has_its_own_rate_window(lv: LV) -> None:
    # Given 5 Append calls per 60 s, When ACME makes 5 and BETA 4 in one window, Then all are
    # accepted; ACME's 6th is 429 while BETA's 5th is accepted and its 6th is 429; the state and
    # the call log count each client apart; 60 s later both append again.
    acme, beta = lv.login_as("ACME"), lv.login_as("BETA")
    for i in range(5):
        assert lv.append(acme, [rec(i)], campaign=ACME).status_code == 204
        if i < 4:
            assert lv.append(beta, [rec(i)], campaign=BETA).status_code == 204
    refused = lv.append(acme, [rec(5)], campaign=ACME)
    assert refused.status_code == 429 and "rate limit" in refused.json()["message"]
    assert lv.append(beta, [rec(4)], campaign=BETA).status_code == 204
    assert lv.append(beta, [rec(5)], campaign=BETA).status_code == 429
    state = lv.state()
    assert state["rate_window_calls_by_client"] == {"ACME": 6, "BETA": 6}
    assert state["rate_window_calls"] == 12
    assert len(lv.records(ACME)) == 5 and len(lv.records(BETA)) == 5
    logged = Counter((c["client"], c["status"]) for c in lv.calls("append"))
    assert logged == {("ACME", 204): 5, ("ACME", 429): 1, ("BETA", 204): 5, ("BETA", 429): 1}
    lv.advance(60)
    assert lv.append(acme, [rec(6)], campaign=ACME).status_code == 204
    assert lv.append(beta, [rec(6)], campaign=BETA).status_code == 204


def test_appends_without_a_session_have_a_window_of_their_own(lv: LV) -> None:
    # Given 2 calls per window, When 3 appends come without a valid session, Then 401, 401, 429
    # (logged with client null), and ACME's 2 appends after them are still accepted.
    lv.seed("ACME", "BETA", rate_max_calls=2)
    assert [lv.append("no-such-session", [rec(i)]).status_code for i in range(3)] == [401, 401, 429]
    acme = lv.login_as("ACME")
    assert [lv.append(acme, [rec(i)]).status_code for i in range(2)] == [204, 204]
    assert [c["client"] for c in lv.calls("append")] == [None, None, None, "ACME", "ACME"]
    state = lv.state()
    assert state["rate_window_calls"] == 5
    assert state["rate_window_calls_by_client"] == {"ACME": 2, "BETA": 0}


# --- faults scoped to a client -------------------------------------------------------------


def test_client_fault_is_taken_only_by_its_client(lv: LV) -> None:
    # Given a 503 for ACME's next append queued before an unscoped 500, When BETA appends, then
    # ACME twice, then BETA, Then BETA takes the unscoped 500 (not held back by ACME's), ACME its
    # 503 then 204, BETA 204; the unprocessed faulted calls count in their own client's window.
    lv.fault("append", {"status": 503}, client="ACME")
    lv.fault("append", {"status": 500})
    pending = lv.http.get("/_admin/faults").json()["faults"]["append"]
    assert [(f["fault"]["status"], f["times"], f["client"]) for f in pending] == [
        (503, 1, "ACME"),
        (500, 1, None),
    ]
    acme, beta = lv.login_as("ACME"), lv.login_as("BETA")
    assert lv.append(beta, [rec(1)], campaign=BETA).status_code == 500
    assert lv.append(acme, [rec(2)], campaign=ACME).status_code == 503
    assert lv.append(acme, [rec(3)], campaign=ACME).status_code == 204
    assert lv.append(beta, [rec(4)], campaign=BETA).status_code == 204
    seen = [
        (c["client"], c["status"], (c["fault"] or {}).get("status")) for c in lv.calls("append")
    ]
    assert seen == [
        ("BETA", 500, 500),
        ("ACME", 503, 503),
        ("ACME", 204, None),
        ("BETA", 204, None),
    ]
    assert [r["account"] for r in lv.records(ACME)] == ["A3"]
    assert [r["account"] for r in lv.records(BETA)] == ["A4"]
    assert lv.state()["rate_window_calls_by_client"] == {"ACME": 2, "BETA": 2}
    assert lv.http.get("/_admin/faults").json() == {"faults": {}}


def test_unscoped_fault_queued_first_does_not_hold_back_a_client_fault(lv: LV) -> None:
    # Given an unscoped 502 queued before a 504 for BETA, When ACME appends, then BETA, Then
    # ACME takes the 502 and BETA its own 504.
    lv.fault("append", {"status": 502})
    lv.fault("append", {"status": 504}, client="BETA")
    assert lv.append(lv.login_as("ACME"), [rec(1)], campaign=ACME).status_code == 502
    assert lv.append(lv.login_as("BETA"), [rec(2)], campaign=BETA).status_code == 504


def test_every_append_of_one_client_stalls(lv: LV) -> None:
    # Given "every Append of ACME stalls 30 s" (times 1000000), When ACME appends with a 0.2 s
    # timeout and BETA with 5 s, Then ACME's call times out and BETA's is answered 204 with no
    # fault; the fault waits on for ACME with 999999 calls to go.
    lv.fault("append", {"stall_s": 30}, times=1_000_000, client="ACME")
    acme, beta = lv.login_as("ACME"), lv.login_as("BETA")
    with pytest.raises(httpx.ReadTimeout):
        lv.append(acme, [rec(1)], campaign=ACME, timeout=0.2)
    assert lv.append(beta, [rec(2)], campaign=BETA, timeout=5).status_code == 204
    assert [(c["client"], c["fault"] is None) for c in lv.calls("append")] == [
        ("ACME", False),
        ("BETA", True),
    ]
    [pending] = lv.http.get("/_admin/faults").json()["faults"]["append"]
    assert (pending["times"], pending["client"]) == (999_999, "ACME")


def test_login_fault_scoped_by_client_name(lv: LV) -> None:
    # Given a 503 for BETA's next login, When ACME logs in, then BETA twice, Then ACME's login
    # and BETA's second succeed and BETA's first is 503.
    lv.fault("login", {"status": 503}, client="BETA")
    assert login_answer(lv, "ACME").status_code == 200
    assert login_answer(lv, "BETA").status_code == 503
    assert login_answer(lv, "BETA").status_code == 200
    logins = [(c["client"], c["status"]) for c in lv.calls("login")]
    assert logins == [("ACME", 200), ("BETA", 503), ("BETA", 200)]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"kind": "append", "fault": {"status": 500}, "client": "NOPE"}, "unknown client"),
        ({"kind": "append", "fault": {"status": 500}, "client": 7}, "client must be"),
        ({"kind": "append", "fault": {"status": 500}, "clinet": "ACME"}, "unknown fault request"),
    ],
)
def test_bad_client_fault_refused(lv: LV, body: dict[str, object], message: str) -> None:
    # Given two clients, When a fault names an unknown client, a non-name, or misspells "client",
    # Then 400 naming the problem and nothing queued.
    answer = lv.http.post("/_admin/faults", json=body)
    assert answer.status_code == 400 and message in answer.json()["message"]
    assert lv.http.get("/_admin/faults").json() == {"faults": {}}


# --- credentials and isolation -------------------------------------------------------------


def test_client_access_token(lv: LV) -> None:
    # Given ACME with an LV-Access token of its own and BETA without, When each logs in with
    # each token, Then ACME needs its own token, BETA the global one; a wrong one is answered
    # as today (401 "invalid LV-Access token"); ACME's session appends.
    config = seeded_clients(["ACME", "BETA"])
    config["clients"][0]["access_token"] = "acme-token"
    lv.reset(**config)
    acme = lv.login_as("ACME", token="acme-token")
    assert lv.append(acme, [rec(1)], campaign=ACME).status_code == 204
    assert lv.login_as("BETA")
    for client, token in [("ACME", TOKEN["LV-Access"]), ("BETA", "acme-token")]:
        answer = login_answer(lv, client, token)
        assert answer.status_code == 401
        assert answer.json() == {"code": 401, "message": "invalid LV-Access token"}
    assert [c["access_token"] for c in lv.state()["clients"]] == ["acme-token", None]


def test_client_sees_only_its_own_campaigns(lv: LV) -> None:
    # Given ACME and BETA, When ACME's session appends to BETA's campaign, reads its details or
    # transactions, Then 404 as for no campaign; ACME's search and stats show only its own.
    acme = lv.login_as("ACME")
    head = {"LV-Session": acme}
    assert lv.append(acme, [rec(1)], campaign=BETA).status_code == 404
    assert lv.http.get(f"/campaign/v6.0/campaigns/{BETA}", headers=head).status_code == 404
    listing = f"/campaign/v6.0/campaigns/{BETA}/transactionList?count=10&offset=0"
    assert lv.http.get(listing, headers=head).status_code == 404
    assert lv.records(BETA) == []
    found = lv.search(acme, {"dateRange": day_range_ms()}).json()["campaign"]
    assert [c["id"] for c in found] == [ACME]
    stats = lv.stats(acme).json()["stats"]
    assert [(s["serviceId"], s["serviceName"]) for s in stats] == [(1001, "Sales ACME")]
    assert [(c["id"], c["client"]) for c in lv.state()["campaigns"]] == [
        (ACME, "ACME"),
        (BETA, "BETA"),
    ]


# --- the call log --------------------------------------------------------------------------


def test_call_log_names_each_calls_client(lv: LV) -> None:
    # Given ACME's session, When it searches, validates (session in the path) and gets stats, and
    # calls come with an unknown client name, no valid session, or to no route, Then each logged
    # call names its client (null when unknown), oldest first with its start time.
    acme = lv.login_as("ACME")
    lv.search(acme, {"dateRange": day_range_ms()})
    assert lv.http.get(f"/session/v6.0/validate/{acme}").status_code == 204
    lv.stats(acme)
    assert login_answer(lv, "NOPE").status_code == 401
    assert lv.append("no-such-session", [rec(1)]).status_code == 401
    assert lv.http.get("/no/such/route", headers={"LV-Session": acme}).status_code == 404
    calls = lv.http.get("/_admin/calls").json()
    assert [(c["kind"], c["client"]) for c in calls] == [
        ("login", "ACME"),
        ("search", "ACME"),
        ("validate", "ACME"),
        ("stats", "ACME"),
        ("login", None),
        ("append", None),
        ("other", "ACME"),
    ]
    times = [c["at"] for c in calls]
    assert times == sorted(times) and all(isinstance(t, float) for t in times)


def test_naming_the_client_does_not_keep_a_session_alive(lv: LV) -> None:
    # Given session_idle_s=10, When 8 s after login a call that never reaches the session (no
    # such route) names it, and 3 s later the session is used, Then the session has expired: the
    # look-up that named the call's client did not restart its idle timer.
    lv.seed("ACME", "BETA", session_idle_s=10)
    acme = lv.login_as("ACME")
    lv.advance(8)
    assert lv.http.get("/no/such/route", headers={"LV-Session": acme}).status_code == 404
    assert lv.calls("other")[0]["client"] == "ACME"
    lv.advance(3)
    assert lv.stats(acme).status_code == 401


# --- seeding -------------------------------------------------------------------------------


def test_seeded_default_client_is_the_default_seed() -> None:
    # Given seeded_clients, When seeding the single default client, Then it is the default seed,
    # with the settings' default password; When seeding three, Then the k-th has service
    # 1001+100k and campaign 5001+100k on it; empty or repeated names are refused.
    assert parse_config(seeded_clients(["SIMCLIENT"])) == SimConfig() == parse_config({})
    assert seeded_clients(["SIMCLIENT"])["users"][0]["password"] == SIMULATOR_PASSWORD
    three = parse_config(seeded_clients(["A", "B", "C"]))
    assert [(u.client, u.user) for u in three.users] == [
        ("A", "appendq"),
        ("B", "appendq"),
        ("C", "appendq"),
    ]
    assert [(s.id, s.name, s.client) for s in three.services] == [
        (1001, "Sales A", "A"),
        (1101, "Sales B", "B"),
        (1201, "Sales C", "C"),
    ]
    assert [(c.id, c.service_id, c.status, c.allow_append, c.day) for c in three.campaigns] == [
        (5001, 1001, "PLAYING", True, "today"),
        (5101, 1101, "PLAYING", True, "today"),
        (5201, 1201, "PLAYING", True, "today"),
    ]
    for names in ([], ["A", "A"], [""]):
        with pytest.raises(ValueError, match="client names"):
            seeded_clients(names)


def test_clients_option_with_a_config_file(tmp_path: Path) -> None:
    # Given --clients, When combined with a file of campaigns, Then the file's campaigns replace
    # the seeded ones on the seeded services; When the file lists clients too, Then an error.
    path = tmp_path / "campaigns.json"
    path.write_text(json.dumps({"campaigns": [campaign(id=7001, serviceId=1101)]}))
    config = build_config(path, client_names="ACME, BETA", rate_max_calls=2)
    assert [(s.id, s.client) for s in config.services] == [(1001, "ACME"), (1101, "BETA")]
    assert [(c.id, c.service_id) for c in config.campaigns] == [(7001, 1101)]
    assert config.rate_max_calls == 2
    path.write_text(json.dumps({"clients": [{"name": "ACME"}]}))
    with pytest.raises(ValueError, match="--clients"):
        build_config(path, client_names="ACME,BETA")


def test_command_serves_the_clients_option() -> None:
    # Given `python -m appendq.simulator --clients ACME,BETA --rate-max-calls 3`, When it serves,
    # Then each client has its service and campaign, its own window, and BETA's user logs in.
    command = ["-m", "appendq.simulator", "--port", "0", "--clients", "ACME,BETA"]
    proc = subprocess.Popen(
        [sys.executable, *command, "--rate-max-calls", "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
        with httpx.Client(base_url=url, timeout=5) as http:
            state = http.get("/_admin/state").json()
            login = http.post("/session/login", headers=TOKEN, json={**CREDS, "clientName": "BETA"})
        assert [(s["id"], s["name"], s["client"]) for s in state["services"]] == [
            (1001, "Sales ACME", "ACME"),
            (1101, "Sales BETA", "BETA"),
        ]
        assert [(c["id"], c["serviceId"], c["client"]) for c in state["campaigns"]] == [
            (5001, 1001, "ACME"),
            (5101, 1101, "BETA"),
        ]
        assert state["settings"]["rate_max_calls"] == 3
        assert state["rate_window_calls_by_client"] == {"ACME": 0, "BETA": 0}
        assert login.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
