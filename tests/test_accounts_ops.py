"""The operator's and auditor's side with several LiveVox accounts (issue 12): status, audit,
retry, targets and /metrics show and filter by account, and a token limited to accounts sees and
acts on its own only. Two accounts (acme, beta; no ``default``) in one Runtime, both on the test
simulator; the CLI through click's runner, the API over real HTTP (uvicorn); real Redis and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from appendq.audit import timeline
from appendq.batches.store import BatchStore
from appendq.cli import main
from appendq.db.models import AccessLog, BatchStatus
from appendq.drain import halt
from appendq.errors import InvalidValue
from appendq.ops import status
from appendq.queue.item import QueuedRecord
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import phone, settings_env
from tests.support.batches import move, persist_claim
from tests.test_audit import PATHS, leads
from tests.test_intake import serving, with_tokens
from tests.test_metrics import scrape

pytestmark = pytest.mark.usefixtures("keep_root_logging")

ACCOUNT = """
[accounts.{name}]
base_url = "{url}"
client_name = "SIMCLIENT"
username = "appendq"
"""
SECRETS = {
    "ops": "ops-secret-1111111111",
    "ops-acme": "ops-acme-secret-2222222222",
    "audit-acme": "audit-acme-secret-3333333333",
    "crm": "crm-secret-4444444444",
}
TOKENS = (
    f"ops:operator:{SECRETS['ops']}",
    f"ops-acme:operator@acme:{SECRETS['ops-acme']}",
    f"audit-acme:auditor@acme:{SECRETS['audit-acme']}",
    f"crm:intake:{SECRETS['crm']}",
)
TARGET = "service:1001"


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


def with_accounts(settings: Settings, path: Path, *names: str) -> Settings:
    """``settings`` serving these accounts, all on the test simulator, with TOKENS."""
    tables = (ACCOUNT.format(name=n, url=settings.livevox_base_url) for n in names)
    path.write_text("".join(tables))
    return with_tokens(settings, *TOKENS).model_copy(update={"accounts_file": str(path)})


@pytest.fixture
def two(settings: Settings, tmp_path: Path) -> Settings:
    return with_accounts(settings, tmp_path / "accounts.toml", "acme", "beta")


@pytest.fixture
def rt2(two: Settings) -> Iterator[Runtime]:
    with Runtime.build(two) as runtime:
        yield runtime


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    """The API over acme and beta, and a default account (the HTTP intake's producer needs one
    today), with nothing of its own."""
    path = tmp_path / "served.toml"
    with serving(with_accounts(settings, path, "default", "acme", "beta")) as client:
        yield client


def cli(two: Settings, *args: str) -> Result:
    env = settings_env(two, APPENDQ_ACCOUNTS_FILE=str(two.accounts_file))
    return CliRunner(env={**env, "APPENDQ_LOG_LEVEL": "WARNING"}).invoke(main, list(args))


def batch_of(rt: Runtime, account: str, to: BatchStatus, records: list[QueuedRecord]) -> int:
    """A batch of ``account``'s TARGET persisted from its own queue, moved to ``to``."""
    lane = rt.lane(account)
    lane.queue.push(TARGET, records)
    claim = lane.queue.claim(TARGET, 10_000)
    with rt.sessions() as session:
        batch = persist_claim(session, claim, actor="worker@test")
    lane.queue.ack(claim)
    assert batch is not None
    with rt.sessions() as session, session.begin():
        for step in PATHS[to]:
            sent = step == BatchStatus.SENDING
            extra: dict[str, Any] = {"campaign_id": 5001, "attempts": 1} if sent else {}
            move(session, batch.id, step, actor="worker@test", **extra)
    return batch.id


def status_of(rt: Runtime, batch_id: int) -> BatchStatus:
    with rt.sessions() as session:
        (found,) = timeline.find_records(session, batch_id=batch_id, limit=1)
    return BatchStatus(found.batch_status)


@pytest.fixture
def scene(rt2: Runtime) -> dict[str, Any]:
    """acme: a failed batch (A0, A1), 3 records queued, its service:1001 held for a reason;
    beta: a failed batch (A10, A11), 2 records queued, the same target's state at campaign
    5001, and the account halted."""
    ids = {"acme": batch_of(rt2, "acme", BatchStatus.FAILED, leads(2))}
    ids["beta"] = batch_of(rt2, "beta", BatchStatus.FAILED, leads(2, 10))
    rt2.lane("acme").queue.push(TARGET, leads(3, 20))
    rt2.lane("beta").queue.push(TARGET, leads(2, 30))
    with rt2.sessions() as session, session.begin():
        store = BatchStore(session, "worker@test")
        store.set_target_state("acme", TARGET, campaign_id=None, hold_reason="no campaign today")
        store.set_target_state("beta", TARGET, campaign_id=5001, hold_reason=None)
    halt.halt(rt2.redis, rt2.lane("beta").keys, "LiveVox answered 403", 600)
    return ids


