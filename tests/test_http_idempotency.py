"""Issue 8, "Also close": an Idempotency-Key's outcome is durable with the push. A real
``appendq serve`` is killed -9 right after its push (``APPENDQ_CRASH_AT=intake_after_push``), before
it could store the receipt; the client's retry with the same key, to a fresh server, gets the
receipt and queues nothing more."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from appendq.keys import Keys
from appendq.queue.item import QueuedRecord
from appendq.settings import Settings
from tests.conftest import phone, queued
from tests.test_intake import serve_process

TOKEN = "idem-token-0123456789abcdef"
TARGET = "service:1001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def serve(settings: Settings, log: Path, **extra: str) -> Iterator[str]:
    with serve_process(settings, log, TOKEN, **extra) as (url, proc):
        yield url
        if "APPENDQ_CRASH_AT" in extra:
            assert proc.wait(10) == -9, "the intake did not die at its crashpoint"


#: A body with a bad record (index 1) and, in phone1 mode, a duplicate (index 3 repeats index 0).
RECORDS: list[Any] = [
    {"phone1": phone(1)},
    {"phone1": "not a phone"},
    {"phone1": phone(2)},
    {"phone1": phone(1), "account": "copy"},
    {"phone1": phone(3)},
]


@pytest.mark.parametrize("dedupe", ["phone1", "off"])
def test_retry_after_the_intake_died_past_its_push_queues_nothing_twice(
    settings: Settings, redis_client: Any, keys: Keys, tmp_path: Path, dedupe: str
) -> None:
    # Given an intake that dies (kill -9) right after pushing 4 good records (one a duplicate of
    # another in phone1 mode) and before storing the receipt, When the client retries the same
    # body with the same Idempotency-Key on a fresh intake, Then 202 replayed, whose ids are
    # exactly the records queued, with the same duplicates and per-record errors; the queue
    # holds one copy; the same key with another body is still 422.
    content = json.dumps({"service": 1001, "records": RECORDS}).encode()
    headers = {**AUTH, "Idempotency-Key": "order-7"}
    env = {"APPENDQ_DEDUPE": dedupe}
    with (
        serve(settings, tmp_path / "dying.log", APPENDQ_CRASH_AT="intake_after_push", **env) as url,
        pytest.raises(httpx.TransportError),
    ):
        httpx.post(f"{url}/v1/leads", content=content, headers=headers, timeout=10)
    first = queued(redis_client, keys, TARGET)
    assert len(first) == 4
    with serve(settings, tmp_path / "fresh.log", **env) as url:
        retry = httpx.post(f"{url}/v1/leads", content=content, headers=headers)
        again = httpx.post(f"{url}/v1/leads", content=content, headers=headers)
        other = json.dumps({"service": 1001, "records": RECORDS[:1]}).encode()
        changed = httpx.post(f"{url}/v1/leads", content=other, headers=headers)
    assert retry.status_code == 202 and retry.headers["idempotent-replayed"] == "true"
    assert again.json() == retry.json()
    assert changed.status_code == 422
    assert queued(redis_client, keys, TARGET) == first  # nothing more
    assert_receipt_of(retry.json(), first, dedupe)


def assert_receipt_of(receipt: dict[str, Any], pushed: list[QueuedRecord], dedupe: str) -> None:
    """``receipt`` is the one of the push that queued ``pushed`` (RECORDS, in ``dedupe`` mode)."""
    assert receipt["record_ids"] == [r.id for r in pushed if r.duplicate_of is None]
    assert [(e["index"], e["field"]) for e in receipt["errors"]] == [(1, "phone1")]
    if dedupe == "phone1":
        assert receipt["accepted"] == 3
        assert receipt["duplicates"] == [
            {"index": 3, "row": None, "record_id": pushed[2].id, "duplicate_of": pushed[0].id}
        ]
    else:
        assert (receipt["accepted"], receipt["duplicates"]) == (4, [])


def test_the_receipt_stored_after_the_push_is_replayed_as_first_answered(
    settings: Settings, redis_client: Any, keys: Keys, tmp_path: Path
) -> None:
    # Given a request with an Idempotency-Key answered normally (dupes and errors included),
    # When it is retried, Then the replay equals the first answer exactly and nothing is queued;
    # and a request whose push never happened (refused) leaves the key free for the retry.
    records: list[Any] = [{"phone1": phone(5)}, {"phone1": phone(5)}, {"phone1": 12}]
    content = json.dumps({"service": 1001, "records": records}).encode()
    headers = {**AUTH, "Idempotency-Key": "order-8"}
    with serve(settings, tmp_path / "serve.log") as url:
        first = httpx.post(f"{url}/v1/leads", content=content, headers=headers)
        replay = httpx.post(f"{url}/v1/leads", content=content, headers=headers)
        refused = json.dumps({"service": 2**63, "records": records}).encode()
        key = {**AUTH, "Idempotency-Key": "order-9"}
        assert httpx.post(f"{url}/v1/leads", content=refused, headers=key).status_code == 422
        fixed = json.dumps({"service": 1002, "records": records}).encode()
        assert httpx.post(f"{url}/v1/leads", content=fixed, headers=key).status_code == 202
    assert first.status_code == 202 and replay.json() == first.json()
    assert (first.json()["accepted"], first.json()["duplicate"]) == (1, 1)
    assert len(queued(redis_client, keys, TARGET)) == 2
