"""``appendq doctor`` against the real simulator (HTTP, and HTTPS with a self-signed certificate)
under each LiveVox dialect: what it reports, its exit codes, what it never prints, its contract
snapshot and the simulator playing that snapshot."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from appendq.cli import main
from appendq.doctor import Mark, run_doctor, save_contract, shapes
from appendq.simulator.config import seeded_clients
from appendq.simulator.dialect import DIALECTS, dialect_from_contract
from appendq.simulator.server import SimServer
from appendq.simulator.state import SimulatorState
from tests.conftest import Sim, make_settings

PASSWORD = "simulator-password"
TOKEN = "simulator-token"
#: The phones of the initial records the simulator lists (555 + 7 digits).
INITIAL_PHONES = [f"555{i:07d}" for i in range(3)]
ROOT = Path(__file__).resolve().parents[1]


def seed(sim: Sim, **dialect: Any) -> None:
    """Campaign 5001 Built (READY) with 3 initial records, and 11 more Playing ones (two search
    pages of 10) of service 1001; then the dialect."""
    campaigns = [{"id": 5001, "serviceId": 1001, "status": "READY", "initialRecords": 3}]
    campaigns += [{"id": 5002 + i, "serviceId": 1001} for i in range(11)]
    sim.reset(campaigns=campaigns)
    if dialect:
        sim.dialect(**dialect)


def doctor(sim: Sim, *args: str, **env: str) -> Result:
    base = {"APPENDQ_LIVEVOX_BASE_URL": sim.url, "APPENDQ_LOG_LEVEL": "WARNING"}
    return CliRunner(env={**base, **env}).invoke(main, ["doctor", *args])


def checks(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["checks"]}


@pytest.mark.parametrize("preset", sorted(DIALECTS))
def test_doctor_reports_each_dialect(sim: Sim, preset: str) -> None:
    # Given the simulator playing a preset dialect, When `appendq doctor --json --service 1001`
    # runs, Then it reports that dialect's phone key, Built word, malformed entries and path
    # forms, and its contract's dialect says the same; it appended nothing and never logged out.
    seed(sim, preset=preset)
    dialect = DIALECTS[preset]
    result = doctor(sim, "--json", "--service", "1001")
    document = json.loads(result.stdout)
    found = checks(document)
    assert found["transactionList"]["details"]["phone_key"] == dialect.phone_key
    assert dialect.built_word in found["status words"]["details"]["words"]
    assert found["campaign details"]["summary"].startswith(
        f"campaign 5001: status {dialect.built_word}"
    )
    assert found["malformed entries"]["details"]["count"] == (
        2 if dialect.malformed_campaign else 0
    )
    assert found["paging"]["mark"] == "✓" and "followed next 1 time" in found["paging"]["summary"]
    assert found["API version"]["mark"] == ("✗" if dialect.unversioned_only else "✓")
    assert document["contract"]["dialect"] == {
        "phone_key": dialect.phone_key,
        "built_word": dialect.built_word,
        "malformed_campaign": dialect.malformed_campaign,
        "unversioned_only": dialect.unversioned_only,
    }
    failed = {c["name"] for c in document["checks"] if c["mark"] == "✗"}
    expected = {"transactionList"} if dialect.phone_key == "none" else set()
    expected |= {"API version"} if dialect.unversioned_only else set()
    assert failed == expected
    assert result.exit_code == document["exit_code"] == (1 if expected else 0)
    assert sim.calls("append") == [] and sim.calls("logout") == []


def test_doctor_unversioned_setting_against_unversioned_only(sim: Sim) -> None:
    # Given a LiveVox answering only unversioned paths and APPENDQ_LIVEVOX_API_VERSION="",
    # When the doctor runs, Then every check passes but the plain-http one, using no version.
    seed(sim, unversioned_only=True)
    result = doctor(sim, "--service", "1001", APPENDQ_LIVEVOX_API_VERSION="")
    assert result.exit_code == 0, result.stdout
    assert "✓ API version: /session/login 200, /session/v6.0/login 404" in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("✗")]


@pytest.mark.parametrize(
    "env",
    [
        {"APPENDQ_LIVEVOX_PASSWORD": "wrong-password-77"},
        {"APPENDQ_LIVEVOX_ACCESS_TOKEN": "wrong-token-77"},
        {"APPENDQ_LIVEVOX_USERNAME": "Appendq"},
    ],
)
def test_wrong_credentials_one_line_exit_2(sim: Sim, env: dict[str, str]) -> None:
    # Given wrong credentials (password, token, user name's case), When the doctor runs,
    # Then it prints exactly one line saying LiveVox refused them, exit code 2, no secret.
    seed(sim)
    result = doctor(sim, "--service", "1001", **env)
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("✗ LiveVox refused the login (401")
    assert "APPENDQ_LIVEVOX_ACCESS_TOKEN" in lines[0]
    for secret in (*env.values(), PASSWORD, TOKEN):
        if secret != "Appendq":
            assert secret not in result.output
    assert sim.calls("search") == []


def test_output_has_no_secret_and_no_full_phone(sim: Sim) -> None:
    # Given a campaign whose transactions carry phones, When the doctor prints text and JSON
    # and saves a contract, Then none holds the token, the password, the session id or a full
    # phone number, while the masked sample phone is shown.
    seed(sim, phone_key="phones")
    session = httpx.post(
        f"{sim.url}/session/v6.0/login",
        headers={"LV-Access": TOKEN},
        json={"clientName": "SIMCLIENT", "userName": "appendq", "password": PASSWORD},
    ).json()["sessionId"]
    text = doctor(sim, "--service", "1001")
    as_json = doctor(sim, "--json")
    saved = save_contract(run_doctor(make_settings(livevox_base_url=sim.url), [1001]), "/dev/null")
    assert "******0000" in text.stdout and "******0000" in as_json.stdout
    for output in (text.output, as_json.output, json.dumps(saved)):
        for secret in (TOKEN, PASSWORD, session, *INITIAL_PHONES):
            assert secret not in output
        assert not re.search(r"\d{7,}", output.replace(sim.url, ""))


def test_contract_snapshot_played_by_the_simulator(sim: Sim, tmp_path: Path) -> None:
    # Given the simulator playing "dotnet" with phones as strings and malformed entries,
    # When `appendq doctor --save-contract FILE` runs and `python -m appendq.simulator
    # --contract FILE` starts, Then the new simulator's /_admin/dialect plays the observed fields
    # (the rest at their defaults) and the file holds no id, secret or phone.
    seed(sim, preset="dotnet", phone_key="phones_strings", malformed_campaign=True)
    path = tmp_path / "contract.json"
    result = doctor(sim, "--service", "1001", "--save-contract", str(path))
    assert result.exit_code == 0, result.output
    text = path.read_text()
    contract = json.loads(text)
    assert contract["transaction_list"]["phone_key"] == "phones_strings"
    assert contract["search"]["status_words"] == {"ACTIVE": 1, "PLAYING": 11}
    expected = {
        **DIALECTS["default"].as_json(),
        "phone_key": "phones_strings",
        "built_word": "ACTIVE",
        "malformed_campaign": True,
    }
    assert dialect_from_contract(contract).as_json() == expected
    assert not any(s in text for s in ("5001", "1001", TOKEN, PASSWORD, *INITIAL_PHONES))
    assert played_dialect(path) == expected


def played_dialect(contract: Path) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "appendq.simulator", "--port", "0", "--contract", str(contract)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
        answer: dict[str, Any] = httpx.get(f"{url}/_admin/dialect", timeout=5).json()
        return answer
    finally:
        proc.terminate()
        proc.wait(10)


def test_details_refused_is_a_role_failure(sim: Sim) -> None:
    # Given campaign details answered 403, When the doctor runs, Then role and campaign details
    # are ✗ and it exits 1 (without appending).
    seed(sim)
    sim.fault("campaign", {"status": 403})
    result = doctor(sim, "--service", "1001")
    assert result.exit_code == 1
    assert "✗ role: campaign details refused (403)" in result.stdout
    assert "✗ campaign details: campaign 5001: answered 403" in result.stdout


def test_clock_offset_from_date_header(sim: Sim) -> None:
    # Given LiveVox's clock 30 s ahead of ours, When the doctor runs, Then the clock check is ✗
    # and names the offset; the JSON carries it.
    seed(sim)
    sim.admin.post("/_admin/clock", json={"offset_s": 30}).raise_for_status()
    found = checks(json.loads(doctor(sim, "--json").stdout))["clock"]
    assert found["mark"] == "✗"
    assert 28 <= found["details"]["offset_s"] <= 32


def test_no_campaign_today(sim: Sim) -> None:
    # Given a service without today's campaign, When the doctor searches it, Then that line,
    # the status words and the details are "?", not failures, and it exits 0.
    seed(sim)
    for ident in range(5001, 5013):
        sim.patch_campaign(ident, day="yesterday")
    result = doctor(sim, "--service", "1001")
    assert result.exit_code == 0
    assert "? campaigns of service 1001: none today" in result.stdout
    assert "? status words: no campaign seen" in result.stdout
    assert "? campaign details: no campaign found today" in result.stdout


def test_unknown_status_word_is_a_question(sim: Sim) -> None:
    # Given appendable words that do not include the Built word LiveVox uses (ACTIVE),
    # When the doctor runs, Then status words is "?" and tells which setting to extend.
    seed(sim, built_word="ACTIVE")
    settings = make_settings(livevox_base_url=sim.url, livevox_appendable_states="PLAYING,PAUSED")
    words = next(c for c in run_doctor(settings, [1001]).checks if c.name == "status words")
    assert words.mark is Mark.UNKNOWN
    assert (
        "unknown ACTIVE" in words.summary and "APPENDQ_LIVEVOX_APPENDABLE_STATES" in words.summary
    )


@pytest.fixture
def tls_sim(tmp_path: Path) -> Iterator[str]:
    """The simulator over HTTPS with a self-signed certificate (``tmp_path/cert.pem``)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = SimServer(("127.0.0.1", 0), SimulatorState())
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_unverified_certificate_fails_tls(tls_sim: str) -> None:
    # Given LiveVox behind a certificate no authority signed, When the doctor runs,
    # Then the base URL line is ✗ "certificate not verified" and nothing else is tried.
    report = run_doctor(make_settings(livevox_base_url=tls_sim))
    [only] = report.checks
    assert (only.name, only.mark) == ("base URL", Mark.FAIL)
    assert "certificate not verified" in only.summary
    assert report.exit_code == 1


