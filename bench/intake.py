"""The HTTP intake (``appendq serve`` in its own process, real HTTP) against the Python producer API
(``Producer.enqueue``) on the same records in the same run, same validation and dedupe."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import redis

from appendq.keys import Keys
from appendq.leads import validate_record
from appendq.queue.record_queue import RecordQueue
from appendq.settings import Settings
from bench.common import REDIS_URL, lead, row, scratch_prefix
from producer import connect
from tests.support.procs import free_port, http_process

TOKEN = "bench-intake-token"
PER_POST = 5_000
CLIENTS = 4


def bench_intake(records: int) -> None:
    """Records/s through POST /v1/leads (one client, then CLIENTS at once) and through
    ``Producer.enqueue`` in this process, on the same records, each to a target of its own."""
    raws = [lead(i) for i in range(records)]
    bodies = [_body(1001, raws[i : i + PER_POST]) for i in range(0, records, PER_POST)]
    parallel = [_body(1002, raws[i : i + PER_POST]) for i in range(0, records, PER_POST)]
    with scratch_prefix() as prefix, _intake(prefix) as url:
        depth = RecordQueue(redis.Redis.from_url(REDIS_URL), Keys(prefix))
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            _post(client, _body(1009, raws[:10]))  # warm up
            one = _rate(lambda: [_post(client, b) for b in bodies], records)
            with ThreadPoolExecutor(CLIENTS) as pool:
                many = _rate(lambda: list(pool.map(lambda b: _post(client, b), parallel)), records)
        settings = Settings(redis_url=REDIS_URL, redis_prefix=prefix)
        with connect(settings) as producer:
            api = _rate(
                lambda: [
                    producer.enqueue("service:1003", raws[i : i + PER_POST])
                    for i in range(0, records, PER_POST)
                ],
                records,
            )
        queued = [depth.depth(f"service:{s}") for s in (1001, 1002, 1003)]
        depth.redis.close()
    assert queued == [records] * 3, f"expected {records:,} queued per target, found {queued}"
    row(
        f"HTTP intake, {PER_POST:,}/POST (records/s)",
        f"{one:,.0f}",
        f"{api:,.0f}",
        f"{one / api:.2f}x",
    )
    row(
        f"HTTP intake, {CLIENTS} clients at once (records/s)",
        f"{many:,.0f}",
        f"{api:,.0f}",
        f"{many / api:.2f}x",
    )


def _body(service: int, records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"service": service, "records": records}).encode()


def _post(client: httpx.Client, content: bytes) -> int:
    """POST one submission; returns the number accepted (every record must be)."""
    reply = client.post("/v1/leads", content=content, timeout=120)
    if reply.status_code != 202 or reply.json()["rejected"]:
        raise RuntimeError(f"intake answered {reply.status_code}: {reply.text[:300]}")
    accepted: int = reply.json()["accepted"]
    return accepted


def _rate(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench_workers_and_largest(records: int, workers: int = 2) -> None:
    """``appendq serve --workers N`` with CLIENTS at once, against one worker; and the largest
    request LiveVox takes (10,000 records x 30 phones) end to end, against the full validation
    path's CPU for the same records (what the request cost before the fast path)."""
    raws = [lead(i) for i in range(records)]
    parallel = [_body(1004, raws[i : i + PER_POST]) for i in range(0, records, PER_POST)]
    largest = [_wide(i) for i in range(10_000)]
    with scratch_prefix() as prefix:
        rates = {}
        for n in (1, workers):
            with _intake(prefix, n) as url, httpx.Client(base_url=url, headers=_AUTH) as client:
                with ThreadPoolExecutor(CLIENTS) as pool:
                    rates[n] = _rate(
                        lambda: list(pool.map(lambda b: _post(client, b), parallel)), records
                    )
                if n == 1:
                    t0 = time.perf_counter()
                    _post(client, _body(1005, largest))
                    took = time.perf_counter() - t0
    row(
        f"HTTP intake, {CLIENTS} clients, --workers {workers} (rec/s)",
        f"{rates[workers]:,.0f}",
        f"{rates[1]:,.0f}",
        f"{rates[workers] / rates[1]:.2f}x",
    )
    t0 = time.process_time()
    for i, raw in enumerate(largest[:500]):
        validate_record(raw, i)
    full = (time.process_time() - t0) * len(largest) / 500
    row(
        "largest valid request, 10,000 x 30 phones (s)",
        f"{took:.2f}",
        f"{full:.2f}",
        f"{full / took:.1f}x",
    )


_AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _wide(i: int) -> dict[str, Any]:
    """A record with 30 distinct valid US phones."""
    phones = [f"212{200 + j:03d}{i:04d}" for j in range(30)]
    return {"phone1": phones[0], "phone2": phones[1:], "account": f"W{i}"}


@contextmanager
def _intake(prefix: str, workers: int = 1) -> Iterator[str]:
    """``appendq serve`` on a free port with the scratch prefix; its URL once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "APPENDQ_REDIS_URL": REDIS_URL,
        "APPENDQ_REDIS_PREFIX": prefix,
        "APPENDQ_API_TOKENS": TOKEN,
        "APPENDQ_INTAKE_MAX_DEPTH": str(10**9),
        "APPENDQ_LOG_LEVEL": "WARNING",
    }
    args = ["serve", "--port", str(port), "--workers", str(workers)]
    with (
        TemporaryDirectory() as tmp,
        http_process(
            args, env, Path(tmp) / "serve.log", f"{url}/openapi.json", "appendq serve", 20
        ),
    ):
        yield url