def test_status_shows_each_account_apart_and_filters_by_one(
    rt2: Runtime, two: Settings, scene: dict[str, Any]
) -> None:
    # Given acme and beta each with service:1001 (queued, a state, a failed batch) and beta
    # halted, When the status is collected, Then each account's section has its own depth,
    # campaign, hold reason, halt and batches (none mixed), the totals are over both; asked for
    # beta, only beta; an unknown account is refused.
    data = status.collect(rt2)
    acme, beta = data["accounts"]
    assert [acme["account"], beta["account"]] == ["acme", "beta"]
    assert acme["client_name"] == beta["client_name"] == "SIMCLIENT"
    shown = ("target", "queued", "campaign_id", "hold_reason")
    assert [tuple(t[k] for k in shown) for t in acme["targets"]] == [
        (TARGET, 3, None, "no campaign today")
    ]
    assert [tuple(t[k] for k in shown) for t in beta["targets"]] == [(TARGET, 2, 5001, None)]
    assert acme["halt"] is None and beta["halt"]["reason"] == "LiveVox answered 403"
    assert acme["batches"] == beta["batches"] == {"failed": 1}
    assert data["batches"] == {"failed": 2}
    only = status.collect(rt2, "beta")
    assert [s["account"] for s in only["accounts"]] == ["beta"] and only["batches"] == {"failed": 1}
    with pytest.raises(InvalidValue, match="no account 'gamma'"):
        status.collect(rt2, "gamma")
    text = cli(two, "status")
    assert text.exit_code == 0, text.output
    assert "account acme (LiveVox client SIMCLIENT)" in text.stdout
    assert "`appendq resume --account beta` lifts it" in text.stdout
    assert "all accounts: batches: failed 2" in text.stdout
    as_json = cli(two, "status", "--account", "acme", "--json")
    assert [s["account"] for s in json.loads(as_json.stdout)["accounts"]] == ["acme"]
    assert cli(two, "status", "--account", "gamma").exit_code == 2


def test_audit_filters_by_account_and_shows_it(
    rt2: Runtime, two: Settings, scene: dict[str, Any]
) -> None:
    # Given failed batches of acme (leads A0, A1) and beta (A10, A11), When the auditor asks
    # by LiveVox account (functions, `audit --account`), Then only that account's records come
    # back, each naming its LiveVox account; the lead's account number is --lead-account.
    with rt2.sessions() as session:
        found = timeline.find_records(session, livevox_account="beta")
        both = timeline.find_records(session, livevox_account=["acme", "beta"], status="failed")
        none = timeline.find_records(session, account="A1", livevox_account="beta")
    assert [(r.account, r.livevox_account) for r in found] == [("A10", "beta"), ("A11", "beta")]
    assert len(both) == 4 and none == []
    as_json = cli(two, "audit", "--account", "acme", "--json")
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.stdout)["records"]
    assert [(r["account"], r["livevox_account"]) for r in records] == [
        ("A0", "acme"),
        ("A1", "acme"),
    ]
    table = cli(two, "audit", "--lead-account", "A10")
    assert f"{TARGET}@beta  phone ******0010  account A10" in table.stdout
    gone = cli(two, "audit", "--account", "gamma")
    assert gone.exit_code == 0 and "(account gamma is not in APPENDQ_ACCOUNTS_FILE)" in gone.stdout


def test_a_token_limited_to_an_account_reads_only_that_accounts_records(
    api: httpx.Client, rt2: Runtime, scene: dict[str, Any]
) -> None:
    # Given an auditor token limited to acme, When it searches the audit without an account,
    # Then only acme's records come back (the forced filter, written to the access log); asking
    # for beta is 403; a beta lead, batched or still queued, is 404 exactly as an unknown one.
    who = auth("audit-acme")
    mine = api.get("/v1/audit", params={"lead_account": "A0"}, headers=who).json()
    assert [r["livevox_account"] for r in mine] == ["acme"]
    theirs = api.get("/v1/audit", params={"lead_account": "A10"}, headers=who)
    assert theirs.status_code == 200 and theirs.json() == []
    refused = api.get("/v1/audit", params={"account": "beta"}, headers=who)
    assert refused.status_code == 403 and "account 'beta'" in refused.json()["detail"]
    everyone = api.get("/v1/audit", params={"lead_account": "A10"}, headers=auth("ops")).json()
    assert [r["livevox_account"] for r in everyone] == ["beta"]
    with rt2.sessions() as session:
        logged = [r.filter for r in session.scalars(select(AccessLog).order_by(AccessLog.id))]
    assert logged == [
        {"lead_account": "A0", "account": ["acme"], "limit": 100},
        {"lead_account": "A10", "account": ["acme"], "limit": 100},
        {"lead_account": "A10", "limit": 100},
    ]
    beta_lead = everyone[0]["record_id"]
    assert api.get(f"/v1/leads/{beta_lead}", headers=who).status_code == 404
    assert api.get(f"/v1/leads/{beta_lead}", headers=auth("ops")).status_code == 200
    posted = api.post("/v1/leads", content=body_of("beta", 40), headers=auth("crm"))
    queued = posted.json()["record_ids"][0]
    assert api.get(f"/v1/leads/{queued}", headers=who).status_code == 404
    seen = api.get(f"/v1/leads/{queued}", headers=auth("ops")).json()
    assert (seen["status"], seen["livevox_account"]) == ("queued", "beta")


