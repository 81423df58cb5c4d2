"""The invariants every fault scenario must keep, checked against the real stores afterwards.

``check()`` reads PostgreSQL, Redis and the simulator's own books and asserts, all at once:

1. every accepted record id (from a receipt) has exactly one row in ``records`` (the primary key),
   hence exactly one batch, of its own target; no row exists that no receipt accepted;
2. no accepted record is unaccounted for: not in PostgreSQL and not in Redis (pending or in flight);
3. once ``settled``: every record is in PostgreSQL with a final effective status (``records.status``
   if set, else its batch's status mapped): appended, held, rejected, in_doubt or duplicate, and
   every one but appended carries a reason; ``expect`` narrows the statuses allowed;
4. at the simulator, every record (by account, or phone1 without one) was received at most once,
   unless its batch has an operator retry out of ``in_doubt``; every record appended in
   PostgreSQL is there;
5. the simulator's call log (its own ``at`` times) never shows more than ``rate_max_calls``
   Append calls in any ``rate_window_s`` seconds.

``all_final()`` is what scenarios poll while waiting for the system to settle (``wait_for``). The
module also holds what every scenario starts from: ``make_leads``/``enqueue`` (records with unique
accounts, so LiveVox's side can be matched). The processes of a scenario are
``tests.support.cluster``'s; the dialect presets, ``tests.support.dialects``'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from appendq.db.engine import psycopg_url
from appendq.db.models import RECORD_STATUS_OF_BATCH, BatchStatus
from appendq.keys import Keys
from appendq.queue.item import QueuedRecord
from appendq.settings import Settings
from producer import connect
from tests.conftest import REDIS_URL
from tests.support.cluster import Cluster
from tests.support.poll import wait_until

FINAL = frozenset({"appended", "held", "rejected", "in_doubt", "duplicate"})
MAX_SHOWN = 8

_RECORDS = text(
    "SELECT r.id::text AS id, r.batch_id, r.target, r.account, r.phone1, r.status AS rec_status,"
    " r.reason AS rec_reason, b.status AS batch_status, b.error_message, b.target AS batch_target"
    " FROM records r JOIN batches b ON b.id = r.batch_id"
)
_OPERATOR_RESENT = text(
    "SELECT DISTINCT batch_id FROM events WHERE to_status = 'ready'"
    " AND (from_status = 'in_doubt' AND detail ->> 'operator_retry' = 'true')"
)


@dataclass(frozen=True)
class Row:
    id: str
    batch_id: int
    target: str
    account: str | None
    phone1: str
    status: str  # effective
    reason: str | None
    batch_target: str

    @property
    def key(self) -> str:
        """How LiveVox's side identifies the record: account, else phone1."""
        return f"account:{self.account}" if self.account else f"phone1:{self.phone1}"


@dataclass
class Summary:
    """What the stores hold after a scenario, for the test's own further assertions."""

    statuses: Counter[str] = field(default_factory=Counter)
    batches: Counter[str] = field(default_factory=Counter)
    in_redis: int = 0
    at_simulator: Counter[str] = field(default_factory=Counter)  # key -> times received
    append_calls: list[dict[str, Any]] = field(default_factory=list)
    max_calls_in_window: int = 0
    rows: dict[str, Row] = field(default_factory=dict)


def _effective(rec_status: str | None, batch_status: str) -> str:
    if rec_status:
        return str(rec_status)
    return str(RECORD_STATUS_OF_BATCH[BatchStatus(batch_status)])


