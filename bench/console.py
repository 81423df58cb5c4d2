"""The operator's console at scale (issue #13: "overview and search answer in < 200 ms with 1 M
record rows"): a scratch PostgreSQL database filled with N record rows, their batches and events
(``bench.audit_scale._fill``: ``--batch-records`` a batch, default 10,000, at most one every 12 s;
4 services, 97 % appended, a few failed, held and in_doubt), 10,000 records queued over 4 targets
in a scratch Redis prefix with an hour of depth samples, the real app under uvicorn on a port.

Signed in as a browser does (the sign-in form's one-time value, then the session cookie), each
console page is asked ``--repeat`` times over real HTTP (httpx), each time with another existing
value where the page takes one, and every answer is checked (200, and what it should show: the
masked phone found, the batch's records...). Baseline column: the JSON API's same read in the
same run (``/v1/status`` for the overview, ``/v1/audit`` for the searches and a batch's records,
``/v1/batches/retry-preview`` for the failed batches), asked in turn with the page. Before: the
indexes and time (EXPLAIN ANALYZE) of each query on batches of the overview and the charts.

    python -m bench.console [--rows N] [--repeat R] [--batch-records N]
"""

from __future__ import annotations

import argparse
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import psycopg
import redis
import uvicorn
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from appendq.batches.reads import count_by_account_status, open_targets
from appendq.clock import utcnow
from appendq.console import reads
from appendq.console.pages import SEARCH_LIMIT
from appendq.console.reads import CHART_S, RECORDS_PAGE
from appendq.db.engine import psycopg_url
from appendq.http.app import create_app
from appendq.leads import normalise_phone
from appendq.queue import depths
from appendq.redact import mask_phone, mask_phones
from appendq.runtime import Runtime
from appendq.settings import Settings
from bench.audit_fill import BATCH, _fill
from bench.audit_scale import _captured, _sizes, _walk
from bench.common import REDIS_URL, median, queued, row, scratch_database, scratch_prefix
from tests.support.procs import free_port, wait_until

#: The queue in Redis: records per target, for the default account.
TARGETS = tuple(f"service:{1001 + s}" for s in range(4))
QUEUED_PER_TARGET = 2_500
#: The issue's bound on the overview and a search (median).
BOUND_MS = 200.0

Check = Callable[[httpx.Response], bool]
Call = tuple[str, Check]  # a path (with its query) and what its answer must hold

_NONCE = re.compile(r'<input type="hidden" name="nonce" value="([^"]+)"')


@dataclass(frozen=True)
class Probe:
    """One read, timed as the console page and as the JSON API's same read (none: no baseline);
    each a list of calls, taken in turn over the repeats."""

    name: str
    page: list[Call]
    api: list[Call]


def bench_console(rows: int = 1_000_000, repeat: int = 20, batch: int = BATCH) -> None:
    with scratch_database() as url, scratch_prefix() as prefix, TemporaryDirectory() as state:
        dsn = psycopg_url(url).replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            _load(conn, rows, batch)
            found = _samples(conn, repeat)
        _plans(url)
        secret = secrets.token_urlsafe(24)
        settings = Settings.model_validate(
            {
                "database_url": url,
                "redis_url": REDIS_URL,
                "redis_prefix": prefix,
                "api_tokens": f"ops:operator:{secret}",
                "state_dir": state,
            }
        )
        found["queued"] = _queue(settings)
        with _serving(settings) as client:
            _sign_in(client, secret)
            medians = _measure(client, _probes(found), repeat, secret)
    _verdict(medians)
    _left_in_redis(prefix)


# -- data -------------------------------------------------------------------------------------


