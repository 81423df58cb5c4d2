"""The data ``bench.audit_scale`` and ``bench.console`` load: batches, events and records filled
on the server with ``INSERT ... SELECT generate_series(...)``, in their daily partitions.

It looks like production at the maximum rate: 10,000-record batches, one every 120 s (7.2 M
records a day; smaller batches, ``_fill(batch=N)``, come at most one every 12 s: LiveVox takes 5
calls a minute), 4 services, one campaign per service and day, ~10 M distinct valid phones (2 %
repeated; US ones as 10 digits, Canadian ones as +1..., as the producer stores them), 90 % of
records with an account, a sealed payload of the size the producer's are, 1 % duplicates, a few
records rejected alone; batches 97 % appended, 2 % rejected, 1 % failed (spread over time), and
the newest ones in_doubt or held (open batches are the recent ones).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from appendq.db import partitions
from appendq.leads import normalise_phone

BATCH = 10_000
SERVICES = 4
RECORD_GAP_MS = 12  # 7.2 M records a day
CALL_GAP_MS = 12_000  # 5 calls a minute: batches never closer than this


def area_codes() -> list[str]:
    """NANP area codes, each with the prefix the producer's ``normalise_phone`` gives its
    numbers: none for a US code (10 digits), ``+1`` for a Canadian one (E.164), so a search by
    phone finds every record. Codes valid for some exchanges only (most Caribbean ones) are left
    out: every phone filled is one the producer would accept."""
    codes = []
    for npa in range(201, 1000):
        if _stored_as(f"{npa}2345678") is None:
            continue
        forms = {_stored_as(f"{npa}{nxx}4567") for nxx in range(200, 1000, 37)}
        if len(forms) == 1 and None not in forms:
            codes.append(f"{forms.pop()}{npa}")
    return codes


def _stored_as(digits: str) -> str | None:
    """The prefix ``normalise_phone`` puts before these 10 digits; None: it refuses them."""
    try:
        stored = normalise_phone(digits)
    except ValueError:
        return None
    return {digits: "", f"+1{digits}": "+1"}.get(stored)


# -- fill -------------------------------------------------------------------------------------


def _days_of(conn: psycopg.Connection[Any], start_ms: int) -> None:
    """The daily partitions from the first record's day to the days ahead (as the worker keeps
    them), so that no row lands in DEFAULT."""
    first = datetime.fromtimestamp(start_ms / 1000, UTC).date()
    last = partitions.today() + timedelta(days=partitions.AHEAD_DAYS)
    dsn = conn.info.dsn
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=NullPool
    )
    try:
        with engine.begin() as sa_conn:
            partitions.ensure(sa_conn, list(partitions.days(first, last)))
    finally:
        engine.dispose()


def _fill(conn: psycopg.Connection[Any], rows: int, batch: int = BATCH) -> None:
    """Drop the records indexes, load everything server-side (``batch`` records a batch), build
    the indexes back."""
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET session_replication_role = replica")  # no FK trigger per loaded row
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'records' "
        "AND indexname <> 'pk_records'"
    ).fetchall()
    conn.execute("ALTER TABLE records DROP CONSTRAINT pk_records")
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    batches = -(-rows // batch)
    gap = max(RECORD_GAP_MS, CALL_GAP_MS // batch)
    start_ms = int(time.time() * 1000) - rows * gap
    _days_of(conn, start_ms)
    params = {"rows": rows, "batches": batches, "start_ms": start_ms, "services": SERVICES}
    params |= {"batch": batch, "gap": gap}
    conn.execute(_BATCHES, params)
    conn.execute(_EVENTS, params)
    codes = area_codes()
    conn.execute(_RECORDS, {**params, "codes": codes, "ncodes": len(codes)})
    conn.execute(_RECORD_EVENTS)
    conn.execute("SELECT setval('batches_id_seq', %(n)s)", {"n": batches})
    conn.execute("ALTER TABLE records ADD CONSTRAINT pk_records PRIMARY KEY (id)")
    for _, definition in indexes:  # on the parent and every partition ("ON ONLY": parent alone)
        conn.execute(definition.replace(" ON ONLY ", " ON "))
    conn.execute("SET session_replication_role = DEFAULT")
    conn.execute("VACUUM ANALYZE records")
    conn.execute("VACUUM ANALYZE batches")
    conn.execute("VACUUM ANALYZE events")


#: Batch b holds records (b-1)*batch .. b*batch-1; created 1 s after its last record was queued.
_BATCHES = """
INSERT INTO batches (id, livevox_account, target, service_id, campaign_id, size, status, attempts,
                     http_status, error_kind, error_message, created_at, updated_at, sent_at,
                     finished_at, enqueued_from, enqueued_to)