def body_of(account: str, start: int) -> bytes:
    """A POST /v1/leads body of one lead for ``account``'s service 1001."""
    lead = {"phone1": phone(start), "account": f"Q{start}"}
    return json.dumps({"account": account, "service": 1001, "records": [lead]}).encode()


def test_status_over_http_per_account_and_for_a_limited_token(
    api: httpx.Client, scene: dict[str, Any]
) -> None:
    # Given acme and beta, When an unlimited operator asks /v1/status (all, ?account=beta,
    # ?account=gamma) and acme's auditor asks (all, ?account=beta), Then the operator sees both
    # (or beta alone, or 422), the limited token acme alone, its totals acme's, and 403 for beta.
    ops, who = auth("ops"), auth("audit-acme")
    every = api.get("/v1/status", headers=ops).json()
    assert [s["account"] for s in every["accounts"]] == ["default", "acme", "beta"]
    assert every["batches"] == {"failed": 2}
    beta = api.get("/v1/status", params={"account": "beta"}, headers=ops).json()
    assert [s["account"] for s in beta["accounts"]] == ["beta"]
    unknown = api.get("/v1/status", params={"account": "gamma"}, headers=ops)
    assert unknown.status_code == 422 and unknown.json()["field"] == "account"
    limited = api.get("/v1/status", headers=who).json()
    assert [s["account"] for s in limited["accounts"]] == ["acme"]
    assert limited["batches"] == {"failed": 1}
    assert api.get("/v1/status", params={"account": "beta"}, headers=who).status_code == 403


def test_cli_retry_by_account_moves_only_that_accounts_batches(
    rt2: Runtime, two: Settings, scene: dict[str, Any]
) -> None:
    # Given a failed batch in acme and in beta, When `retry --status failed --account acme`
    # runs, Then only acme's moves (the preview names each batch's account); an unknown account
    # is exit 2; `retry --batch <beta's>` needs no account and moves it.
    moved = cli(two, "retry", "--status", "failed", "--account", "acme", "--reason", "x", "--yes")
    assert moved.exit_code == 0, moved.output
    assert f"{scene['acme']:>8}  acme       {TARGET}" in moved.stdout
    assert "beta" not in moved.stdout
    assert status_of(rt2, scene["acme"]) == BatchStatus.READY
    assert status_of(rt2, scene["beta"]) == BatchStatus.FAILED
    unknown = cli(two, "retry", "--status", "failed", "--account", "gamma", "--reason", "x")
    assert unknown.exit_code == 2 and "no account 'gamma'" in unknown.stderr
    by_id = cli(two, "retry", "--batch", str(scene["beta"]), "--reason", "x", "--yes")
    assert by_id.exit_code == 0, by_id.output
    assert status_of(rt2, scene["beta"]) == BatchStatus.READY


def test_a_limited_operator_retries_only_its_accounts_batches(
    api: httpx.Client, rt2: Runtime, scene: dict[str, Any]
) -> None:
    # Given acme's operator token, When it previews and retries failed batches, names beta's
    # batch by id, names it in `expect`, or asks for account beta, Then only acme's batch is
    # shown and moved; beta's is not found (as a batch that does not exist) and stays failed;
    # account beta is 403.
    who = auth("ops-acme")
    shown = api.get("/v1/batches/retry-preview", params={"status": "failed"}, headers=who)
    assert [(b["id"], b["account"]) for b in shown.json()["batches"]] == [(scene["acme"], "acme")]
    by_id = {"batch": scene["beta"], "reason": "not mine"}
    assert api.post("/v1/batches/retry", json=by_id, headers=who).json()["count"] == 0
    named = {"status": ["failed"], "reason": "r", "expect": [
        {"id": scene["beta"], "status": "failed", "version": 2},
    ]}  # fmt: skip
    left = api.post("/v1/batches/retry", json=named, headers=who).json()
    assert left["count"] == 0 and [b["now"] for b in left["left"]] == [None]
    other = {"status": ["failed"], "account": "beta", "reason": "r"}
    assert api.post("/v1/batches/retry", json=other, headers=who).status_code == 403
    assert status_of(rt2, scene["beta"]) == BatchStatus.FAILED
    mine = api.post("/v1/batches/retry", json={"status": ["failed"], "reason": "r"}, headers=who)
    assert [b["id"] for b in mine.json()["batches"]] == [scene["acme"]]
    assert status_of(rt2, scene["acme"]) == BatchStatus.READY
    assert status_of(rt2, scene["beta"]) == BatchStatus.FAILED


