"""Intake into several LiveVox accounts: ``POST /v1/leads`` with ``account``, tokens limited to
accounts, each account's own queues, dedupe day (its time zone) and backlog limit; the file
import's ``--account``. Real HTTP (uvicorn), real Redis and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from appendq.accounts import load_accounts
from appendq.cli.app import main
from appendq.queue.dedupe import day_of
from appendq.runtime import Runtime
from appendq.settings import Settings
from producer.api import connect
from tests.conftest import phone, settings_env
from tests.support.accounts import accounts_text
from tests.test_intake import leads, serving, with_tokens

ACME_TOKEN = "acme-intake-token-0123456789"
ALL_TOKEN = "all-intake-token-0123456789"


@pytest.fixture
def two(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "accounts.toml"
    clients = {"default": "SIMCLIENT", "acme": "SIMCLIENT"}
    text = accounts_text(settings.livevox_base_url, clients, acme_timezone="Pacific/Kiritimati")
    path.write_text(text)
    limited = with_tokens(settings, f"acme-crm:intake@acme:{ACME_TOKEN}", f"all:intake:{ALL_TOKEN}")
    return limited.model_copy(update={"accounts_file": str(path)})


@pytest.fixture
def api(two: Settings) -> Iterator[httpx.Client]:
    with serving(two) as client:
        yield client


def _post(api: httpx.Client, token: str, **body: Any) -> httpx.Response:
    return api.post(
        "/v1/leads", content=json.dumps(body), headers={"Authorization": f"Bearer {token}"}
    )


def test_each_account_gets_its_own_queue(api: httpx.Client, two: Settings) -> None:
    # Given two accounts, When leads are posted to each (the default one without "account"),
    # Then each lands in its own account's queue, the receipt names the account, and the same
    # phone in both accounts is no duplicate (dedupe is per account and target).
    first = _post(api, ALL_TOKEN, service=1001, records=leads(2))
    second = _post(api, ALL_TOKEN, account="acme", service=1001, records=leads(2))
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["account"] == "default" and second.json()["account"] == "acme"
    assert second.json()["accepted"] == 2 and second.json()["duplicate"] == 0
    with Runtime.build(two) as rt:
        assert rt.lane("default").queue.depth("service:1001") == 2
        assert rt.lane("acme").queue.depth("service:1001") == 2
        assert rt.lane("acme").queue.claim("service:1001", 10).account == "acme"
    found = api.get(
        f"/v1/leads/{second.json()['record_ids'][0]}",
        headers={"Authorization": f"Bearer {ALL_TOKEN}"},
    )
    assert found.status_code == 200 and found.json()["livevox_account"] == "acme"


def test_a_token_limited_to_an_account_may_not_enqueue_to_another(api: httpx.Client) -> None:
    # Given acme's intake token, Then it enqueues to acme, is refused (403, naming the account)
    # for the default account, and an unknown account is 422 naming the field; nothing queued
    # by the refused requests.
    assert _post(api, ACME_TOKEN, account="acme", service=1001, records=leads(1)).status_code == 202
    refused = _post(api, ACME_TOKEN, service=1001, records=leads(1, 5))
    assert refused.status_code == 403
    assert "may not act on account 'default'" in refused.json()["detail"]
    unknown = _post(api, ALL_TOKEN, account="gamma", service=1001, records=leads(1))
    assert unknown.status_code == 422 and unknown.json()["field"] == "account"
    assert "no account 'gamma' (known: default, acme)" in unknown.json()["detail"]
    bad = _post(api, ALL_TOKEN, account=7, service=1001, records=leads(1))
    assert bad.status_code == 422 and bad.json()["field"] == "account"


def test_the_backlog_limit_is_per_account(two: Settings) -> None:
    # Given a backlog limit of 3 and 4 records queued for acme, Then acme's next request is
    # 503 naming acme, and the default account's still goes in: one account's backlog never
    # refuses another's leads.
    limited = two.model_copy(update={"intake_max_depth": 3})
    with serving(limited) as api:
        assert _post(api, ALL_TOKEN, account="acme", service=1, records=leads(4)).status_code == 202
        full = _post(api, ALL_TOKEN, account="acme", service=1, records=leads(1, 9))
        assert full.status_code == 503 and "account acme" in full.json()["detail"]
        assert _post(api, ALL_TOKEN, service=1, records=leads(1, 9)).status_code == 202


def test_the_dedupe_day_is_the_accounts_own(two: Settings) -> None:
    # Given acme in UTC+14 (Kiritimati), When its producer queues a lead, Then its dedupe hash
    # is keyed by acme's local day, not the process zone's (they differ for 10 hours a day:
    # the day is compared at the same instant, so the test holds at any hour).
    accounts = load_accounts(two)
    with connect(two, account="acme") as producer:
        assert producer.account == "acme"
        producer.enqueue("service:1001", [{"phone1": phone(1)}])
    now = datetime.now(UTC)
    day = day_of(now, accounts["acme"].settings.tz)
    keys = accounts["acme"].keys()
    with Runtime.build(two) as rt:
        assert rt.redis.exists(keys.dedupe("service:1001", day))


def test_the_file_import_takes_an_account(two: Settings, tmp_path: Path) -> None:
    # Given a CSV, When `appendq enqueue --account acme` imports it, Then acme's queue holds it
    # and the summary names acme; an unknown account is a usage error (exit 2).
    csv = tmp_path / "leads.csv"
    csv.write_text("phone1\n" + "\n".join(phone(i) for i in range(3)) + "\n")
    env = settings_env(two, APPENDQ_ACCOUNTS_FILE=str(two.accounts_file))
    runner = CliRunner()
    done = runner.invoke(
        main, ["enqueue", str(csv), "--service", "1001", "--account", "acme"], env=env
    )
    assert done.exit_code == 0, done.output
    assert "accepted 3 records for acme service:1001" in done.output
    with Runtime.build(two) as rt:
        assert rt.lane("acme").queue.depth("service:1001") == 3
        assert rt.lane("default").queue.depth() == 0
    wrong = runner.invoke(main, ["enqueue", str(csv), "--service", "1", "--account", "zz"], env=env)
    assert wrong.exit_code == 2 and "no account 'zz'" in wrong.output