def load_rows(database_url: str) -> tuple[dict[str, Row], list[str], Counter[str], set[int]]:
    """Records by id (duplicates of an id listed apart), batch statuses, operator-resent batches."""
    engine = create_engine(psycopg_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            raw = conn.execute(_RECORDS).mappings().all()
            batches = Counter(
                str(s) for (s,) in conn.execute(text("SELECT status FROM batches")).all()
            )
            resent = {int(b) for (b,) in conn.execute(_OPERATOR_RESENT).all()}
    finally:
        engine.dispose()
    rows: dict[str, Row] = {}
    doubled: list[str] = []
    for r in raw:
        row = Row(
            r["id"],
            int(r["batch_id"]),
            r["target"],
            r["account"],
            r["phone1"],
            _effective(r["rec_status"], r["batch_status"]),
            r["rec_reason"] or r["error_message"],
            r["batch_target"],
        )
        if row.id in rows:
            doubled.append(row.id)
        rows[row.id] = row
    return rows, doubled, batches, resent


def all_final(
    database_url: str, accepted: Collection[str], expect: Collection[str] = FINAL
) -> bool:
    """Every accepted record is in PostgreSQL with one of the ``expect`` statuses."""
    rows, _, _, _ = load_rows(database_url)
    return all(i in rows and rows[i].status in expect for i in accepted)


def queued_ids(redis_url: str, prefix: str) -> set[str]:
    """Ids of the records still in Redis: pending or in flight, every target."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    try:
        found: set[str] = set()
        for raw_target in client.smembers(keys.targets):
            target = raw_target.decode() if isinstance(raw_target, bytes) else str(raw_target)
            for key in (keys.queue(target), keys.inflight(target)):
                found.update(QueuedRecord.loads(item).id for item in client.lrange(key, 0, -1))
        return found
    finally:
        client.close()


def simulator_books(sim_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records received by every campaign, Append calls) as the simulator logged them."""
    with httpx.Client(base_url=sim_url, timeout=30) as admin:
        state = admin.get("/_admin/state").json()
        received: list[dict[str, Any]] = []
        for campaign in state["campaigns"]:
            received += admin.get(f"/_admin/campaigns/{campaign['id']}/records").json()
        calls = [c for c in admin.get("/_admin/calls").json() if c["kind"] == "append"]
    return received, calls


def max_calls_in_window(times: Iterable[float], window_s: float) -> int:
    """The most calls that fall in any half-open window [t, t + window_s) of the log."""
    ordered = sorted(times)
    best, end = 0, 0
    for start, t0 in enumerate(ordered):
        end = max(end, start)
        while end < len(ordered) and ordered[end] - t0 < window_s:
            end += 1
        best = max(best, end - start)
    return best


def _record_key(record: dict[str, Any]) -> str:
    account = record.get("account")
    return f"account:{account}" if account else f"phone1:{record.get('phone1')}"


def _sample(items: Iterable[Any]) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:MAX_SHOWN])
    return shown + (f" ... ({len(items)} in all)" if len(items) > MAX_SHOWN else "")


class _Problems(list[str]):
    def flag(self, items: Collection[Any], message: str) -> None:
        """Note ``message`` with a sample of ``items`` if there are any."""
        if items:
            self.append(f"{message}: {_sample(items)}")


def _check_rows(
    problems: _Problems, ids: list[str], rows: dict[str, Row], in_redis: set[str], settled: bool
) -> None:
    """Invariants 1 and 2: one row per record, of its own target; nothing lost."""
    wanted = set(ids)
    problems.flag([i for i, n in Counter(ids).items() if n > 1], "ids repeated in the receipts")
    problems.flag(set(rows) - wanted, "records in PostgreSQL that no receipt accepted")
    problems.flag(
        [r.id for r in rows.values() if r.target != r.batch_target],
        "records in a batch of another target",
    )
    problems.flag(
        [i for i in ids if i not in rows and i not in in_redis],
        "LOST: accepted, in neither PostgreSQL nor Redis",
    )
    if settled:  # between commit and ack a claim is legally in both; a settled system has none
        problems.flag(
            [i for i in ids if i in rows and i in in_redis], "in PostgreSQL and still in Redis"
        )
        problems.flag([i for i in ids if i not in rows], "accepted records never persisted")


def _check_final(problems: _Problems, mine: list[Row], expect: Collection[str] | None) -> None:
    """Invariant 3: final status, with a reason unless appended."""
    problems.flag([f"{r.id}={r.status}" for r in mine if r.status not in FINAL], "not final")
    problems.flag(
        [f"{r.id}={r.status}" for r in mine if r.status != "appended" and not r.reason],
        "records held/rejected/in_doubt/duplicate without a reason",
    )
    if expect is not None:
        problems.flag(
            [f"{r.id}={r.status}" for r in mine if r.status not in expect],
            f"records not {'/'.join(sorted(expect))}",
        )