def _load(conn: psycopg.Connection[Any], rows: int, batch: int) -> None:
    """N record rows, ``batch`` a batch, and events (audit_scale's fill), analysed; sizes."""
    t0 = time.perf_counter()
    _fill(conn, rows, batch)
    conn.execute("ANALYZE")
    row(f"fill {rows:,} records + build indexes", f"{time.perf_counter() - t0:.0f} s", "", "")
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM batches), "
        "(SELECT count(*) FROM events)"
    ).fetchone() or (0, 0, 0)
    row("rows: records / batches / events", f"{counts[0]:,}", f"{counts[1]:,} / {counts[2]:,}", "")
    _sizes(conn, rows)


def _samples(conn: psycopg.Connection[Any], repeat: int) -> dict[str, Any]:
    """Existing values to ask for (``repeat`` of each, at random) and what the pages should
    show for them."""

    def pick(sql: str) -> list[Any]:
        return [r[0] for r in conn.execute(sql).fetchall()]

    sample = "FROM records TABLESAMPLE SYSTEM (0.5)"
    phones = pick(f"SELECT phone1 {sample} ORDER BY random() LIMIT {repeat * 2}")
    failed = pick("SELECT id FROM batches WHERE status = 'failed' ORDER BY id DESC LIMIT 1")
    if not failed:
        raise SystemExit("bench.console: no failed batch in the filled data (give more --rows)")
    by_status = dict(conn.execute("SELECT status, count(*) FROM batches GROUP BY 1").fetchall())
    return {
        "phones": [p for p in phones if _findable(p)][:repeat],
        "accounts": pick(
            f"SELECT account {sample} WHERE account IS NOT NULL ORDER BY random() LIMIT {repeat}"
        ),
        "records": [str(i) for i in pick(f"SELECT id {sample} ORDER BY random() LIMIT {repeat}")],
        "batches": pick(f"SELECT id FROM batches ORDER BY random() LIMIT {repeat}"),
        "failed": failed[0],
        "appended": int(by_status.get("appended", 0)),
        "charted": conn.execute(_CHARTED).fetchone(),
    }


def _findable(phone: str) -> bool:
    """A phone stored as the producer stores it (normalised), so a search by it finds it."""
    try:
        return normalise_phone(phone) == phone
    except ValueError:
        return False


#: Records appended in the last 23 h and in all: the 24-hour chart's sum lies between.
_CHARTED = """
SELECT coalesce(sum(size) FILTER (WHERE finished_at >= now() - interval '23 hours'), 0),
       coalesce(sum(size), 0)
FROM batches WHERE status = 'appended'
"""


def _plans(url: str) -> None:
    """Once: the plan (EXPLAIN ANALYZE) of each query on batches the overview and the charts run,
    as the app builds it; the indexes it uses (or the tables it scans whole) and its time."""
    since = utcnow() - timedelta(seconds=CHART_S)
    queries: dict[str, Callable[[Session], object]] = {
        "charts: appended per minute": lambda s: reads.appended_per_minute(s, "default", since),
        "last append of a target": lambda s: reads.last_append(s, "default", TARGETS[0]),
        "batches by account and status": count_by_account_status,
        "open targets of an account": lambda s: open_targets(s, "default"),
    }
    engine = create_engine(psycopg_url(url), poolclass=NullPool)
    with Session(engine) as session:
        for name, run in queries.items():
            with _captured(engine) as seen:
                run(session)
            statement, parameters = seen[-1]
            top = (
                session.connection()
                .exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters)
                .scalar_one()[0]
            )
            names: list[str] = []
            _walk(top["Plan"], names)
            shown = ", ".join(dict.fromkeys(names)) or "none: seq scan"
            row(f"plan: {name}", f"{top['Execution Time']:.1f} ms", shown, "")


def _queue(settings: Settings) -> int:
    """The default account's queue (``QUEUED_PER_TARGET`` on each target) and an hour of depth
    samples; the records queued."""
    rt = Runtime.build(settings)
    try:
        lane = rt.lane()
        for n, target in enumerate(TARGETS):
            lane.queue.push(target, queued(QUEUED_PER_TARGET, start=n * QUEUED_PER_TARGET))
        total = sum(lane.queue.depth(t) for t in TARGETS)
        now = time.time()
        for minute in range(60):
            depths.sample(rt.redis, lane.keys, total - 40 * minute % 900, now - 60 * (60 - minute))
    finally:
        rt.close()
    row("queued in Redis (default account)", f"{total:,}", f"{len(TARGETS)} targets", "")
    return total


