"""``POST /v1/leads`` over real HTTP (uvicorn on a free port, in a thread), against real Redis, a
real PostgreSQL database and the simulator: tokens, bad bodies, per-record errors, Idempotency-Key,
backpressure. The helpers here (``serving``, ``with_tokens``, ...) serve every HTTP test; the ops
endpoints are tested in ``test_http_ops``, the server itself in ``test_http_serve``."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from appendq.drain.tick import drain_once
from appendq.http.app import create_app
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim, phone
from tests.support.procs import free_port, http_process, wait_until

TOKEN = "intake-token-0123456789"
OTHER_TOKEN = "second-token-9876543210"
OPS_TOKEN = "operator-token-5555555555"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: The operator's token: the ops endpoints (audit, retry, status) are not the intake's.
OPS_AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
#: The tokens of ``with_tokens``: two intake tokens (crm, vendor) and an operator (ops).
ENTRIES = (f"crm:intake:{TOKEN}", f"vendor:intake:{OTHER_TOKEN}", f"ops:operator:{OPS_TOKEN}")
TARGET = "service:1001"
CAMPAIGN = 5001


def leads(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"phone1": phone(start + i), "account": f"H{start + i}"} for i in range(n)]


def body(records: list[Any], **target: int) -> bytes:
    return json.dumps({**(target or {"service": 1001}), "records": records}).encode()


@contextmanager
def serving(
    settings: Settings, *, allow_no_auth: bool = False, app: FastAPI | None = None
) -> Iterator[httpx.Client]:
    """The intake app (or ``app``) under uvicorn in a thread, on a free port; a client pointed
    at it."""
    port = free_port()
    if app is None:
        app = create_app(settings, allow_no_auth=allow_no_auth)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 15, "the intake to start")
    assert server.started, "the intake did not start"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def serve_process(
    settings: Settings, log: Path, tokens: str = TOKEN, *options: str, **extra: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``appendq serve [options]`` as a real process on the test's Redis prefix and database,
    taking ``tokens`` (comma-separated), with ``extra`` ``APPENDQ_*`` variables: its URL and
    process."""
    port = free_port()
    env = {
        "APPENDQ_REDIS_URL": settings.redis_url,
        "APPENDQ_REDIS_PREFIX": settings.redis_prefix,
        "APPENDQ_DATABASE_URL": settings.database_url,
        "APPENDQ_API_TOKENS": tokens,
        **extra,
    }
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "--port", str(port), *options]
    with http_process(args, env, log, f"{url}/healthz", "appendq serve", 30) as proc:
        yield url, proc


def with_tokens(settings: Settings, *tokens: str) -> Settings:
    """``settings`` with these APPENDQ_API_TOKENS entries (``ENTRIES`` unless told), read as the
    setting reads them."""
    entries = ",".join(tokens or ENTRIES)
    return settings.model_copy(update={"api_tokens": Settings(api_tokens=entries).api_tokens})


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return with_tokens(settings)


@pytest.fixture
def api(api_settings: Settings) -> Iterator[httpx.Client]:
    with serving(api_settings) as client:
        yield client


def depth(rt: Runtime, target: str = TARGET) -> int:
    return rt.queue.depth(target)


def post(api: httpx.Client, content: bytes, **headers: str) -> httpx.Response:
    return api.post("/v1/leads", content=content, headers={**AUTH, **headers})


WRONG_AUTH: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": "Bearer"},
]


def test_missing_or_wrong_token_is_401_and_nothing_queued(api: httpx.Client, rt: Runtime) -> None:
    # Given a valid submission, When it comes without the right bearer token (none, another,
    # another scheme, a longer one), Then 401 with WWW-Authenticate: Bearer and nothing queued;
    # the ops endpoints refuse it too.
    for headers in WRONG_AUTH:
        reply = api.post("/v1/leads", content=body(leads(3)), headers=headers)
        assert reply.status_code == 401, headers
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert api.get("/v1/status", headers=headers).status_code == 401
        assert api.get("/v1/audit?account=H1", headers=headers).status_code == 401
    assert rt.queue.targets() == []


def test_any_configured_token_is_accepted(api: httpx.Client, rt: Runtime) -> None:
    # Given two configured tokens, When each submits, Then both are accepted.
    first = post(api, body(leads(1)))
    second = api.post(
        "/v1/leads",
        content=body(leads(1, start=1)),
        headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
    )
    assert (first.status_code, second.status_code) == (202, 202)
    assert depth(rt) == 2


def test_malformed_json_is_400_and_nothing_queued(api: httpx.Client, rt: Runtime) -> None:
    # Given a body that is not JSON, When posted, Then 400 naming the problem, nothing queued.
    reply = post(api, b'{"service": 1001, "records": [')
    assert reply.status_code == 400
    assert "not valid JSON" in reply.json()["detail"]
    assert post(api, b"\xff\xfe").status_code == 400
    assert depth(rt) == 0


def test_oversized_body_is_413_by_length_and_by_bytes_read(
    api_settings: Settings, rt: Runtime
) -> None:
    # Given a 2,000-byte body limit, When a bigger body comes with a Content-Length, or chunked
    # without one, Then 413 and nothing queued; a body under the limit goes in.
    small = api_settings.model_copy(update={"intake_max_body_bytes": 2_000})
    big = body(leads(60))
    assert len(big) > 2_000

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    with serving(small) as api:
        assert post(api, big).status_code == 413
        streamed = api.post("/v1/leads", content=chunked(), headers=AUTH)
        assert streamed.status_code == 413
        assert "larger than 2,000 bytes" in streamed.json()["detail"]
        assert depth(rt) == 0
        assert post(api, body(leads(5))).status_code == 202
    assert depth(rt) == 5