def _check_livevox(
    problems: _Problems,
    rows: dict[str, Row],
    mine: list[Row],
    at_simulator: Counter[str],
    resent: set[int],
) -> None:
    """Invariant 4: at most once at LiveVox (unless an operator re-sent an in_doubt batch)."""
    by_key = {r.key: r for r in rows.values()}
    problems.flag(
        [
            f"{k} x{n}"
            for k, n in at_simulator.items()
            if n > 1 and not (k in by_key and by_key[k].batch_id in resent)
        ],
        "records LiveVox received more than once",
    )
    problems.flag(
        [k for k in at_simulator if k not in by_key], "records at LiveVox that PostgreSQL lacks"
    )
    problems.flag(
        [r.id for r in mine if r.status == "appended" and r.key not in at_simulator],
        "records appended in PostgreSQL but not at LiveVox",
    )


def check(
    *,
    database_url: str,
    sim_url: str,
    accepted: Sequence[str],
    prefix: str,
    redis_url: str = REDIS_URL,
    rate_max_calls: int = 5,
    rate_window_s: float = 3.0,
    settled: bool = True,
    expect: Collection[str] | None = ("appended",),
) -> Summary:
    """Assert the invariants above; return what was found. Raises one AssertionError listing
    every broken invariant."""
    ids = list(accepted)
    rows, doubled, batches, resent = load_rows(database_url)
    in_redis = queued_ids(redis_url, prefix)
    summary = _summarize(rows, ids, batches, len(in_redis), sim_url, rate_window_s)
    mine = [rows[i] for i in ids if i in rows]
    problems = _Problems()
    problems.flag(doubled, "records with more than one row")
    _check_rows(problems, ids, rows, in_redis, settled)
    if settled:
        _check_final(problems, mine, expect)
    _check_livevox(problems, rows, mine, summary.at_simulator, resent)
    if summary.max_calls_in_window > rate_max_calls:
        problems.append(
            f"RATE: {summary.max_calls_in_window} Append calls within {rate_window_s:g} s "
            f"(at most {rate_max_calls}); calls at "
            f"{[round(c['at'], 2) for c in summary.append_calls]}"
        )
    if problems:
        raise AssertionError(
            "invariants broken:\n- "
            + "\n- ".join(problems)
            + f"\n(records by status {dict(summary.statuses)}, batches {dict(batches)}, "
            f"{summary.in_redis} in Redis, {len(summary.append_calls)} Append calls)"
        )
    return summary


def _summarize(
    rows: dict[str, Row],
    ids: list[str],
    batches: Counter[str],
    in_redis: int,
    sim_url: str,
    rate_window_s: float,
) -> Summary:
    """What the stores and the simulator's books hold, for the checks and the test."""
    received, calls = simulator_books(sim_url)
    return Summary(
        statuses=Counter(rows[i].status for i in ids if i in rows),
        batches=batches,
        in_redis=in_redis,
        at_simulator=Counter(_record_key(r) for r in received),
        append_calls=calls,
        max_calls_in_window=max_calls_in_window((c["at"] for c in calls), rate_window_s),
        rows=rows,
    )


# -- scenario inputs: records the checker can match at LiveVox --------------------------------


def make_leads(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` valid leads with a unique phone1 and account each (account ``A<i>``)."""
    return [
        {"phone1": f"212{2000000 + start + i:07d}", "account": f"A{start + i}"} for i in range(n)
    ]


def enqueue(settings: Settings, records: Sequence[dict[str, Any]], target: str) -> list[str]:
    """Queue ``records`` with the Producer; the accepted ids of the receipt."""
    with connect(settings) as producer:
        receipt = producer.enqueue(target, records)
    assert receipt.errors == [], receipt.errors
    return receipt.record_ids


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, cluster: Cluster | None = None
) -> None:
    """``tests.support.poll.wait_until`` every 0.25 s, with the tail of every process log of
    ``cluster`` in the failure."""
    explain = cluster.tails if cluster is not None else None
    wait_until(predicate, timeout, what, interval=0.25, explain=explain)