# -- serving ----------------------------------------------------------------------------------


@contextmanager
def _serving(settings: Settings) -> Iterator[httpx.Client]:
    """The real app under uvicorn in a thread, on a free port; a client pointed at it."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30, "the app to start")
    if not server.started:
        raise SystemExit("bench.console: the app did not start")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(15)


def _sign_in(client: httpx.Client, secret: str) -> None:
    """As a browser does: the sign-in form's one-time value, then the token; the session cookie
    stays in ``client``."""
    page = client.get("/ui/login")
    nonce = _NONCE.search(page.text)
    if page.status_code != 200 or nonce is None:
        raise SystemExit(f"bench.console: GET /ui/login answered {page.status_code}, no nonce")
    answer = client.post("/ui/login", data={"nonce": nonce.group(1), "token": secret, "next": ""})
    if answer.status_code != 303:
        raise SystemExit(f"bench.console: sign-in answered {answer.status_code}, not 303")


# -- what is asked, and what the answers must hold --------------------------------------------


def _has(*texts: str) -> Check:
    return lambda answer: all(t in answer.text for t in texts)


def _listed(*texts: str, count: int | None = None) -> Check:
    """A JSON list answer, not empty (or of ``count`` items), holding ``texts``."""

    def check(answer: httpx.Response) -> bool:
        items = answer.json()
        if not isinstance(items, list):
            return False
        sized = len(items) == count if count is not None else bool(items)
        return sized and _has(*texts)(answer)

    return check


def _charted(low: int, high: int) -> Check:
    """The default account's chart: between ``low`` and ``high`` records appended in the last
    24 h, an hour of depth samples."""

    def check(answer: httpx.Response) -> bool:
        (chart,) = answer.json()["accounts"]
        shown = chart["account"] == "default" and len(chart["depth"][0]) >= 60
        return shown and low <= sum(chart["appended"][1]) <= high

    return check


def _audit(limit: int = SEARCH_LIMIT, **query: Any) -> str:
    """The JSON API's audit search, as many records as the console's page shows."""
    return "/v1/audit?" + urlencode({**query, "limit": limit})


def _probes(found: dict[str, Any]) -> list[Probe]:
    overview = _has(
        f'data-queued="default">{found["queued"]:,}<',
        f'data-status="appended">{found["appended"]:,}<',
    )
    status = [("/v1/status", _has('"account":"default"', f'"queued":{QUEUED_PER_TARGET}'))]
    failed = found["failed"]
    return [
        Probe("overview  GET /ui/", [("/ui/", overview)], status),
        Probe("live part  GET /ui/live", [("/ui/live", overview)], status),
        Probe(
            "charts  GET /ui/charts.json", [("/ui/charts.json", _charted(*found["charted"]))], []
        ),
        Probe(
            "lead search by phone",
            [(f"/ui/leads?phone={quote(p)}", _has(mask_phone(p))) for p in found["phones"]],
            [(_audit(phone=p), _listed(p[-4:])) for p in found["phones"]],
        ),
        Probe(
            "lead search by lead account",
            [(f"/ui/leads?lead_account={a}", _has(f"<dd>{a}</dd>")) for a in found["accounts"]],
            [(_audit(lead_account=a), _listed(a)) for a in found["accounts"]],
        ),
        Probe(
            "lead search by record id",
            [(f"/ui/leads?record={r}", _has(f"<code>{r}</code>")) for r in found["records"]],
            [(_audit(record=r), _listed(r, count=1)) for r in found["records"]],
        ),
        Probe(
            "a batch  GET /ui/batches/<id>",
            [(f"/ui/batches/{b}", _has(f"Batch #{b} ", "******")) for b in found["batches"]],
            [(_audit(batch=b, limit=RECORDS_PAGE), _listed()) for b in found["batches"]],
        ),
        Probe(
            "failed batches  GET /ui/batches?status=failed",
            [("/ui/batches?status=failed", _has(f'href="/ui/batches/{failed}"'))],
            [("/v1/batches/retry-preview?status=failed", _has(str(failed)))],
        ),
    ]


# -- timing -----------------------------------------------------------------------------------


def _measure(
    client: httpx.Client, probes: list[Probe], repeat: int, secret: str
) -> dict[str, float]:
    """Each probe's page and API read in turn, ``repeat`` times after one warm-up each; a row
    per probe; the pages' medians (ms) by name."""
    auth = {"Authorization": f"Bearer {secret}"}
    print(f"{'console page (over HTTP)':<46} {'page med/p95':>16} {'API med/p95':>16} {'ratio':>9}")
    medians = {}
    for probe in probes:
        page: list[float] = []
        api: list[float] = []
        for i in range(-1, repeat):  # -1: the warm-up, not counted
            elapsed = _call(client, probe.page[i % len(probe.page)], {})
            page += [elapsed] if i >= 0 else []
            if probe.api:
                elapsed = _call(client, probe.api[i % len(probe.api)], auth)
                api += [elapsed] if i >= 0 else []
        medians[probe.name] = median(page) * 1000
        ratio = f"{median(page) / median(api):.2f}x" if api else ""
        row(probe.name, _ms(page), _ms(api) if api else "-", ratio)
    return medians


