"""Issue #12's acceptance with real processes: three LiveVox accounts (acme and beta hosted by one
simulator process as two client codes, gamma by a second one), one ``appendq beat`` and two
``appendq worker --no-beat``, and beta's LiveVox stalls every Append 40 s.

The timings are scaled (a 1 s drain interval, 3 calls per 5 s rolling window, batches of 10); the
stall is not: 40 s, with a read timeout above it, so beta's calls are slow, not lost. S is the
moment beta's first Append begins, in one of the workers, which it holds for 40 s:

1. **on time**: from S, a round of one batch for acme and one for gamma every ROUND_S; each
   record lands within ON_TIME_S of being queued (the other worker takes every tick);
2. **kill -9 mid-run**: the free worker as it drains one more round, then the one inside beta's
   call; both restarted at once. Beta's batch stays ``sending`` until the dead worker's drain
   lease runs out (LEASE_TTL_S), is reaped to in_doubt and reconciled against the transaction
   list one call deadline later (its records landed after the stall: all found, appended).
   Beta's second batch (another target, not blocked by the in_doubt one) goes out when the lease
   is free and stalls 40 s in a worker again;
3. **rate windows pressed**: meanwhile acme and gamma get a backlog of three windows' calls
   (on another target of theirs, which a batch the kill left in doubt does not block);
4. **the books**: each campaign holds each record of its account exactly once, every batch is
   appended, Redis holds nothing; no client's rolling window (the simulators' own call logs)
   ever held more than MAX_CALLS Append calls, none was refused, and beta's took 40 s each.

Wall time ~S + LEASE_TTL_S + DEADLINE_S, about 2 minutes, set by the kill inside a 40 s call.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from appendq.db.engine import psycopg_url
from tests.conftest import REDIS_URL, make_settings
from tests.support.accounts import (
    Leads,
    LiveAccount,
    Sent,
    answering,
    busiest_window,
    hosted,
    landing_problems,
    lateness,
    launch_simulator,
    still_queued,
    ticks_waiting,
    write_accounts_file,
)
from tests.support.cluster import Cluster
from tests.support.invariants import all_final, load_rows, wait_for
from tests.support.procs import kill9, wait_until

pytestmark = pytest.mark.slow

INTERVAL_S = 1.0
WINDOW_S = 5.0
MAX_CALLS = 3  # < WINDOW_S / INTERVAL_S: one call per tick would overrun the window unlimited
MARGIN_S = 0.5
BATCH = 10
STALL_S = 40.0
READ_S = STALL_S + 3  # a 40 s stall is slow, not a lost answer
DEADLINE_S = 1.0 + READ_S + 1.0  # connect + read timeouts + grace: the call deadline
LEASE_TTL_S = min(2 * DEADLINE_S + INTERVAL_S, 60.0)  # appendq.drain.tick.lease_ttl_s
#: One batch per healthy account per round: a counted window (WINDOW_S + MARGIN_S) holds at
#: most 3 rounds, MAX_CALLS, so the on-time records never wait for a rate slot.
ROUND_S = 2.5
ROUNDS = 5  # the kills come ~S + 14, before the dead worker's lease would be renewed (S + 20)
#: A record waits at most one interval for its account's next tick, which may queue at most one
#: interval behind the other accounts' ticks on the one free worker (a tick takes far less);
#: one more interval of slack for a busy machine. Waiting on beta would cost tens of intervals.
ON_TIME_S = 3 * INTERVAL_S
#: Everything is final once the dead workers' leases ran out (LEASE_TTL_S after the kill) and an
#: in_doubt batch reaped then waited its call deadline; a few intervals for the ticks.
SETTLE_S = LEASE_TTL_S + DEADLINE_S + 10 * INTERVAL_S
HEALTHY = ("acme", "gamma")


@dataclass
class World:
    """The scenario's accounts, processes (by log name), stores and queued records."""

    accounts: dict[str, LiveAccount]
    cluster: Cluster
    leads: Leads
    database_url: str
    prefix: str
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def sims_up(self) -> None:
        urls = {a.sim_url for a in self.accounts.values()}
        wait_for(lambda: all(answering(u) for u in urls), 30, "the simulators", self.cluster)

    def start_worker(self, name: str, *args: str) -> None:
        self.workers[name] = self.cluster.start(name, ["worker", "--no-beat", *args])

    def sql(self, query: str, **params: Any) -> list[Any]:
        engine = create_engine(psycopg_url(self.database_url), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(query), params).all())
        finally:
            engine.dispose()