def test_targets_are_listed_set_aside_and_cleared_per_account(
    two: Settings, scene: dict[str, Any]
) -> None:
    # Given service:1001 queued in acme and in beta, When acme's is set aside, Then the listing
    # shows both accounts' rows with only acme's aside; beta's cannot be cleared (not aside);
    # acme's can, and the history names the account; with no default account, --account is
    # needed to act (exit 2).
    aside = cli(two, "targets", "set-aside", TARGET, "--account", "acme", "--reason", "paused")
    assert aside.exit_code == 0 and f"{TARGET} of account acme set aside" in aside.stdout
    rows = json.loads(cli(two, "targets", "--json").stdout)
    assert [(r["account"], r["target"], r["queued"], bool(r["set_aside"])) for r in rows] == [
        ("acme", TARGET, 3, True),
        ("beta", TARGET, 2, False),
    ]
    only = json.loads(cli(two, "targets", "--account", "beta", "--json").stdout)
    assert [r["account"] for r in only] == ["beta"]
    assert cli(two, "targets", "clear", TARGET, "--account", "beta", "--reason", "x").exit_code == 1
    no_default = cli(two, "targets", "clear", TARGET, "--reason", "x")
    assert no_default.exit_code == 2 and "no account 'default'" in no_default.stderr
    cleared = cli(two, "targets", "clear", TARGET, "--account", "acme", "--reason", "back")
    assert cleared.exit_code == 0, cleared.output
    history = json.loads(cli(two, "targets", "history", "--json").stdout)
    assert [(e["account"], e["action"]) for e in history] == [
        ("acme", "cleared"),
        ("acme", "set_aside"),
    ]
    assert json.loads(cli(two, "targets", "history", "--account", "beta", "--json").stdout) == []


def test_metrics_label_every_per_account_series(rt2: Runtime, scene: dict[str, Any]) -> None:
    # Given acme and beta each with service:1001 (3 and 2 queued, acme's held, beta halted, one
    # failed batch each), When scraped, Then queue depth, rate budget, halt, target held and
    # batches carry the account: the same target twice, never summed.
    samples = scrape(rt2)

    def of(name: str, account: str, **labels: str) -> float:
        key = tuple(sorted({"account": account, **labels}.items()))
        return samples[(name, key)]

    assert of("appendq_queue_depth", "acme", target=TARGET) == 3
    assert of("appendq_queue_depth", "beta", target=TARGET) == 2
    assert (of("appendq_halted", "acme"), of("appendq_halted", "beta")) == (0, 1)
    assert of("appendq_rate_budget_remaining", "beta") == rt2.settings.rate_max_calls
    assert of("appendq_target_held", "acme", target=TARGET) == 1
    assert of("appendq_target_held", "beta", target=TARGET) == 0
    assert of("appendq_batches", "acme", status="failed") == 1
    assert of("appendq_batches", "beta", status="appended") == 0
    assert of("appendq_records", "beta", status="failed") == 2
    assert not any(dict(k[1]).get("account") == "default" for k in samples)


def test_openapi_documents_the_account_of_bodies_and_ops_parameters(api: httpx.Client) -> None:
    # Given the running API, When /openapi.json is read, Then the leads body has an optional
    # string "account" defaulting to "default", the retry body an optional "account", and the
    # status, audit and retry preview an "account" parameter (the audit also "lead_account").
    spec = api.get("/openapi.json").json()

    def body_schema(path: str) -> dict[str, Any]:
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        schema: dict[str, Any] = content["application/json"]["schema"]
        return schema

    leads_account = body_schema("/v1/leads")["properties"]["account"]
    assert (leads_account["type"], leads_account["default"]) == ("string", "default")
    assert "account" not in body_schema("/v1/leads")["required"]
    assert "account" in body_schema("/v1/batches/retry")["properties"]
    for path, names in {
        "/v1/status": {"account"},
        "/v1/audit": {"account", "lead_account"},
        "/v1/batches/retry-preview": {"account"},
    }.items():
        assert names <= {p["name"] for p in spec["paths"][path]["get"]["parameters"]}