SELECT b, 'default', 'service:' || svc, svc, camp, size, st, 1,
       CASE st WHEN 'appended' THEN 204 WHEN 'rejected' THEN 400 END,
       CASE WHEN st <> 'appended' THEN st END,
       CASE st WHEN 'appended' THEN NULL ELSE 'bench: ' || st END,
       created, created + interval '5 s', created + interval '2 s',
       CASE WHEN st IN ('appended', 'rejected', 'failed') THEN created + interval '5 s' END,
       to_timestamp((%(start_ms)s + ((b - 1) * %(batch)s)::bigint * %(gap)s) / 1000.0),
       to_timestamp((%(start_ms)s + ((b - 1) * %(batch)s + size - 1)::bigint * %(gap)s) / 1000.0)
FROM (
    SELECT b, 1001 + b %% %(services)s AS svc,
           least(%(rows)s - (b - 1) * %(batch)s, %(batch)s) AS size,
           CASE WHEN b > %(batches)s - 3 THEN 'in_doubt' WHEN b > %(batches)s - 8 THEN 'held'
                WHEN b %% 100 < 2 THEN 'rejected' WHEN b %% 100 = 2 THEN 'failed'
                ELSE 'appended' END AS st,
           to_timestamp((%(start_ms)s + (b * %(batch)s - 1)::bigint * %(gap)s) / 1000.0)
               + interval '1 s' AS created
    FROM generate_series(1, %(batches)s) AS b
) s,
LATERAL (SELECT 5000 + (extract(epoch FROM created)::bigint / 86400 %% 1000) * 10
                + (b %% %(services)s) AS camp) c
"""

#: ready, sending and the outcome for each batch; the drain's actor and reasons.
_EVENTS = """
INSERT INTO events (batch_id, at, from_status, to_status, actor, reason, detail)
SELECT id, created_at + (k || ' s')::interval,
       CASE k WHEN 0 THEN NULL WHEN 1 THEN 'ready' ELSE 'sending' END,
       CASE k WHEN 0 THEN 'ready' WHEN 1 THEN 'sending' ELSE status END,
       'worker@bench',
       CASE k WHEN 0 THEN 'claimed from the queue' WHEN 2 THEN error_message END,
       CASE k WHEN 1 THEN jsonb_build_object('campaign', campaign_id, 'records', size) END
FROM batches, generate_series(0, 2) AS k
WHERE k < 2 OR status <> 'held'
"""

_RECORDS = """
INSERT INTO records (id, batch_id, position, livevox_account, target, phone1, account, payload_enc,
                     payload_key, status, reason, enqueued_at, updated_at)
SELECT (lpad(to_hex(ms), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
       i / %(batch)s + 1, i %% %(batch)s, 'default',
       'service:' || (1001 + (i / %(batch)s + 1) %% %(services)s),
       phone, account,
       -- the size of a sealed payload (format, nonce, ~100 bytes of JSON, tag): 129 bytes
       decode('01' || md5(i::text) || h || md5(h) || md5(h || 'x') || md5(h || 'y')
              || md5(h || 'z') || md5(h || 'w') || md5(h || 'v'), 'hex'), 'k1',
       CASE WHEN i %% 100 = 7 THEN 'duplicate' WHEN i %% 10000 = 4242 THEN 'rejected' END,
       CASE WHEN i %% 100 = 7 THEN 'duplicate of an earlier record'
            WHEN i %% 10000 = 4242 THEN 'rejected by LiveVox: record 4242: bad field' END,
       to_timestamp(ms / 1000.0), to_timestamp(ms / 1000.0) + interval '30 s'
FROM (
    SELECT i, ms, md5(i::text) AS h,
           (%(codes)s::text[])[1 + j %% %(ncodes)s]
               || (2000000 + (j / %(ncodes)s * 7919 + 1234567) %% 8000000)::text AS phone,
           CASE WHEN i %% 10 = 3 THEN NULL ELSE 'ACC' || lpad(j::text, 9, '0') END AS account
    FROM (
        SELECT i, %(start_ms)s + i::bigint * %(gap)s AS ms,
               CASE WHEN i %% 50 = 1 THEN (i * 13) %% %(rows)s ELSE i END AS j
        FROM generate_series(0, %(rows)s - 1) AS i
    ) a
) r
"""

#: A record rejected alone has its own event (set apart by the poison isolation).
_RECORD_EVENTS = """
INSERT INTO events (batch_id, record_id, at, from_status, to_status, actor, reason)
SELECT batch_id, id, updated_at, NULL, 'rejected', 'worker@bench', reason
FROM records WHERE status = 'rejected'
"""
