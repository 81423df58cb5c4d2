"""One 10,000-record drain cycle (claim, persist, build the body, PUT to the simulator, record the
result) against the floor for the same data: raw Redis LPOP + PostgreSQL COPY (into a copy of the
records table with the same indexes) + PUT of the same body to the same simulator."""

from __future__ import annotations

import json
import time

import httpx
import psycopg
import redis

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
        appendq_s = _appendq_cycles(settings, repeat)
        floor_s = _floor_cycles(settings, repeat)
    a, f = median(appendq_s), median(floor_s)
    row("drain cycle, 10,000 records (median s)", f"{a:.3f} s", f"{f:.3f} s", f"{a / f:.2f}x")
    row("  records/s through one drain cycle", f"{BATCH / a:,.0f}", f"{BATCH / f:,.0f}", "")


def _appendq_cycles(settings: Settings, repeat: int) -> list[float]:
    rt = Runtime.build(settings)
    drainer = rt.drainer()
    rt.queue.push("service:1001", queued(1))
    drain_once(drainer)  # warm-up: login, campaign resolution, connections
    times = []
    try:
        for r in range(repeat):
            rt.queue.push("service:1001", queued(BATCH, start=r * BATCH))
            time.sleep(0.05)  # let the 0.01 s rate window pass
            t0 = time.perf_counter()
            report = drain_once(drainer)
            times.append(time.perf_counter() - t0)
            assert report.outcome == "appended" and report.records == BATCH, report
    finally:
        rt.close()
    return times


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
            client.rpush(key, *(q.dumps() for q in queued(BATCH, start=(repeat + r) * BATCH)))
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
            "COPY floor_records (id, batch_id, position, target, phone1, account, payload, "
            "enqueued_at) FROM STDIN"
        ) as copy,
    ):
        for position, item in enumerate(items):
            rec = item["r"]
            copy.write_row(
                (
                    item["id"],
                    1,
                    position,
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
