"""Audit lookups at scale: 10 million record rows in a scratch PostgreSQL database, filled on the
server with ``INSERT ... SELECT generate_series(...)``, then
``appendq.audit.timeline.find_records`` timed
by phone, account, record id, batch, service + time, campaign + status + time, and status alone.

Baseline column: the same lookup once with index scans turned off (what the lookup would cost
without the indexes). Also prints table and index sizes, bytes per record row, the index names in
each lookup's plan, and the time to prune one chunk of 50 finished batches.

The data looks like production at the maximum rate: 10,000-record batches, one every 120 s
(7.2 M records a day; smaller batches, ``_fill(batch=N)``, come at most one every 12 s: LiveVox
takes 5 calls a minute), 4 services, one campaign per service and day, ~10 M distinct valid
phones (2 % repeated; US ones as 10 digits, Canadian ones as +1..., as the producer stores
them), 90 % of records with an account, 1 % duplicates, a few records rejected alone; batches
97 % appended, 2 % rejected, 1 % failed (spread over time), and the newest ones in_doubt or held
(open batches are the recent ones).

    python -m bench.audit_scale [--rows N] [--repeat R]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from appendq.audit import timeline
from appendq.batches import prune
from appendq.db.engine import psycopg_url
from appendq.leads import normalise_phone
from bench.common import median, row, scratch_database

BATCH = 10_000
SERVICES = 4
RECORD_GAP_MS = 12  # 7.2 M records a day
CALL_GAP_MS = 12_000  # 5 calls a minute: batches never closer than this
TABLES = ("records", "events", "batches")


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


def bench_audit_scale(rows: int = 10_000_000, repeat: int = 25) -> None:
    with scratch_database() as url:
        dsn = psycopg_url(url).replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            t0 = time.perf_counter()
            _fill(conn, rows)
            row(
                f"fill {rows:,} records + build indexes",
                f"{time.perf_counter() - t0:.0f} s",
                "",
                "",
            )
            _sizes(conn, rows)
            engine = create_engine(psycopg_url(url), pool_size=2)
            try:
                _lookups(conn, engine, repeat)
                _prune_chunk(conn, engine)
            finally:
                engine.dispose()


# -- fill -------------------------------------------------------------------------------------


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
    params = {"rows": rows, "batches": batches, "start_ms": start_ms, "services": SERVICES}
    params |= {"batch": batch, "gap": gap}
    conn.execute(_BATCHES, params)
    conn.execute(_EVENTS, params)
    codes = area_codes()
    conn.execute(_RECORDS, {**params, "codes": codes, "ncodes": len(codes)})
    conn.execute(_RECORD_EVENTS)
    conn.execute("SELECT setval('batches_id_seq', %(n)s)", {"n": batches})
    conn.execute("ALTER TABLE records ADD CONSTRAINT pk_records PRIMARY KEY (id)")
    for _, definition in indexes:
        conn.execute(definition)
    conn.execute("SET session_replication_role = DEFAULT")
    conn.execute("VACUUM ANALYZE records")
    conn.execute("VACUUM ANALYZE batches")
    conn.execute("VACUUM ANALYZE events")


#: Batch b holds records (b-1)*batch .. b*batch-1; created 1 s after its last record was queued.
_BATCHES = """
INSERT INTO batches (id, livevox_account, target, service_id, campaign_id, size, status, attempts,
                     http_status, error_kind, error_message, created_at, updated_at, sent_at,
                     finished_at)
SELECT b, 'default', 'service:' || svc, svc, camp, size, st, 1,
       CASE st WHEN 'appended' THEN 204 WHEN 'rejected' THEN 400 END,
       CASE WHEN st <> 'appended' THEN st END,
       CASE st WHEN 'appended' THEN NULL ELSE 'bench: ' || st END,
       created, created + interval '5 s', created + interval '2 s',
       CASE WHEN st IN ('appended', 'rejected', 'failed') THEN created + interval '5 s' END
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
INSERT INTO records (id, batch_id, position, livevox_account, target, phone1, account, payload,
                     status, reason, enqueued_at, updated_at)