def fleet_env(database_url: str, prefix: str, accounts_file: Path, state: Path) -> dict[str, str]:
    return {
        "APPENDQ_DATABASE_URL": database_url,
        "APPENDQ_REDIS_URL": REDIS_URL,
        "APPENDQ_REDIS_PREFIX": prefix,
        "APPENDQ_ACCOUNTS_FILE": str(accounts_file),
        "APPENDQ_STATE_DIR": str(state),
        "APPENDQ_DRAIN_INTERVAL_S": str(INTERVAL_S),
        "APPENDQ_RATE_WINDOW_S": str(WINDOW_S),
        "APPENDQ_RATE_MAX_CALLS": str(MAX_CALLS),
        "APPENDQ_RATE_MARGIN_S": str(MARGIN_S),
        "APPENDQ_BATCH_MAX": str(BATCH),
        "APPENDQ_LIVEVOX_CONNECT_TIMEOUT_S": "1",
        "APPENDQ_LIVEVOX_READ_TIMEOUT_S": str(READ_S),
        "APPENDQ_CALL_GRACE_S": "1",
    }


@contextmanager
def world(tmp_path: Path, database_url: str, prefix: str) -> Iterator[World]:
    """Simulator A (ACME, BETA) and B (GAMMA) starting (``World.sims_up`` waits for them) and
    the accounts file; every process started is killed afterwards, even when the test fails."""
    (tmp_path / "logs").mkdir()
    path = tmp_path / "accounts.toml"
    cluster = Cluster(tmp_path / "logs", fleet_env(database_url, prefix, path, tmp_path / "st"))
    try:
        rate = ("--rate-window-s", str(WINDOW_S), "--rate-max-calls", str(MAX_CALLS))
        url_a = launch_simulator(cluster, "sim-a.log", ["ACME", "BETA"], *rate)
        url_b = launch_simulator(cluster, "sim-b.log", ["GAMMA"], *rate)
        found = hosted(url_a, [("acme", "ACME"), ("beta", "BETA")])
        found += hosted(url_b, [("gamma", "GAMMA")])
        write_accounts_file(path, found)
        settings = make_settings(
            database_url=database_url, redis_prefix=prefix, accounts_file=str(path)
        )
        yield World({a.name: a for a in found}, cluster, Leads(settings), database_url, prefix)
    finally:
        cluster.close()


def test_a_stalled_account_delays_no_other_and_kills_lose_and_double_nothing(
    tmp_path: Path, database_url: str, prefix: str
) -> None:
    # Given acme, beta (simulator A) and gamma (simulator B), beta's Appends stalling 40 s, one
    # batch queued for each of beta's two targets, beat and two workers; When beta's first call
    # holds one worker, Then rounds of acme and gamma records land within ON_TIME_S; When both
    # workers are killed -9 mid-run and restarted, and acme and gamma get a backlog, Then every
    # record is in its campaign exactly once, every batch appended (the one killed mid-call by
    # reconciliation), no rolling window ever held more than MAX_CALLS calls of one client.
    began = time.monotonic()
    with world(tmp_path, database_url, prefix) as w:
        w.cluster.start("beat.log", ["beat"])
        w.start_worker("worker-1.log")
        w.start_worker("worker-2.log")
        w.sims_up()
        beta = w.accounts["beta"]
        beta.stall_appends(STALL_S)
        w.leads.queue(beta, BATCH)
        w.leads.queue(beta, BATCH, target=f"campaign:{beta.campaign}")
        stalled, batch, start = stalled_worker(w)
        worst = assert_on_time(w, on_time_rounds(w, start))
        killed_at = kill_both(w, stalled)
        assert killed_at < start + STALL_S, "the kill came after beta's call had ended"
        press_rate_limits(w)
        left = SETTLE_S - (time.time() - killed_at)
        ids = w.leads.ids()
        wait_for(
            lambda: all_final(database_url, ids, {"appended"}), left, "all appended", w.cluster
        )
        assert_exactly_once(w)
        assert_reconciled(w, batch)
        busiest = assert_rate_windows(w)
        assert_stall_lasted(beta)
    print(
        f"\nfigures: wall {time.monotonic() - began:.0f} s, worst lateness of acme/gamma "
        f"{worst:.2f} s (bound {ON_TIME_S:g} s), most Append calls in one {WINDOW_S:g} s "
        f"window {busiest} (limit {MAX_CALLS})"
    )


