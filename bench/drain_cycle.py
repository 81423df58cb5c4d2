"""One 10,000-record drain cycle (claim, persist, build the body, PUT to the simulator, record the
result) against the floor for the same data: raw Redis LPOP + PostgreSQL COPY (into a copy of the
records table with the same indexes) + PUT of the same body to the same simulator.

The cost of encrypting the payloads (``appendq.crypto``) is measured in the same run: cycles with
the real cipher alternate with cycles whose cipher stores the JSON as it is (``_NoCipher``, here
only), same database, same simulator. Issue #11 allows the encrypted cycle 10 % over that.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx
import psycopg
import redis
from cryptography.fernet import Fernet

from appendq.crypto import PayloadCipher, new_key
from appendq.db.engine import psycopg_url
from appendq.drain.tick import drain_once
from appendq.livevox.client import LiveVoxClient
from appendq.runtime import Runtime
from appendq.settings import Settings
from bench.common import (
    median,
    queued,
    row,
    scratch_database,
    scratch_prefix,
    scratch_simulator,
)

BATCH = 10_000
CAMPAIGN = 5001


def bench_drain_cycle(repeat: int) -> None:
    with (
        scratch_database() as db,
        scratch_prefix() as prefix,
        scratch_simulator("--rate-window-s", "0.01") as url,
    ):
        settings = Settings(
            database_url=db,
            redis_prefix=prefix,
            livevox_base_url=url,
            rate_window_s=0.01,
            rate_margin_s=0.0,
            campaign_cache_s=3600,
            log_level="WARNING",
        )
        encrypted_s, plain_s = _appendq_cycles(settings, repeat)
        floor_s = _floor_cycles(settings, repeat)
    a, f, p = median(encrypted_s), median(floor_s), median(plain_s)
    row("drain cycle, 10,000 records (median s)", f"{a:.3f} s", f"{f:.3f} s", f"{a / f:.2f}x")
    row("  records/s through one drain cycle", f"{BATCH / a:,.0f}", f"{BATCH / f:,.0f}", "")
    row("  payloads encrypted vs not (median s)", f"{a:.3f} s", f"{p:.3f} s", f"{a / p:.2f}x")
    gcm, fernet = _cipher_costs()
    row("  cipher per record: AES-GCM-SIV vs Fernet", f"{gcm:.1f} µs", f"{fernet:.1f} µs", "")


class _NoCipher(PayloadCipher):
    """The baseline: payloads stored as their JSON, not encrypted (this benchmark only)."""

    def seal_each(
        self, records: Iterable[tuple[str | uuid.UUID, Mapping[str, Any]]]
    ) -> Iterator[bytes]:
        for _, payload in records:
            yield json.dumps(payload, separators=(",", ":")).encode()


def _appendq_cycles(settings: Settings, repeat: int) -> tuple[list[float], list[float]]:
    """(encrypted, not encrypted) cycle times, the two kinds alternating."""
    runtimes = [
        Runtime.build(settings),
        Runtime.build(settings, cipher=_NoCipher([bytes(32)])),
    ]
    times: tuple[list[float], list[float]] = ([], [])
    try:
        for rt in runtimes:
            rt.queue.push("service:1001", queued(1))
            drain_once(rt.drainer())  # warm-up: login, campaign resolution, connections
        for r in range(2 * repeat):
            rt = runtimes[r % 2]
            rt.queue.push("service:1001", queued(BATCH, start=r * BATCH))
            time.sleep(0.05)  # let the 0.01 s rate window pass
            t0 = time.perf_counter()
            report = drain_once(rt.drainer())
            times[r % 2].append(time.perf_counter() - t0)
            assert report.outcome == "appended" and report.records == BATCH, report
    finally:
        for rt in runtimes:
            rt.close()
    return times


def _cipher_costs() -> tuple[float, float]:
    """µs to encrypt one bench record: the payload cipher, and Fernet (what it replaced)."""
    records = queued(BATCH)
    cipher = PayloadCipher([bytes(32)])
    fernet = Fernet(new_key())
    t0 = time.perf_counter()
    for _ in cipher.seal_each((q.id, q.payload) for q in records):
        pass
    t1 = time.perf_counter()
    for q in records:
        fernet.encrypt(json.dumps(q.payload, separators=(",", ":")).encode())
    t2 = time.perf_counter()
    return (t1 - t0) / BATCH * 1e6, (t2 - t1) / BATCH * 1e6


def _floor_cycles(settings: Settings, repeat: int) -> list[float]:
    client = redis.Redis.from_url(settings.redis_url)
    key = f"{settings.redis_prefix}:floor"
    conn = psycopg.connect(psycopg_url(settings.database_url).replace("+psycopg", ""))
    # The same table with the same indexes (what the audit needs), without the foreign key.
    conn.execute("CREATE TABLE floor_records (LIKE records INCLUDING ALL)")
    lv = LiveVoxClient(settings)
    lv.login()
    http = httpx.Client(
        base_url=settings.livevox_base_url, timeout=60, headers={"LV-Session": lv.session_id or ""}
    )
    times = []
    try:
        for r in range(repeat):
            client.rpush(key, *(q.dumps() for q in queued(BATCH, start=(3 * repeat + r) * BATCH)))
            time.sleep(0.05)
            t0 = time.perf_counter()
            _floor_once(client, key, conn, http)
            times.append(time.perf_counter() - t0)
    finally:
        http.close()
        lv.close()
        conn.close()
        client.delete(key)
        client.close()
    return times


def _floor_once(
    client: redis.Redis, key: str, conn: psycopg.Connection[object], http: httpx.Client
) -> None:
    items = [json.loads(raw) for raw in client.lpop(key, BATCH) or []]
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY floor_records (id, batch_id, position, livevox_account, target, phone1, "
            "account, payload, enqueued_at) FROM STDIN"
        ) as copy,
    ):
        for position, item in enumerate(items):
            rec = item["r"]
            copy.write_row(
                (
                    item["id"],
                    1,
                    position,
                    "default",
                    "service:1001",
                    rec["phone1"],
                    rec.get("account"),
                    json.dumps(rec),
                    "2026-01-01T00:00:00Z",
                )
            )
    conn.commit()
    body = json.dumps({"records": [item["r"] for item in items]}, separators=(",", ":"))
    response = http.put(
        f"/campaign/v6.0/campaigns/{CAMPAIGN}/transactions",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 204, response.text