SELECT (lpad(to_hex(ms), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
       i / %(batch)s + 1, i %% %(batch)s, 'default',
       'service:' || (1001 + (i / %(batch)s + 1) %% %(services)s),
       phone, account,
       jsonb_build_object('phone1', phone, 'account', account, 'firstName', 'First' || i,
                          'lastName', 'Last' || i, 'extra1', 'campaign-x'),
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


# -- sizes ------------------------------------------------------------------------------------


def _sizes(conn: psycopg.Connection[Any], rows: int) -> None:
    total = 0
    for table in TABLES:
        heap, indexes, whole = conn.execute(
            "SELECT pg_table_size(%(t)s), pg_indexes_size(%(t)s), pg_total_relation_size(%(t)s)",
            {"t": table},
        ).fetchone() or (0, 0, 0)
        total += whole
        row(f"size of {table} (table + indexes)", _mb(whole), f"{_mb(heap)} + {_mb(indexes)}", "")
    for name, size in conn.execute(
        "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
        "WHERE relname = 'records' ORDER BY 2 DESC"
    ).fetchall():
        row(f"  index {name}", _mb(size), f"{size / rows:.1f} B/row", "")
    row("bytes per record row, all tables + indexes", f"{total / rows:,.0f} B", "", "")
    per_day = total / rows * 7_200_000
    row("growth per day at 7.2 M records/day", f"{per_day / 1e9:.1f} GB", "", "")


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


# -- lookups ----------------------------------------------------------------------------------


@contextmanager
def _captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (SQL, parameters) the engine runs meanwhile."""
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", grab)


def _samples(conn: psycopg.Connection[Any], repeat: int) -> dict[str, list[dict[str, Any]]]:
    def pick(sql: str) -> list[Any]:
        return [r[0] for r in conn.execute(sql).fetchall()]

    picked = pick(f"SELECT id FROM records TABLESAMPLE SYSTEM (0.1) LIMIT {repeat * 4}")
    rng = random.Random(7)
    rng.shuffle(picked)
    phones = [
        p
        for p in pick(f"SELECT phone1 FROM records TABLESAMPLE SYSTEM (0.1) LIMIT {repeat * 2}")
        if _valid(p)
    ][:repeat]
    accounts = pick(
        "SELECT account FROM records TABLESAMPLE SYSTEM (0.1) WHERE account IS NOT NULL "
        f"LIMIT {repeat}"
    )
    samples: dict[str, list[dict[str, Any]]] = {
        "phone": [{"phone": p} for p in phones],
        "account": [{"account": a} for a in accounts],
        "record id": [{"record_id": str(i)} for i in picked[:repeat]],
    }
    return samples | _batch_samples(conn, pick, repeat)


def _batch_samples(
    conn: psycopg.Connection[Any], pick: Callable[[str], list[Any]], repeat: int
) -> dict[str, list[dict[str, Any]]]:
    batches = pick(f"SELECT id FROM batches ORDER BY random() LIMIT {repeat}")
    campaigns = pick(f"SELECT campaign_id FROM batches ORDER BY random() LIMIT {repeat}")
    windows = conn.execute(
        "SELECT b.campaign_id, b.service_id, b.created_at - interval '1 hour', b.created_at "
        f"FROM batches b ORDER BY random() LIMIT {repeat}"
    ).fetchall()
    return {
        "batch (first 1,000 records)": [{"batch_id": b} for b in batches],
        "service + 1 h window": [
            {"service_id": s, "since": a, "until": z} for _, s, a, z in windows
        ],
        "campaign + appended + 1 h": [
            {"campaign_id": c, "status": "appended", "since": a, "until": z}
            for c, _, a, z in windows
        ],
        "campaign + rejected + 1 h": [
            {"campaign_id": c, "status": "rejected", "since": a, "until": z}
            for c, _, a, z in windows
        ],
        "campaign (first 1,000)": [{"campaign_id": c} for c in campaigns],
        "status in_doubt (newest batches)": [{"status": "in_doubt"}] * repeat,
        "status failed (first 1,000)": [{"status": "failed"}] * repeat,
        "status duplicate (first 1,000)": [{"status": "duplicate"}] * repeat,
    }


def _valid(phone: str) -> bool:
    try:
        normalise_phone(phone)
    except ValueError:
        return False
    return True


def _lookups(conn: psycopg.Connection[Any], engine: Engine, repeat: int) -> None:
    sessions = sessionmaker(engine)
    for name, cases in _samples(conn, repeat).items():
        times, found = [], 0
        with sessions() as session:
            timeline.find_records(session, **cases[0])  # warm the connection and the plan cache
            for kwargs in cases:
                t0 = time.perf_counter()
                found += len(timeline.find_records(session, **kwargs))
                times.append(time.perf_counter() - t0)
            session.rollback()
            plan = _plan_indexes(engine, session, cases[0])
            unindexed = _without_indexes(session, cases[0])
        ms = median(times) * 1000
        row(
            f"audit: {name}",
            f"{ms:,.1f} ms",
            f"{unindexed * 1000:,.0f} ms",
            f"{unindexed * 1000 / ms:,.0f}x",
        )
        row(f"  {found / len(cases):,.0f} records/lookup, plan:", ", ".join(plan) or "-", "", "")


def _plan_indexes(engine: Engine, session: Session, kwargs: dict[str, Any]) -> list[str]:
    """The index names in the plan of the records query find_records runs."""
    with _captured(engine) as seen:
        timeline.find_records(session, **kwargs)
    statement, parameters = next(s for s in seen if "FROM records" in s[0])
    plan = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
    names: list[str] = []
    _walk(plan.scalar_one()[0]["Plan"], names)
    session.rollback()
    return list(dict.fromkeys(names))


def _walk(node: dict[str, Any], names: list[str]) -> None:
    if "Index Name" in node:
        names.append(node["Index Name"])
    for child in node.get("Plans", []):
        _walk(child, names)


def _without_indexes(session: Session, kwargs: dict[str, Any]) -> float:
    """One run of the lookup with index and bitmap scans off (sequential scans only)."""
    conn = session.connection()
    conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
    conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    conn.exec_driver_sql("SET LOCAL enable_indexonlyscan = off")
    t0 = time.perf_counter()
    timeline.find_records(session, **kwargs)
    elapsed = time.perf_counter() - t0
    session.rollback()
    return elapsed


# -- prune ------------------------------------------------------------------------------------


def _prune_chunk(conn: psycopg.Connection[Any], engine: Engine) -> None:
    """Delete the oldest finished batches, one chunk of 50 (500,000 records), and time it."""
    found = conn.execute(
        "SELECT updated_at FROM batches WHERE status IN ('appended', 'rejected', 'failed') "
        "ORDER BY id OFFSET %(n)s LIMIT 1",
        {"n": prune.CHUNK},
    ).fetchone()
    if found is None:
        return
    t0 = time.perf_counter()
    done = prune.prune(sessionmaker(engine), found[0])
    elapsed = time.perf_counter() - t0
    row(
        f"prune one chunk: {done.batches} batches, {done.records:,} records",
        f"{elapsed:.1f} s",
        f"{done.records / elapsed:,.0f} rec/s",
        "",
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_scale")
    parser.add_argument("--rows", type=int, default=10_000_000, help="record rows to load")
    parser.add_argument("--repeat", type=int, default=25, help="lookups per kind (median)")
    args = parser.parse_args()
    print(f"{'measure':<46} {'appendq':>16} {'no index':>16} {'ratio':>9}")
    bench_audit_scale(rows=args.rows, repeat=args.repeat)


if __name__ == "__main__":
    main()
