"""The access log (issue 11): one row per read that returned personal data, over HTTP (uvicorn in a
thread) and from `appendq audit` (click's runner), against a real PostgreSQL database and Redis;
`appendq audit --access-log` shows it; a read the log cannot record shows nothing."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, text

from appendq.cli import main
from appendq.db.models import AccessLog, BatchStatus
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import phone, settings_env
from tests.test_audit import leads, make_batch
from tests.test_intake import serving, with_tokens
from tests.test_roles import CALLERS, ENTRIES, VENDOR, submit

Row = tuple[str, str, str, dict[str, Any], int]
OPERATOR = f"operator:{getpass.getuser()}"
UNKNOWN = "01890000-0000-7000-8000-000000000000"  # a well-formed record id nobody has


def rows(rt: Runtime) -> list[Row]:
    """Every access-log row, oldest first: (actor, channel, action, filter, records)."""
    with rt.sessions() as session:
        found = session.scalars(select(AccessLog).order_by(AccessLog.id)).all()
    return [(r.actor, r.channel, r.action, r.filter, r.records) for r in found]


def run(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings_env(settings)).invoke(main, list(args))


@pytest.fixture
def api(settings: Settings) -> Iterator[httpx.Client]:
    with serving(with_tokens(settings, *ENTRIES)) as client:
        yield client


def test_each_http_read_of_personal_data_writes_one_row(api: httpx.Client, rt: Runtime) -> None:
    # Given a batched record and a queued one (crm's), When the auditor searches the audit by
    # phone (1 found, then 0), crm looks up its own record, vendor's record and a record that
    # does not exist, and the ops endpoints without personal data are called (status, retry
    # preview) or refused (403, 401), Then exactly one row per personal-data read is written,
    # with the token's name, the filter as asked with the phone masked, and the count.
    make_batch(rt, BatchStatus.HELD, leads(1, 1), target="service:1002")
    own, other = submit(api, CALLERS["intake"], 0), submit(api, VENDOR, 5)
    auditor, intake = CALLERS["auditor"], CALLERS["intake"]
    dialled = f"({phone(1)[:3]}) {phone(1)[3:]}"
    found = api.get("/v1/audit", params={"phone": dialled}, headers=auditor)
    assert [r["phone1"] for r in found.json()] == [phone(1)]
    nothing = api.get("/v1/audit", params={"lead_account": "nobody", "limit": 5}, headers=auditor)
    assert nothing.json() == []
    assert api.get(f"/v1/leads/{own}", headers=intake).status_code == 200
    assert api.get(f"/v1/leads/{other}", headers=intake).status_code == 404
    assert api.get(f"/v1/leads/{UNKNOWN}", headers=auditor).status_code == 404
    assert api.get("/v1/status", headers=auditor).status_code == 200
    assert api.get("/v1/batches/retry-preview", headers=auditor).status_code == 200
    assert api.get("/v1/audit", params={"phone": phone(1)}, headers=intake).status_code == 403
    assert api.get("/v1/audit", params={"phone": phone(1)}).status_code == 401
    assert rows(rt) == [
        ("api:compliance", "http", "audit", {"phone": "******0001", "limit": 100}, 1),
        ("api:compliance", "http", "audit", {"lead_account": "nobody", "limit": 5}, 0),
        ("api:crm", "http", "lead", {"record": own}, 1),
        ("api:crm", "http", "lead", {"record": other}, 0),
        ("api:compliance", "http", "lead", {"record": UNKNOWN}, 0),
    ]
    with rt.engine.connect() as conn:
        raw = conn.execute(text("SELECT string_agg(filter::text, ' ') FROM access_log")).scalar()
    assert phone(1) not in str(raw) and phone(1)[3:] not in str(raw)


def test_each_cli_audit_writes_one_row_and_access_log_shows_them(
    rt: Runtime, settings: Settings
) -> None:
    # Given a held batch, When the operator runs `audit --phone` (table), `audit --lead-account
    # --json`, `audit --phone --full-phones` and an audit that finds nothing, Then each writes one
    # row as operator:<login> on the cli channel with its filter (phone masked) and count, and
    # only --full-phones shows the number in full; When `audit --access-log` (table, --json,
    # --actor) runs, Then it shows those rows newest first, and each look is itself a row.
    make_batch(rt, BatchStatus.HELD, leads(2))
    masked = run(settings, "audit", "--phone", phone(1))
    assert masked.exit_code == 0 and "******0001" in masked.stdout and phone(1) not in masked.stdout
    as_json = run(settings, "audit", "--lead-account", "A0", "--json", "--limit", "5")
    assert json.loads(as_json.stdout)["records"][0]["phone1"] == "******0000"
    full = run(settings, "audit", "--phone", phone(1), "--full-phones")
    assert phone(1) in full.stdout
    assert run(settings, "audit", "--service", "1009", "--status", "held").exit_code == 0
    assert rows(rt) == [
        (OPERATOR, "cli", "audit", {"phone": "******0001", "limit": 1000}, 1),
        (OPERATOR, "cli", "audit", {"lead_account": "A0", "limit": 5}, 1),
        (OPERATOR, "cli", "audit", {"phone": "******0001", "limit": 1000, "full_phones": True}, 1),
        (OPERATOR, "cli", "audit", {"service": 1009, "status": ["held"], "limit": 1000}, 0),
    ]
    table = run(settings, "audit", "--access-log")
    lines = table.stdout.splitlines()
    assert len(lines) == 5 and lines[-1] == "4 reads of personal data"
    assert '"service":1009' in lines[0] and '"full_phones":true' in lines[1]
    listed = json.loads(run(settings, "audit", "--access-log", "--json", "--limit", "2").stdout)
    assert [e["action"] for e in listed] == ["access_log", "audit"]
    assert listed[0]["filter"] == {"limit": 1000} and listed[0]["records"] == 4
    nobody = run(settings, "audit", "--access-log", "--actor", "api:crm", "--json")
    assert json.loads(nobody.stdout) == []
    assert [r[2] for r in rows(rt)][-3:] == ["access_log"] * 3
    assert rows(rt)[-1][3] == {"actor": "api:crm", "limit": 1000}


def test_access_log_filters_by_time(rt: Runtime, settings: Settings) -> None:
    # Given two rows an hour apart, When `audit --access-log --since` names the moment between
    # them (in APPENDQ_TIMEZONE), Then only the later one is shown; --until only the earlier.
    for action in ("audit", "lead"):
        run(settings, "audit", "--lead-account", action)
    with rt.engine.begin() as conn:
        conn.execute(text("UPDATE access_log SET at = now() - interval '2 hours' WHERE id = 1"))
        middle = conn.execute(text("SELECT now() - interval '1 hour'")).scalar()
    assert middle is not None
    local = middle.astimezone(settings.tz).replace(tzinfo=None).isoformat()
    since = json.loads(run(settings, "audit", "--access-log", "--since", local, "--json").stdout)
    until = json.loads(run(settings, "audit", "--access-log", "--until", local, "--json").stdout)
    assert [e["filter"].get("lead_account") for e in since] == ["lead"]
    assert [e["filter"].get("lead_account") for e in until] == ["audit"]


def test_access_log_pages_newest_first_with_a_cursor(rt: Runtime, settings: Settings) -> None:
    # Given five audits, When `audit --access-log --limit 2` is read page after page with the
    # cursor each full page gives (on stderr with --json, in the last line of the table), Then
    # the pages are the five newest first, none twice (the reads of the log itself come after
    # the first page's cursor, so they are not in later pages); a bad cursor is refused.
    for n in range(5):
        run(settings, "audit", "--lead-account", f"L{n}")
    seen, after = [], []
    for _ in range(4):
        page = run(settings, "audit", "--access-log", "--json", "--limit", "2", *after)
        seen += [e["filter"]["lead_account"] for e in json.loads(page.stdout)]
        if "--after" not in page.stderr:
            break
        after = ["--after", page.stderr.split("--after ")[1].split()[0]]
    assert seen == ["L4", "L3", "L2", "L1", "L0"]
    table = run(settings, "audit", "--access-log", "--limit", "1")
    assert "(more: the same command with --after " in table.stdout.splitlines()[-1]
    bad = run(settings, "audit", "--access-log", "--after", "nope")
    assert bad.exit_code == 2 and "after" in bad.output


def test_a_read_the_log_cannot_record_shows_nothing(
    api: httpx.Client, rt: Runtime, settings: Settings
) -> None:
    # Given the access_log table gone (a database not migrated, say), When the auditor searches
    # over HTTP or the operator runs `appendq audit`, Then neither shows the record: the API
    # answers an error without it, the command exits 1 saying the read could not be logged.
    make_batch(rt, BatchStatus.HELD, leads(1))
    with rt.engine.begin() as conn:
        conn.execute(text("DROP TABLE access_log"))
    reply = api.get("/v1/audit", params={"lead_account": "A0"}, headers=CALLERS["auditor"])
    assert reply.status_code >= 500 and phone(0) not in reply.text and "A0" not in reply.text
    result = run(settings, "audit", "--lead-account", "A0")
    assert result.exit_code == 1 and "could not be written to the access log" in result.stderr
    assert "A0" not in result.stdout and "0000" not in result.stdout