def _call(client: httpx.Client, call: Call, headers: dict[str, str]) -> float:
    """One GET, timed (s) to the last byte of the answer; checked after."""
    path, check = call
    t0 = time.perf_counter()
    answer = client.get(path, headers=headers)
    elapsed = time.perf_counter() - t0
    if answer.status_code != 200 or not check(answer):
        raise SystemExit(
            f"bench.console: GET {mask_phones(path)} answered {answer.status_code} without what "
            f"it should show: {mask_phones(answer.text[:300])!r}"
        )
    return elapsed


def _ms(times: list[float]) -> str:
    ranked = sorted(times)
    p95 = ranked[max(math.ceil(0.95 * len(ranked)) - 1, 0)]
    return f"{median(times) * 1000:.1f} / {p95 * 1000:.1f} ms"


def _verdict(medians: dict[str, float]) -> None:
    overview = medians["overview  GET /ui/"]
    phone = medians["lead search by phone"]
    slow = [n.split("  ")[0] for n, ms in medians.items() if ms >= BOUND_MS]
    under = overview < BOUND_MS and phone < BOUND_MS
    print(
        f"overview {overview:.1f} ms and phone search {phone:.1f} ms (medians) under "
        f"{BOUND_MS:.0f} ms: {'yes' if under else 'NO'}"
        + (f"; pages at or over it: {', '.join(slow)}" if slow else "; every page under it")
    )


def _left_in_redis(prefix: str) -> None:
    with redis.Redis.from_url(REDIS_URL) as client:
        left = sum(1 for _ in client.scan_iter(match=f"{prefix}:*", count=1000))
    if left:
        raise SystemExit(f"bench.console: {left} Redis keys left under the scratch prefix")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.console")
    parser.add_argument("--rows", type=int, default=1_000_000, help="record rows to load")
    parser.add_argument("--repeat", type=int, default=20, help="reads per page (median, p95)")
    parser.add_argument("--batch-records", type=int, default=BATCH, help="records a batch")
    args = parser.parse_args()
    if not 1 <= args.batch_records <= BATCH:
        parser.error(f"--batch-records must be 1..{BATCH:,}")
    print(f"{'measure':<46} {'value':>16} {'detail':>16} {'':>9}")
    bench_console(rows=args.rows, repeat=args.repeat, batch=args.batch_records)


if __name__ == "__main__":
    main()