WRONG_SHAPES: list[tuple[bytes, str]] = [
    (b"[]", "must be a JSON object"),
    (json.dumps({"records": []}).encode(), "exactly one of service and campaign"),
    (
        json.dumps({"service": 1001, "campaign": 9001, "records": []}).encode(),
        "exactly one of service and campaign",
    ),
    (json.dumps({"service": "x", "records": []}).encode(), "positive integer"),
    (json.dumps({"service": 1001, "records": {"phone1": "1"}}).encode(), "must be a list"),
    (json.dumps({"service": 1001}).encode(), "must be a list"),
    (json.dumps({"service": 1001, "records": [], "x": 1}).encode(), "unknown fields"),
    (body([{}] * 10_001), "at most 10,000 per request"),
]


def test_wrong_shape_is_422_and_nothing_queued(api: httpx.Client, rt: Runtime) -> None:
    # Given JSON bodies of the wrong shape (not an object, no or two targets, a bad target,
    # records not a list, an unknown field, 10,001 records), When posted, Then 422 saying what
    # is wrong, and nothing is queued.
    for content, message in WRONG_SHAPES:
        reply = post(api, content)
        assert reply.status_code == 422, message
        assert message in reply.json()["detail"]
    assert rt.queue.targets() == []


def test_mixed_records_queue_only_the_good_ones_with_per_record_errors(
    api: httpx.Client, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    # Given 3 good records around 3 bad ones, When posted, Then 202 with one id per good record
    # and errors naming index and field of the bad ones; only the good ones are queued, in order;
    # the log has one intake line with the counts, and no phone number or token.
    records: list[Any] = [
        leads(1)[0],
        {"phone1": "not a phone"},
        leads(1, start=1)[0],
        {"phone1": phone(9), "colour": "red"},
        "a string",
        leads(1, start=2)[0],
    ]
    with caplog.at_level(logging.INFO):
        reply = post(api, body(records))
    assert reply.status_code == 202
    receipt = reply.json()
    assert (receipt["target"], receipt["accepted"], receipt["rejected"]) == (TARGET, 3, 3)
    assert len(receipt["record_ids"]) == 3
    assert [(e["index"], e["field"]) for e in receipt["errors"]] == [
        (1, "phone1"),
        (3, "colour"),
        (4, "record"),
    ]
    claim = rt.queue.claim(TARGET, 100)
    assert [r.id for r in claim.records] == receipt["record_ids"]
    assert [r.payload["account"] for r in claim.records] == ["H0", "H1", "H2"]
    lines = [r.getMessage() for r in caplog.records if r.name == "appendq.http"]
    assert len(lines) == 1 and "accepted 3, rejected 3, duplicates 0" in lines[0]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert phone(0) not in logged and TOKEN not in logged


def test_same_idempotency_key_replays_the_first_receipt(api: httpx.Client, rt: Runtime) -> None:
    # Given a submission with an Idempotency-Key, When the same request comes again, Then the
    # same receipt comes back marked replayed and nothing more is queued; the key with another
    # body is 422, another token's same key is its own, a key over 200 chars is 400.
    content = body(leads(4))
    first = post(api, content, **{"Idempotency-Key": "order-42"})
    again = post(api, content, **{"Idempotency-Key": "order-42"})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert depth(rt) == 4
    changed = post(api, body(leads(4, start=10)), **{"Idempotency-Key": "order-42"})
    assert changed.status_code == 422
    other = api.post(
        "/v1/leads",
        content=body(leads(2, start=20)),
        headers={"Authorization": f"Bearer {OTHER_TOKEN}", "Idempotency-Key": "order-42"},
    )
    assert other.status_code == 202 and "idempotent-replayed" not in other.headers
    assert post(api, content, **{"Idempotency-Key": "k" * 201}).status_code == 400
    assert depth(rt) == 6
    stored = [k.decode() for k in rt.redis.scan_iter(match=rt.keys.idempotency("*"))]
    assert len(stored) == 2 and not any(TOKEN in k or "order-42" in k for k in stored)


def test_concurrent_requests_with_one_key_enqueue_once(api: httpx.Client, rt: Runtime) -> None:
    # Given 8 identical requests with one Idempotency-Key sent at the same moment, When they
    # race, Then exactly one queues its records; the others get 409 (in progress) or the replay.
    content = body(leads(3_000))
    barrier = threading.Barrier(8)

    def send(_: int) -> httpx.Response:
        barrier.wait()
        return post(api, content, **{"Idempotency-Key": "race-1"})

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(send, range(8)))
    fresh = [r for r in replies if r.status_code == 202 and "idempotent-replayed" not in r.headers]
    others = [r.status_code for r in replies if r not in fresh]
    assert len(fresh) == 1
    assert set(others) <= {202, 409}
    assert depth(rt) == 3_000
    conflicts = [r for r in replies if r.status_code == 409]
    assert all("in progress" in r.json()["detail"] for r in conflicts)


def test_backpressure_503_until_drained_then_accepts(
    api_settings: Settings, rt: Runtime, sim: Sim
) -> None:
    # Given a depth limit of 5 and 8 records queued, When more are posted, Then 503 with
    # Retry-After and nothing queued (its Idempotency-Key released); When a drain empties the
    # queue, Then the same request is accepted.
    limited = api_settings.model_copy(update={"intake_max_depth": 5})
    with serving(limited) as api:
        assert post(api, body(leads(8))).status_code == 202
        more = body(leads(2, start=100))
        refused = post(api, more, **{"Idempotency-Key": "later"})
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert depth(rt) == 8
        assert drain_once(rt.drainer()).outcome == "appended"
        assert depth(rt) == 0
        accepted = post(api, more, **{"Idempotency-Key": "later"})
        assert accepted.status_code == 202 and accepted.json()["accepted"] == 2
    assert depth(rt) == 2
