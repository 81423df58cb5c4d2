"""Audit lookups at scale: 10 million record rows (``--rows``) in a scratch PostgreSQL database,
in its daily partitions (``appendq.db.partitions``), filled on the server with
``INSERT ... SELECT generate_series(...)``, then ``appendq.audit.timeline.find_records`` timed
(p50 and p99 of ``--repeat`` lookups each, a page of ``--page`` records at most, 100 as the
HTTP audit's) by phone, account, record id, batch, service + time, campaign + status + 1 h, and
status alone.

Baseline column: the same lookup once with index scans turned off (what the lookup would cost
without the indexes; ``--no-baseline`` skips it, a sequential scan of 100 M rows takes minutes).
Also prints table and index sizes, bytes per record row, the partitions, the index names in each
lookup's plan, the time ``prune`` takes to drop the oldest day, and to delete one chunk of 50
finished batches the old way (rows deleted batch by batch).

The data is ``bench.audit_fill``'s: production at the maximum rate (7.2 M records a day).

    python -m bench.audit_scale [--rows N] [--repeat R] [--no-baseline]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from appendq.audit import timeline
from appendq.batches import prune
from appendq.batches.store import BatchStore
from appendq.db import partitions
from appendq.db.engine import psycopg_url
from appendq.leads import normalise_phone
from bench.audit_fill import _fill
from bench.common import row, scratch_database

TABLES = ("records", "events", "batches")


def bench_audit_scale(
    rows: int = 10_000_000, repeat: int = 200, baseline: bool = True, page: int = 100
) -> None:
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
                _lookups(conn, engine, repeat, baseline, page)
                _prune_day(engine)
                _prune_chunk(conn, engine)
            finally:
                engine.dispose()


# -- sizes ------------------------------------------------------------------------------------


def _sizes(conn: psycopg.Connection[Any], rows: int) -> None:
    total = 0
    for table in TABLES:  # a partitioned table's partitions summed (pg_partition_tree)
        heap, indexes, whole, parts = conn.execute(
            "SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid)), "
            "sum(pg_total_relation_size(relid)), count(*) FILTER (WHERE isleaf) - 1 "
            "FROM (SELECT relid, isleaf FROM pg_partition_tree(%(t)s) "
            "UNION ALL SELECT %(t)s::regclass, true "
            "WHERE NOT EXISTS (SELECT FROM pg_partition_tree(%(t)s))) tree",
            {"t": table},
        ).fetchone() or (0, 0, 0, 0)
        heap, indexes, whole = int(heap or 0), int(indexes or 0), int(whole or 0)
        total += whole
        days = f", {parts} partitions" if parts > 0 else ""
        row(
            f"size of {table} (table + indexes{days})",
            _mb(whole),
            f"{_mb(heap)} + {_mb(indexes)}",
            "",
        )
    for name, size in conn.execute(
        "SELECT i.relname, (SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree(i.oid)) "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = 'records'::regclass ORDER BY 2 DESC"
    ).fetchall():
        row(f"  index {name}", _mb(int(size)), f"{int(size) / rows:.1f} B/row", "")
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
        "batch (a page)": [{"batch_id": b} for b in batches],
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
        "campaign (a page)": [{"campaign_id": c} for c in campaigns],
        "status in_doubt (newest batches)": [{"status": "in_doubt"}] * repeat,
        "status failed (a page)": [{"status": "failed"}] * repeat,
        "status duplicate (a page)": [{"status": "duplicate"}] * repeat,
    }


def _valid(phone: str) -> bool:
    try:
        normalise_phone(phone)
    except ValueError:
        return False
    return True


def _lookups(
    conn: psycopg.Connection[Any], engine: Engine, repeat: int, baseline: bool, page: int
) -> None:
    sessions = sessionmaker(engine)
    for name, asked in _samples(conn, repeat).items():
        cases = [{"limit": page, **kwargs} for kwargs in asked]
        times, found = [], 0
        with sessions() as session:
            timeline.find_records(session, **cases[0])  # warm the connection and the plan cache
            for kwargs in cases:
                t0 = time.perf_counter()
                found += len(timeline.find_records(session, **kwargs))
                times.append(time.perf_counter() - t0)
            session.rollback()
            plan = _plan_indexes(engine, session, cases[0])
            unindexed = _without_indexes(session, cases[0]) if baseline else None
        p50, p99 = _quantiles(times)
        row(
            f"audit: {name}",
            f"{p50 * 1000:,.1f} / {p99 * 1000:,.1f} ms",
            "-" if unindexed is None else f"{unindexed * 1000:,.0f} ms",
            "" if unindexed is None else f"{unindexed / p50:,.0f}x",
        )
        row(f"  {found / len(cases):,.0f} records/lookup, plan:", ", ".join(plan) or "-", "", "")


def _quantiles(times: list[float]) -> tuple[float, float]:
    """p50 and p99 (inclusive method: the p99 of 25 samples is close to their maximum)."""
    if len(times) < 2:
        return times[0], times[0]
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return cuts[49], cuts[98]


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


def _prune_day(engine: Engine, days: int = 3) -> None:
    """``prune`` with the cutoff at the end of the oldest day, ``days`` times: each time that
    day's partitions dropped (the rows of batches that stay moved to DEFAULT), and what is left
    of its batches deleted."""
    for _ in range(days):
        with engine.connect() as conn:
            have = partitions.existing(conn, partitions.RECORDS)
        if len(have) < 2:
            return
        cutoff = partitions.day_start(have[0] + timedelta(days=1))
        t0 = time.perf_counter()
        done = prune.prune(sessionmaker(engine), cutoff)
        elapsed = time.perf_counter() - t0
        row(
            f"prune {have[0]}: {done.partitions} partitions, {done.batches} batches",
            f"{elapsed:.2f} s",
            f"{done.records:,} records",
            "",
        )


def _prune_chunk(conn: psycopg.Connection[Any], engine: Engine) -> None:
    """Delete the oldest finished batches, one chunk of 50 (500,000 records) row by row (as
    prune does for what is left after the whole days), and time it."""
    found = conn.execute(
        "SELECT updated_at FROM batches WHERE status IN ('appended', 'rejected', 'failed') "
        "ORDER BY id OFFSET %(n)s LIMIT 1",
        {"n": prune.CHUNK},
    ).fetchone()
    if found is None:
        return
    cutoff = found[0]
    t0 = time.perf_counter()
    total = prune.PruneReport(cutoff)
    while True:
        with sessionmaker(engine)() as session, session.begin():
            counts = BatchStore(session, "prune").prune(prune._prunable(cutoff), prune.CHUNK)
        if counts[0] == 0:
            break
        total += prune.PruneReport(cutoff, *counts)
    elapsed = time.perf_counter() - t0
    row(
        f"baseline: delete {total.batches} batches row by row, {total.records:,} records",
        f"{elapsed:.1f} s",
        f"{total.records / max(elapsed, 1e-9):,.0f} rec/s",
        "",
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_scale")
    parser.add_argument("--rows", type=int, default=10_000_000, help="record rows to load")
    parser.add_argument("--repeat", type=int, default=200, help="lookups per kind (p50, p99)")
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the sequential-scan baseline of each lookup",
    )
    parser.add_argument(
        "--page",
        type=int,
        default=100,
        help="records a lookup returns at most (the HTTP audit's default page; 1,000: the CLI's)",
    )
    args = parser.parse_args()
    print(f"{'measure':<46} {'p50 / p99':>16} {'no index':>16} {'ratio':>9}")
    bench_audit_scale(args.rows, args.repeat, args.baseline, args.page)


if __name__ == "__main__":
    main()