def test_phone_shapes_read_every_plausible_form() -> None:
    # Given transaction entries in each plausible shape, When read, Then each shape is named,
    # mixed and empty lists are told apart, and the sample is masked.
    objects = {"phone": [{"phone": "2125550001", "ordinal": 1}]}
    assert shapes.phone_shape([objects]) == "phone"
    assert shapes.phone_shape([{"phones": ["2125550001"]}]) == "phones_strings"
    assert shapes.phone_shape([{"phone": "2125550001"}]) == "phone_strings"
    assert shapes.phone_shape([{"phones": [{"number": "2125550001"}]}]) == "none"
    assert shapes.phone_shape([objects, {"account": "A"}]) == "mixed"
    assert shapes.phone_shape([]) is None
    assert shapes.masked_sample([{"phones": [{"phone": "2125550001"}]}]) == "******0001"
    assert shapes.campaign_problem({"id": "X-1", "status": "PLAYING", "typeId": 1}) is not None
    assert shapes.campaign_problem({"id": "9001", "state": "PLAYING", "typeId": 1}) is None


def test_verified_certificate_is_a_pass(tls_sim: str, tmp_path: Path) -> None:
    # Given the HTTPS simulator and a transport that trusts its certificate, When the doctor
    # runs, Then the base URL line is ✓ "https, certificate verified" with the TLS version.
    trusted = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    report = run_doctor(
        make_settings(livevox_base_url=tls_sim), transport=httpx.HTTPTransport(verify=trusted)
    )
    first = report.checks[0]
    assert (first.name, first.mark) == ("base URL", Mark.OK)
    assert re.fullmatch(r"https, certificate verified \(TLSv1\.[23]\)", first.summary)
    assert report.exit_code == 0


def test_doctor_checks_the_account_named(sim: Sim, tmp_path: Path) -> None:
    # Given an accounts file whose acme account is client ACME of the simulator, When `appendq
    # doctor --account acme` runs, Then it logs in as ACME (the simulator's own log says so)
    # and finds ACME's campaign, not the default client's; an unknown account is exit 2.
    sim.reset(**seeded_clients(["SIMCLIENT", "ACME"]))
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        f'[accounts.acme]\nbase_url = "{sim.url}"\nclient_name = "ACME"\nusername = "appendq"\n'
    )
    env = {"APPENDQ_ACCOUNTS_FILE": str(accounts)}
    result = doctor(sim, "--json", "--account", "acme", "--service", "1101", **env)
    assert result.exit_code == 0, result.output
    found = checks(json.loads(result.stdout))
    assert found["campaign details"]["summary"].startswith("campaign 5101")
    assert {c["client"] for c in sim.calls("login")} == {"ACME"}
    unknown = doctor(sim, "--account", "beta", **env)
    assert unknown.exit_code == 2 and "no account 'beta' (known: acme)" in unknown.output