def stalled_worker(w: World) -> tuple[str, int, float]:
    """(log name of the worker inside beta's first call, that batch's id, the call's start)."""
    query = "SELECT id FROM batches WHERE livevox_account = 'beta' AND status = 'sending'"
    wait_for(lambda: bool(w.sql(query)), 30, "beta's first batch sending", w.cluster)
    ((batch,),) = w.sql(query)
    sending = re.compile(rf"batch {batch} ready -> sending\b")
    wait_for(
        lambda: any(sending.search(w.cluster.log(n)) for n in w.workers), 10, "its log", w.cluster
    )
    (name,) = [n for n in w.workers if sending.search(w.cluster.log(n))]
    wait_until(lambda: bool(w.accounts["beta"].append_calls()), 10, "beta's call at LiveVox")
    return name, int(batch), float(w.accounts["beta"].append_calls()[0]["at"])


def on_time_rounds(w: World, start: float) -> list[Sent]:
    """ROUNDS rounds, ROUND_S apart from ``start``: one batch for each healthy account."""
    sent = []
    for r in range(ROUNDS):
        time.sleep(max(start + r * ROUND_S - time.time(), 0.0))
        sent += [w.leads.queue(w.accounts[name], BATCH) for name in HEALTHY]
    return sent


def assert_on_time(w: World, sent: list[Sent]) -> float:
    """Every record of ``sent`` landed within ON_TIME_S of being queued; the worst lateness."""
    accounts = [w.accounts[name] for name in HEALTHY]

    def late() -> dict[str, float | None]:
        return lateness(sent, [r for a in accounts for r in a.records()])

    deadline = sent[-1].at + ON_TIME_S + INTERVAL_S
    while None in late().values() and time.time() < deadline:
        time.sleep(0.2)
    found = late()
    over = {p: t for p, t in found.items() if t is None or t > ON_TIME_S}
    assert not over, (
        f"{len(over)} of {len(found)} records of acme/gamma not at LiveVox within {ON_TIME_S} s "
        f"of being queued while beta stalls (seconds, None: not yet): {list(over.items())[:6]}"
        + w.cluster.tails()
    )
    return max(t for t in found.values() if t is not None)


def kill_both(w: World, stalled: str) -> float:
    """One more round; kill -9 the free worker as it drains it, then the one inside beta's
    call, restarting each at once; when the second died."""
    for name in HEALTHY:
        w.leads.queue(w.accounts[name], 2 * BATCH)
    time.sleep(INTERVAL_S / 2)
    (free,) = [n for n in w.workers if n != stalled]
    for name in (free, stalled):
        kill9(w.workers.pop(name))
        w.start_worker(name.replace(".log", "-again.log"))
    return time.time()


def press_rate_limits(w: World) -> None:
    """Three windows' worth of calls for acme and gamma at once, on their campaign pinned (a
    target of its own: a batch the kill left in doubt blocks only its own target)."""
    for name in HEALTHY:
        account = w.accounts[name]
        w.leads.queue(account, 3 * MAX_CALLS * BATCH, target=f"campaign:{account.campaign}")


def assert_exactly_once(w: World) -> None:
    """LiveVox's books and the audit: each record once in its account's campaign; every record
    appended in PostgreSQL, one row each; every batch appended; nothing left in Redis."""
    problems = [
        p for a in w.accounts.values() for p in landing_problems(a, w.leads.phones_of(a.name))
    ]
    assert problems == [], problems
    rows, doubled, batches, resent = load_rows(w.database_url)
    ids = w.leads.ids()
    assert doubled == [] and set(rows) == set(ids), (doubled, len(rows), len(ids))
    statuses = Counter(rows[i].status for i in ids)
    assert statuses == {"appended": len(ids)}, statuses
    assert set(batches) == {"appended"} and resent == set(), (batches, resent)
    for name in w.accounts:
        assert still_queued(REDIS_URL, w.prefix, name) == [], name


