"""The HTTP intake as a server: it refuses to start without tokens, documents itself, and runs as
``appendq serve`` (a real process) without logging phones or tokens."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from appendq.errors import ConfigError
from appendq.http.app import create_app
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import phone
from tests.support.procs import free_port, run_cli
from tests.test_intake import (
    AUTH,
    OPS_AUTH,
    OPS_TOKEN,
    OTHER_TOKEN,
    TOKEN,
    body,
    depth,
    leads,
    serve_process,
    serving,
    with_tokens,
)


def test_refuses_to_start_without_tokens_unless_insecure(settings: Settings) -> None:
    # Given no API tokens, When the app is built, Then it refuses with a clear error; With the
    # explicit insecure flag, Then it serves without a token.
    with pytest.raises(ConfigError, match="APPENDQ_API_TOKENS"):
        create_app(settings)
    with serving(settings, allow_no_auth=True) as api:
        assert api.post("/v1/leads", content=body(leads(1))).status_code == 202


def test_openapi_documents_the_leads_body_and_receipt(settings: Settings) -> None:
    # Given the running intake, When /openapi.json is read, Then POST /v1/leads documents its
    # body (records of LiveVox fields, at most 10,000) and the receipt; /docs is served.
    with serving(with_tokens(settings)) as api:
        spec = api.get("/openapi.json").json()
        docs = api.get("/docs")
    post_leads = spec["paths"]["/v1/leads"]["post"]
    schema = post_leads["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["records"]["maxItems"] == 10_000
    assert "phone1" in schema["properties"]["records"]["items"]["properties"]
    assert "ReceiptDoc" in json.dumps(post_leads["responses"]["202"])
    assert docs.status_code == 200


def test_appendq_serve_takes_leads_over_real_http(
    settings: Settings, rt: Runtime, tmp_path: Path
) -> None:
    # Given `appendq serve` started as a process with two bare tokens and an operator's, When a
    # submission is posted over HTTP, Then its records are in Redis; the audit query string
    # never reaches its log, and the log warns of the 2 bare tokens without showing them.
    log = tmp_path / "serve.log"
    tokens = f"{TOKEN},{OTHER_TOKEN},ops:operator:{OPS_TOKEN}"
    with serve_process(settings, log, tokens) as (url, _):
        reply = httpx.post(f"{url}/v1/leads", content=body(leads(5)), headers=AUTH)
        assert reply.status_code == 202 and reply.json()["accepted"] == 5
        audit = httpx.get(f"{url}/v1/audit", params={"phone": phone(3)}, headers=OPS_AUTH)
        assert audit.status_code == 200  # nothing batched yet: found in the queue only
    assert depth(rt) == 5
    text = log.read_text()
    assert "POST /v1/leads" in text and "GET /v1/audit " in text
    assert "2 of the 3 API tokens are bare" in text
    assert phone(3) not in text and not any(t in text for t in (TOKEN, OTHER_TOKEN, OPS_TOKEN))


def test_serve_with_two_worker_processes_takes_leads_on_one_port(
    settings: Settings, rt: Runtime, tmp_path: Path
) -> None:
    # Given `appendq serve --workers 2`, When 8 submissions are posted at once, Then two worker
    # processes serve the port and every record is queued once; the log still masks phones.
    log = tmp_path / "serve.log"
    with serve_process(settings, log, TOKEN, "--workers", "2") as (url, proc):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) >= 2, children
        bodies = [body(leads(5, 10 * k)) for k in range(8)]

        def post_one(content: bytes) -> httpx.Response:
            return httpx.post(f"{url}/v1/leads", content=content, headers=AUTH, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(post_one, bodies))
        assert [r.status_code for r in replies] == [202] * 8
    assert depth(rt) == 40
    text = log.read_text()
    assert "POST /v1/leads" in text and phone(3) not in text and TOKEN not in text


def test_serve_refuses_to_start_without_tokens(tmp_path: Path) -> None:
    # Given no APPENDQ_API_TOKENS, When `appendq serve` starts, Then it exits with a clear error.
    result = run_cli(["serve", "--port", str(free_port())], {}, check=False, timeout=30)
    assert result.returncode != 0
    assert "APPENDQ_API_TOKENS" in result.stderr and "--insecure-no-auth" in result.stderr
