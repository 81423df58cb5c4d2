"""Roles on API tokens (issue 11): each role against each endpoint over real HTTP (uvicorn in a
thread, real Redis and PostgreSQL, the simulator), an intake token's view of its own records only,
the roles in the OpenAPI document, and how APPENDQ_API_TOKENS is read (bare tokens, malformed
entries, duplicates: errors name the entry, never the secret)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from sqlalchemy import select

from appendq.cli import main
from appendq.db.models import BatchStatus, Record
from appendq.drain.tick import drain_once
from appendq.http.tokens import Role
from appendq.redact import settings_secrets
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import phone, settings_env
from tests.test_audit import leads as audit_leads
from tests.test_audit import make_batch
from tests.test_intake import TARGET, body, leads, serving, with_tokens

SECRETS = {
    "intake": "crm-secret-1111111111",
    "vendor": "vendor-secret-2222222222",
    "auditor": "compliance-secret-3333333333",
    "operator": "ops-secret-4444444444",
}
ENTRIES = (
    f"crm:intake:{SECRETS['intake']}",
    f"vendor:intake:{SECRETS['vendor']}",
    f"compliance:auditor:{SECRETS['auditor']}",
    f"ops-team:operator:{SECRETS['operator']}",
)
CALLERS: dict[str, dict[str, str]] = {
    "intake": {"Authorization": f"Bearer {SECRETS['intake']}"},
    "auditor": {"Authorization": f"Bearer {SECRETS['auditor']}"},
    "operator": {"Authorization": f"Bearer {SECRETS['operator']}"},
    "no token": {},
    "unknown token": {"Authorization": "Bearer not-a-configured-token"},
}
VENDOR = {"Authorization": f"Bearer {SECRETS['vendor']}"}

#: The design: each endpoint's answer to each caller (intake, auditor, operator, no token,
#: unknown token). "own"/"other": a record the intake token (crm) submitted, or another's.
EXPECTED: dict[str, tuple[int, int, int, int, int]] = {
    "POST /v1/leads": (202, 403, 403, 401, 401),
    "GET /v1/leads/own": (200, 200, 200, 401, 401),
    "GET /v1/leads/other": (404, 200, 200, 401, 401),
    "GET /v1/audit": (403, 200, 200, 401, 401),
    "GET /v1/batches/retry-preview": (403, 200, 200, 401, 401),
    "POST /v1/batches/retry": (403, 403, 200, 401, 401),
    "GET /v1/status": (403, 200, 200, 401, 401),
    "GET /metrics": (200, 200, 200, 200, 200),
    "GET /healthz": (200, 200, 200, 200, 200),
}
#: The roles each operation lists in the OpenAPI document.
DOCUMENTED = {
    ("post", "/v1/leads"): ["intake"],
    ("get", "/v1/leads/{record_id}"): ["intake", "auditor", "operator"],
    ("get", "/v1/audit"): ["auditor", "operator"],
    ("get", "/v1/batches/retry-preview"): ["auditor", "operator"],
    ("post", "/v1/batches/retry"): ["operator"],
    ("get", "/v1/status"): ["auditor", "operator"],
    ("get", "/metrics"): [],
    ("get", "/healthz"): [],
}


@pytest.fixture
def api(settings: Settings) -> Iterator[httpx.Client]:
    with serving(with_tokens(settings, *ENTRIES)) as client:
        yield client


def submit(api: httpx.Client, headers: dict[str, str], start: int) -> str:
    reply = api.post("/v1/leads", content=body(leads(1, start=start)), headers=headers)
    assert reply.status_code == 202, reply.text
    record_id: str = reply.json()["record_ids"][0]
    return record_id


def call(api: httpx.Client, endpoint: str, headers: dict[str, str], ids: dict[str, Any]) -> int:
    """``endpoint`` (a key of EXPECTED) called with ``headers``; its status code."""
    method, path = endpoint.split(" ")
    if path.startswith("/v1/leads/"):
        path = f"/v1/leads/{ids[path.rsplit('/', 1)[1]]}"
    options: dict[str, Any] = {
        "/v1/leads": {"content": body(leads(1, start=ids["next"]))},
        "/v1/audit": {"params": {"lead_account": "H1"}},
        "/v1/batches/retry-preview": {"params": {"status": "held"}},
        "/v1/batches/retry": {"json": {"batch": ids["held"], "reason": "roles table"}},
    }.get(path, {})
    ids["next"] += 1
    reply = api.request(method, path, headers=headers, **options)
    if reply.status_code == 403:
        assert reply.json()["roles"], reply.text  # names the roles that may
    if reply.status_code == 401:
        assert reply.headers["www-authenticate"].startswith("Bearer")
    return reply.status_code


def test_each_role_against_each_endpoint(api: httpx.Client, rt: Runtime) -> None:
    # Given four named tokens (two intake, an auditor, an operator), a record each intake token
    # submitted and a held batch, When each caller (and one without a token, one with an unknown
    # token) calls each endpoint, Then every answer is as designed (the table), and only the
    # intake token's submission was queued.
    ids: dict[str, Any] = {
        "own": submit(api, CALLERS["intake"], 0),
        "other": submit(api, VENDOR, 1),
        "held": make_batch(rt, BatchStatus.HELD, audit_leads(1, 50), target="service:1002"),
        "next": 100,
    }
    actual = {
        endpoint: tuple(call(api, endpoint, CALLERS[who], ids) for who in CALLERS)
        for endpoint in EXPECTED
    }
    assert actual == EXPECTED
    assert rt.queue.depth(TARGET) == 3  # own, other, and the intake token's POST in the table


def test_an_intake_token_sees_only_its_own_records(api: httpx.Client, rt: Runtime) -> None:
    # Given a record submitted by crm and one by vendor, When crm looks both up (queued, then
    # appended by a drain), Then its own is found with the phone masked and vendor's is 404 with
    # exactly the answer of a record that does not exist; the auditor sees both, phones in full,
    # and PostgreSQL holds who submitted each.
    own, other = submit(api, CALLERS["intake"], 0), submit(api, VENDOR, 1)
    unknown = "01890000-0000-7000-8000-000000000000"

    def as_unknown(reply: httpx.Response, record_id: str) -> dict[str, Any]:
        assert reply.status_code == 404
        detail: dict[str, Any] = reply.json()
        return {**detail, "detail": detail["detail"].replace(record_id, unknown)}

    for batched in (False, True):
        if batched:
            assert drain_once(rt.drainer()).outcome == "appended"
        mine = api.get(f"/v1/leads/{own}", headers=CALLERS["intake"]).json()
        assert mine["submitted_by"] == "crm" and mine["status"] in ("queued", "appended")
        nobody = as_unknown(api.get(f"/v1/leads/{unknown}", headers=CALLERS["intake"]), unknown)
        theirs = api.get(f"/v1/leads/{other}", headers=CALLERS["intake"])
        assert as_unknown(theirs, other) == nobody
        seen = api.get(f"/v1/leads/{other}", headers=CALLERS["auditor"]).json()
        assert seen["submitted_by"] == "vendor"
    assert mine["phone1"] == "******0000" and seen["phone1"] == phone(1)
    with rt.sessions() as session:
        rows = session.execute(select(Record.id, Record.submitted_by)).all()
    assert {str(r.id): r.submitted_by for r in rows} == {own: "crm", other: "vendor"}


def test_without_tokens_every_caller_is_anonymous_with_every_role(
    settings: Settings, rt: Runtime
) -> None:
    # Given the intake run with --insecure-no-auth (no tokens), When a caller without a token
    # submits, searches the audit and retries, Then each is allowed and recorded as
    # api:anonymous.
    held = make_batch(rt, BatchStatus.HELD, audit_leads(1, 50))
    with serving(settings, allow_no_auth=True) as api:
        record_id = submit(api, {}, 0)
        assert api.get(f"/v1/leads/{record_id}").json()["submitted_by"] == "anonymous"
        assert api.get("/v1/audit", params={"lead_account": "A50"}).status_code == 200
        retried = api.post("/v1/batches/retry", json={"batch": held, "reason": "demo"})
    assert retried.status_code == 200 and retried.json()["actor"] == "api:anonymous"


def test_openapi_lists_each_endpoints_roles(api: httpx.Client) -> None:
    # Given the running intake, When /openapi.json is read, Then every operation of the API has
    # x-appendq-roles as designed and says so in its description.
    spec = api.get("/openapi.json").json()
    found = {
        (method, path): operation["x-appendq-roles"]
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }
    assert found == DOCUMENTED
    for (method, path), roles in DOCUMENTED.items():
        description = spec["paths"][path][method]["description"]
        assert "Roles: " + (", ".join(roles) if roles else "none") in description


def test_tokens_are_read_as_name_role_secret_or_bare() -> None:
    # Given named entries (a secret holding ':'), a bare token and an empty entry, When
    # APPENDQ_API_TOKENS is read, Then names, roles and secrets are as given, the bare one is
    # intake "token-3"; no repr shows a secret, and the log scrubber gets each secret alone.
    settings = Settings(api_tokens="crm:intake:a:b:c, ops:operator:s2 ,bare-secret,,au:auditor:s3")
    tokens = settings.api_tokens
    assert [(t.name, t.role, t.bare) for t in tokens] == [
        ("crm", Role.INTAKE, False),
        ("ops", Role.OPERATOR, False),
        ("token-3", Role.INTAKE, True),
        ("au", Role.AUDITOR, False),
    ]
    assert [t.get_secret_value() for t in tokens] == ["a:b:c", "s2", "bare-secret", "s3"]
    assert not any(s in repr(settings) for s in ("a:b:c", "bare-secret", "s3"))
    assert {"a:b:c", "s2", "bare-secret", "s3"} <= set(settings_secrets(settings))


MALFORMED = [
    ("crm:admin:topsecret-1", "entry 1: the role is not one of intake, auditor, operator"),
    ("ok:intake:x,bad name:intake:topsecret-1", "entry 2: the name is not 1-48"),
    (f"{'n' * 49}:intake:topsecret-1", "entry 1: the name is not 1-48"),
    ("top:secret-1", "entry 1: the role is not one of"),
    ("crm:intake:", "entry 1 ('crm'): the secret is empty"),
    ("crm:intake:topsecret-1,crm:auditor:x", "the name 'crm' is given twice (entries 1 and 2)"),
    ("a:intake:topsecret-1,b:operator:topsecret-1", "'a' and 'b' have the same secret"),
    ("topsecret-1,token-1:auditor:x", "the name 'token-1' is given twice"),
]


@pytest.mark.parametrize(("entries", "message"), MALFORMED)
def test_a_malformed_token_list_names_the_entry_never_the_secret(
    entries: str, message: str
) -> None:
    # Given a malformed APPENDQ_API_TOKENS, When read, Then the error names the entry (its
    # position, its name once known) and never shows the secret.
    with pytest.raises(ValidationError) as refused:
        Settings(api_tokens=entries)
    (error,) = refused.value.errors()
    assert message in error["msg"] and "topsecret-1" not in error["msg"]
    assert "secret-1" not in error["msg"]


def test_a_command_refuses_a_malformed_token_list_without_showing_it(settings: Settings) -> None:
    # Given APPENDQ_API_TOKENS with an unknown role, When a command reads the settings, Then it
    # stops with one line naming the setting and the entry, without the secret.
    env = settings_env(settings, APPENDQ_API_TOKENS="ok:intake:x,crm:admin:topsecret-1")
    result = CliRunner(env=env).invoke(main, ["audit", "--access-log"])
    assert result.exit_code == 1
    assert "APPENDQ_API_TOKENS entry 2: the role is not one of" in result.stderr
    assert "topsecret-1" not in result.output + result.stderr
