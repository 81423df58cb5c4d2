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


@contextmanager
def _intake(prefix: str) -> Iterator[str]:
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
    args = ["serve", "--port", str(port)]
    with (
        TemporaryDirectory() as tmp,
        http_process(
            args, env, Path(tmp) / "serve.log", f"{url}/openapi.json", "appendq serve", 20
        ),
    ):
        yield url