def assert_reconciled(w: World, batch: int) -> None:
    """Beta's batch killed mid-call: reaped to in_doubt (no sooner than its call deadline after
    it was sent), then appended because the transaction list showed every record."""
    query = (
        "SELECT to_status, reason FROM events WHERE batch_id = :b AND record_id IS NULL ORDER BY id"
    )
    path = w.sql(query, b=batch)
    assert [s for s, _ in path] == ["ready", "sending", "in_doubt", "appended"], path
    assert path[-1][1].startswith(f"reconciled: all {BATCH} records found"), path[-1]
    waited = w.sql(
        "SELECT extract(epoch FROM max(at) FILTER (WHERE to_status = 'in_doubt')"
        " - max(at) FILTER (WHERE to_status = 'sending')) FROM events WHERE batch_id = :b",
        b=batch,
    )
    assert float(waited[0][0]) >= DEADLINE_S, waited


def assert_rate_windows(w: World) -> dict[str, int]:
    """Per client, from its simulator's own call log: no Append refused (every one 204), never
    more than MAX_CALLS begun within one WINDOW_S; acme and gamma reached MAX_CALLS (their
    backlog pressed the limit, so the check could have failed). The most per client."""
    busiest = {name: busiest_window(a, WINDOW_S) for name, a in w.accounts.items()}
    for name, account in w.accounts.items():
        statuses = Counter(c["status"] for c in account.append_calls())
        assert set(statuses) == {204}, (name, statuses)
    assert all(n <= MAX_CALLS for n in busiest.values()), busiest
    assert [busiest[name] for name in HEALTHY] == [MAX_CALLS] * len(HEALTHY), busiest
    return busiest


def assert_stall_lasted(beta: LiveAccount) -> None:
    """Each of beta's two Append calls delivered its batch STALL_S or more after it began (the
    simulator stamps records when it processes them, after the stall)."""
    calls = sorted(c["at"] for c in beta.append_calls())
    landed = sorted(Counter(r["receivedAt"] for r in beta.records()).items())
    assert len(calls) == 2 and [n for _, n in landed] == [BATCH, BATCH], (calls, landed)
    assert all(at - began >= STALL_S for began, (at, _) in zip(calls, landed, strict=True))


def test_a_pinned_worker_drains_only_its_accounts(
    tmp_path: Path, database_url: str, prefix: str
) -> None:
    # Given acme and beta, two batches queued for each, beat ticking every account, When the only
    # worker is `appendq worker --no-beat --accounts acme`, Then acme's records land while
    # beta's stay queued, their ticks waiting in beta's Celery queue and no Append of BETA at
    # LiveVox; When a worker pinned to beta joins, Then beta's land too, each record once.
    with world(tmp_path, database_url, prefix) as w:
        w.cluster.start("beat.log", ["beat"])
        w.start_worker("acme-worker.log", "--accounts", "acme")
        w.sims_up()
        acme, beta = w.accounts["acme"], w.accounts["beta"]
        w.leads.queue(acme, 2 * BATCH)
        beta_ids = list(w.leads.queue(beta, 2 * BATCH).ids)
        acme_landed = lambda: landing_problems(acme, w.leads.phones_of("acme")) == []  # noqa: E731
        wait_for(acme_landed, 30, "acme's records at LiveVox", w.cluster)
        wait_for(lambda: ticks_waiting(w.leads.settings, "beta") >= 3, 10, "beta ticks", w.cluster)
        assert still_queued(REDIS_URL, prefix, "beta") == beta_ids
        assert beta.append_calls() == []
        w.start_worker("beta-worker.log", "--accounts", "beta")
        beta_landed = lambda: landing_problems(beta, w.leads.phones_of("beta")) == []  # noqa: E731
        wait_for(beta_landed, 30, "beta's records at LiveVox", w.cluster)
        assert landing_problems(acme, w.leads.phones_of("acme")) == []
        assert "(account beta)" not in w.cluster.log("acme-worker.log")
        assert "(account acme)" not in w.cluster.log("beta-worker.log")
