"""``make chaos``: randomised fault-injection trials with real processes, then the books.

Each trial gets a fresh Redis prefix and truncated tables (one scratch database for the run), a
reset simulator with a short rate window (MAX_CALLS per WINDOW_S, client settings to match), and
a random plan (``bench.chaos_plan``): records produced in a few submissions through the Producer
API, one or two ``appendq worker`` processes (worker + beat), some started with
``APPENDQ_CRASH_AT`` at a random point, kill -9 at random times, simulator faults (500,
500+apply, drop, drop+apply, stall past the read timeout, 429, 400, session expiry), sometimes a
kill -9 and restart of the dedicated Redis (AOF, fsync always). Then it settles: faults cleared,
one clean worker until nothing is open (bounded), and the books are counted
(``bench.chaos_books``).

The faults of issue 8 ("Fence every drain"), each drawn per trial with its own probability from
a generator of its own (so a seed's first-generation plan is unchanged) and counted:

- **freeze**: a worker's process group is SIGSTOPped for longer than the drain lease's TTL
  (2 x call deadline + interval, from the trial's settings) with a standby worker running
  (started if needed), then SIGCONTed: it wakes with stale knowledge. It strikes while a drain
  holds the lock, while an Append is in flight, or at an exact step: a worker started (once a
  batch was appended) with the drain's crash points patched stops itself right after committing
  ``sending`` or right after its Append returned;
- **long calls**: a read timeout (1.5 s) longer than the rate window (1 s) and Append stalls
  longer than the window, processed first or landing late; a scraper reads the rate budget every
  50 ms and ``appendq status`` every 250 ms in every trial;
- **operator races**: the operator previews the held, in_doubt and failed batches, waits 0-0.5 s
  while ticks run, then confirms with the previewed states (``operator.retry(only=...)``);
- **two targets**: leads to ``campaign:5001`` reusing the phone1 of leads to ``service:1001``
  (which resolves to campaign 5001), none with an account.

Each trial also plays a LiveVox dialect (appendq.simulator.dialect), drawn from the presets with
its own seeded generator; ``--dialect NAME`` plays one preset in every trial. The "429" fault
answers the dialect's rate-limit status; a dialect with only unversioned paths runs the workers
with APPENDQ_LIVEVOX_API_VERSION="". The summary adds a table per dialect.

    python -m bench.chaos [--trials 200] [--seed 1] [--only TRIAL] [--dialect NAME]

A trial with an anomaly (lost, sent twice without a warned re-send, rate window overrun, a
rate-limit answer from LiveVox, out of FIFO order, unsettled) prints its number and keeps its
logs; ``--seed S --only N`` replays its plan.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from appendq.db.engine import psycopg_url
from appendq.db.models import BatchStatus
from appendq.faults import POINTS
from appendq.keys import Keys
from appendq.operator import BatchSummary, RetryFilter, preview_retry, retry
from appendq.simulator.dialect import DIALECTS, Dialect
from bench.chaos_books import Books, Lead, Row, Seen, add_up, count, print_dialects, print_figures
from bench.chaos_plan import (
    CAMPAIGN,
    FENCE_KINDS,
    MAX_CALLS,
    PINNED,
    STOP_POINTS,
    TARGET,
    WINDOW_S,
    FencePlan,
    LongStall,
    OperatorRace,
    Plan,
    faults,
    lease_ttl_s,
    settings_from_env,
    worker_env,
)
from bench.chaos_procs import Scraper, Worker, Workers
from bench.common import scratch_database, scratch_simulator
from producer.api import connect
from tests.procs import RedisServer

OPEN = ["ready", "retry_wait", "sending", "in_doubt"]
RETRYABLE = (BatchStatus.HELD, BatchStatus.IN_DOUBT, BatchStatus.FAILED)
SETTLE_S = 40.0
FAULT_GRACE_S = 5.0
#: How long an armed freeze waits for a drain to hold the lock before freezing anyway.
FREEZE_WAIT_S = 2.0
#: How long a worker armed to stop itself at a drain step may take to reach it.
POINT_WAIT_S = 8.0


@dataclass
class World:
    """What the whole run shares: the database, the simulator and the dedicated Redis."""

    database_url: str
    engine: Engine
    sim: httpx.Client
    sim_url: str
    redis: RedisServer
    run_dir: Path


def draw_dialect(seed: int, number: int, only: str | None = None) -> str:
    """The trial's dialect preset: ``only``, or drawn from its own seeded generator."""
    if only is not None:
        return only
    return random.Random(f"{seed}:{number}:dialect").choice(sorted(DIALECTS))


def phone_of(serial: int) -> str:
    return f"212{3000000 + serial:07d}"


class Trial:
    def __init__(
        self,
        world: World,
        number: int,
        seed: int,
        dialect: str | None = None,
        force: frozenset[str] = frozenset(),
        keep: bool = False,
    ) -> None:
        self.world = world
        self.number = number
        self.rng = random.Random(f"{seed}:{number}")
        self.plan = Plan.draw(self.rng)
        self.fence_rng = random.Random(f"{seed}:{number}:fence")
        self.fence = FencePlan.draw(self.fence_rng, self.plan, force)
        self.keep = keep
        self.dialect_name = draw_dialect(seed, number, dialect)
        self.dialect: Dialect = DIALECTS[self.dialect_name]
        self.prefix = f"chaos-{seed}-{number}-{os.getpid()}"
        self.logs = world.run_dir / f"trial-{number}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.settings = settings_from_env(self.env())
        self.faults = faults(self.fence.read_timeout_s)
        self.accepted: list[Lead] = []
        #: record id -> the statuses its batch was re-sent from after a warning, one per re-send
        self.resent: dict[str, list[str]] = {}
        self.books = Books()
        self.serial = 0
        self.events: list[tuple[float, int, str, Any]] = []
        self.t0 = 0.0
        self.operator_due: list[OperatorRace] = []
        #: an armed freeze: (armed at, s past the TTL, mid-call, the standby started for it)
        self.freeze_armed: tuple[float, float, bool, Worker | None] | None = None
        #: a freeze at a drain step: (armed at, s past the TTL, the step, the worker once started)
        self.point_freeze: tuple[float, float, str, Worker | None] | None = None

    def env(self) -> dict[str, str]:
        w = self.world
        return {
            "APPENDQ_DATABASE_URL": w.database_url,
            "APPENDQ_REDIS_URL": w.redis.url,
            "APPENDQ_REDIS_PREFIX": self.prefix,
            "APPENDQ_LIVEVOX_BASE_URL": w.sim_url,
            **worker_env(self.fence.read_timeout_s, self.plan.batch_max),
            **({"APPENDQ_LIVEVOX_API_VERSION": ""} if self.dialect.unversioned_only else {}),
        }

    def summary(self) -> str:
        return "; ".join(p for p in (self.plan.summary(), self.fence.summary()) if p)

    def run(self) -> Books:
        with self.world.engine.begin() as conn:
            conn.execute(text("TRUNCATE batches, records, events, target_states CASCADE"))
        self.world.sim.post(
            "/_admin/reset",
            json={
                "rate_max_calls": MAX_CALLS,
                "rate_window_s": WINDOW_S,
                "dialect": {"preset": self.dialect_name},
            },
        ).raise_for_status()
        workers = Workers(self.env(), self.logs)
        scraper = Scraper(self.settings)
        try:
            with scraper:
                self._chaos(workers)
                settled = self._settle(workers)
        finally:
            workers.stop_all()
        self._count(settled)
        self._count_processes(workers, scraper)
        self._forget_keys()
        if not self.books.anomalies and not self.keep:
            shutil.rmtree(self.logs, ignore_errors=True)
        return self.books

    def _count_processes(self, workers: Workers, scraper: Scraper) -> None:
        f = self.books.figures
        f["worker kill -9"] += workers.killed
        f["worker crashes at APPENDQ_CRASH_AT"] += workers.crashed
        f["worker exits without a crash point"] += workers.exited
        f.update(workers.lease_lines())
        f.update(scraper.counts)
        f["freeze: trials"] += self.fence.freeze is not None
        f["long calls: trials (read timeout 1.5 s)"] += self.fence.long_calls
        f["operator: trials"] += bool(self.fence.operator)
        f["two targets: trials"] += bool(self.fence.pinned)
        if workers.exited:
            self.books.anomalies.append(f"{workers.exited} worker(s) exited on their own")

    # -- the chaos phase ------------------------------------------------------------------------

    def _later(self, at: float, kind: str, arg: Any = None) -> None:
        """Schedule an event ``at`` s after the trial's start (events may schedule others)."""
        self.events.append((at, len(self.events), kind, arg))
        self.events.sort(key=lambda e: (e[0], e[1]))

    def _plan_events(self) -> None:
        p, fence = self.plan, self.fence
        for t, n in p.submissions:
            self._later(t, "submit", n)
        for t, crash in p.workers:
            self._later(t, "worker", crash)
        for t in p.kills:
            self._later(t, "kill")
        for t, name, times in p.faults:
            self._later(t, "fault", (name, times))
        if p.redis_restart:
            self._later(p.redis_restart[0], "redis", p.redis_restart[1])
        if fence.freeze:
            self._later(fence.freeze[0], "freeze", fence.freeze[1:])
        for stall in fence.stalls:
            self._later(stall.at, "stall", stall)
        for race in fence.operator:
            self._later(race.at, "operator", race)
        for t, serials in fence.pinned:
            self._later(t, "pinned", serials)

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _chaos(self, workers: Workers) -> None:
        """Play the plan's events; past its duration, go on (up to FAULT_GRACE_S) until the
        simulator has used every fault queued and every scheduled event (a thaw, an operator's
        confirmation) has happened."""
        self.t0 = time.monotonic()
        self._plan_events()
        while self.events or self._freeze_pending() or not self._chaos_over(self._now()):
            while self.events and self.events[0][0] <= self._now():
                _, _, kind, arg = self.events.pop(0)
                self._do(kind, arg, workers)
            if workers.reap() or not workers.awake:
                workers.start(self.rng.choice([None, None, None, *POINTS]))
            self._try_freeze(workers)
            self._operator_preview()
            time.sleep(0.05)
        self.operator_due = []

    def _freeze_pending(self) -> bool:
        return self.freeze_armed is not None or self.point_freeze is not None

    def _chaos_over(self, elapsed: float) -> bool:
        if elapsed < self.plan.duration:
            return False
        if elapsed > self.plan.duration + FAULT_GRACE_S:
            return True
        return not self.world.sim.get("/_admin/faults").json()["faults"]

    def _do(self, kind: str, arg: Any, workers: Workers) -> None:
        f = self.books.figures
        if kind == "submit":
            self._submit(arg)
        elif kind == "pinned":
            self._submit_pinned(arg)
        elif kind == "worker":
            workers.start(arg)
        elif kind == "kill" and workers.awake:
            workers.kill9(self.rng.choice(workers.awake))
        elif kind == "fault":
            self._fault(*arg)
            f["simulator faults injected"] += 1
        elif kind == "stall":
            self._long_stall(arg)
        elif kind == "operator":  # from now on, as soon as a batch is retryable
            self.operator_due.append(arg)
        elif kind == "confirm":
            self._operator_confirm(*arg)
        elif kind == "freeze":
            self._arm_freeze(arg, workers)
        elif kind == "thaw":
            workers.thaw(arg)
        elif kind == "redis":
            self.world.redis.kill9()
            time.sleep(arg)
            self.world.redis.start()
            f["Redis kill -9 + restart"] += 1

    def _submit(self, n: int) -> None:
        """``n`` leads to TARGET: unique phone1 and firstName (the books' tag); an account
        unless this trial sends phones through two targets (race 4 needs none)."""
        leads = []
        for _ in range(n):
            self.serial += 1
            lead = {"phone1": phone_of(self.serial), "firstName": f"S{self.serial}"}
            if not self.fence.pinned:
                lead["account"] = f"C{self.serial}"
            leads.append(lead)
        self._enqueue(TARGET, leads)

    def _submit_pinned(self, serials: list[int]) -> None:
        """Leads to PINNED with the phone1 of TARGET leads (sent already or still to come)."""
        self._enqueue(PINNED, [{"phone1": phone_of(s), "firstName": f"P{s}"} for s in serials])

    def _enqueue(self, target: str, leads: list[dict[str, str]]) -> None:
        with connect(self.settings) as producer:
            receipt = producer.enqueue(target, leads)
        assert not receipt.errors and not receipt.duplicates, receipt.to_dict()
        self.accepted += [
            Lead(rid, target, lead["firstName"], lead["phone1"])
            for rid, lead in zip(receipt.record_ids, leads, strict=True)
        ]

    def _fault(self, name: str, times: int) -> None:
        if name == "session_expiry":
            self.world.sim.post("/_admin/sessions/expire").raise_for_status()
            return
        fault = dict(self.faults[name])
        if name == "429":  # the rate-limit answer, as this dialect gives it
            fault["status"] = self.dialect.rate_limit_status
        self._push_fault(fault, times)

    def _push_fault(self, fault: dict[str, Any], times: int) -> None:
        body = {"kind": "append", "fault": fault, "times": times}
        self.world.sim.post("/_admin/faults", json=body).raise_for_status()

    def _long_stall(self, stall: LongStall) -> None:
        """An Append longer than the rate window but inside the read timeout: processed first
        (counted by LiveVox at its start) or after the stall (counted at its end)."""
        self._push_fault({"stall_s": stall.stall_s, "apply": stall.apply}, stall.times)
        how = "processed, then stalled" if stall.apply else "stalled, then landing late"
        self.books.figures[f"long calls: stalls injected ({how})"] += 1

    # -- freeze: the drain lease expires under a frozen worker ------------------------------------

    def _arm_freeze(self, freeze: tuple[float, str], workers: Workers) -> None:
        """From now on, freeze a worker as soon as a drain holds the lock ("lock"), as soon as
        an Append stalled for it is in flight ("mid-call"), or start a worker that stops itself
        at that step of the drain (a STOP_POINT); a standby drains meanwhile (started if
        needed: it boots while the victim still holds the lock)."""
        extra_s, mode = freeze
        if mode in STOP_POINTS:  # the victim starts once some batch was appended (below)
            self.point_freeze = (self._now(), extra_s, mode, None)
            return
        if mode == "mid-call":
            stall = round(self.fence.read_timeout_s * 0.8, 2)
            self._push_fault({"stall_s": stall, "apply": True}, 1)
        self.freeze_armed = (self._now(), extra_s, mode == "mid-call", self._standby(workers))

    def _standby(self, workers: Workers, besides: Worker | None = None) -> Worker | None:
        """A worker started to drain while the victim is frozen, unless one is awake already."""
        if len([w for w in workers.awake if w is not besides]) >= (1 if besides else 2):
            return None
        self.books.figures["freeze: standby workers started"] += 1
        return workers.start()

    def _try_freeze(self, workers: Workers) -> None:
        self._watch_point_freeze(workers)
        if self.freeze_armed is None:
            return
        armed_at, extra_s, mid_call, standby = self.freeze_armed
        ready = self._stalled_call() if mid_call else self._lock_held()
        if not ready and self._now() - armed_at < FREEZE_WAIT_S * (2 if mid_call else 1):
            return
        if len(workers.awake) < 2:  # the victim or the standby died meanwhile: arm again
            self.freeze_armed = (self._now(), extra_s, False, self._standby(workers))
            return
        self.freeze_armed = None
        victim = self.fence_rng.choice([w for w in workers.awake if w is not standby])
        workers.freeze(victim)
        f = self.books.figures
        f["freeze: frozen while a drain held the lock"] += self._lock_held()
        f["freeze: frozen with an Append in flight"] += mid_call and ready
        self._frozen(victim, extra_s)

    def _frozen(self, victim: Worker, extra_s: float) -> None:
        self.books.figures["freeze: workers frozen past the lease TTL"] += 1
        self._later(self._now() + lease_ttl_s(self.settings) + extra_s, "thaw", victim)

    def _watch_point_freeze(self, workers: Workers) -> None:
        """A freeze at a drain step. Once a batch was appended (so that reconciliation can
        conclude "nothing landed" while the victim is frozen), start the victim, which stops
        itself at the step, and a standby; once it stopped, thaw it later. If it died or did not
        reach its step within POINT_WAIT_S, give up."""
        if self.point_freeze is None:
            return
        armed_at, extra_s, mode, victim = self.point_freeze
        f = self.books.figures
        if victim is None:
            if self._appended_once():
                victim = workers.start(stop_at=mode)
                self._standby(workers, besides=victim)
                self.point_freeze = (self._now(), extra_s, mode, victim)
        elif victim.stopped():
            self.point_freeze = None
            victim.frozen = True
            f[f"freeze: stopped itself {mode}"] += 1
            self._frozen(victim, extra_s)
            return
        if self.point_freeze and (
            (victim is not None and victim not in workers.running)
            or self._now() - armed_at > POINT_WAIT_S
        ):
            self.point_freeze = None
            f["freeze: never reached its step"] += 1

    def _appended_once(self) -> bool:
        with self.world.engine.connect() as conn:
            return bool(
                conn.scalar(text("SELECT 1 FROM batches WHERE status = 'appended' LIMIT 1"))
            )

    def _stalled_call(self) -> bool:
        """An Append call with a stall fault is in flight (not answered yet)."""
        calls = self.world.sim.get("/_admin/calls").json()
        return any(
            c["kind"] == "append" and c["status"] is None and (c.get("fault") or {}).get("stall_s")
            for c in calls[-50:]
        )

    def _lock_held(self) -> bool:
        client = self._redis()
        try:
            return bool(client.exists(Keys(self.prefix).drain_lock))
        except redis.RedisError:
            return False
        finally:
            client.close()

    # -- operator: preview, a wait while ticks run, confirmation ----------------------------------

    def _operator_preview(self) -> None:
        """The next due operator previews the retryable batches; if any, it confirms after its
        wait (an event, so ticks run meanwhile)."""
        if not self.operator_due:
            return
        with Session(self.world.engine) as session:
            shown = preview_retry(session, RetryFilter(statuses=RETRYABLE))
        if not shown:
            return
        race = self.operator_due.pop(0)
        f = self.books.figures
        f["operator: previews"] += 1
        f["operator: batches previewed"] += len(shown)
        self._later(self._now() + race.wait_s, "confirm", (shown,))

    def _operator_confirm(self, shown: list[BatchSummary]) -> None:
        """Retry exactly what the preview showed, as it showed it. The records of a moved batch
        that the preview warned about (may send twice) are the only allowed duplicates."""
        f = self.books.figures
        with Session(self.world.engine) as session, session.begin():
            result = retry(
                session,
                RetryFilter(statuses=RETRYABLE),
                reason="chaos: operator confirms the previewed batches",
                actor="operator:chaos",
                only={b.id: b.seen() for b in shown},
            )
            warned = {b.id: b.status for b in result.moved if b.may_duplicate}
            rows = session.execute(
                text(
                    "SELECT id::text, batch_id FROM records"
                    " WHERE batch_id = ANY(:b) AND status IS NULL"
                ),
                {"b": list(warned)},
            ).all()
        for rid, batch_id in rows:
            self.resent.setdefault(rid, []).append(warned[batch_id])
        f["operator: batches moved"] += len(result.moved)
        for moved in result.moved:
            f[f"operator: moved from {moved.status}"] += 1
        f["operator: batches left alone (changed since the preview)"] += len(result.left)

    # -- settling and counting ----------------------------------------------------------------

    def _settle(self, workers: Workers) -> bool:
        """Clear the faults, leave one clean worker, and wait until nothing is open."""
        self.world.sim.delete("/_admin/faults").raise_for_status()
        for worker in list(workers.running):
            workers.thaw(worker)  # none should be left frozen; be sure
            if worker.crash_at:
                workers.kill9(worker)
                workers.killed -= 1  # not chaos: the settle phase wants no crash point
        workers.reap()
        if not workers.running:
            workers.start()
        deadline = time.monotonic() + SETTLE_S
        quiet = 0
        while time.monotonic() < deadline:
            if workers.reap() or not workers.running:
                workers.start()
            quiet = quiet + 1 if self._nothing_open() else 0
            if quiet >= 3:
                return True
            time.sleep(0.2)
        return False

    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.world.redis.url, socket_timeout=5)

    def _queued_ids(self) -> set[str]:
        """Record ids still queued or claimed, of every target of the trial."""
        keys = Keys(self.prefix)
        client = self._redis()
        try:
            items = []
            for target in (TARGET, PINNED):
                items += client.lrange(keys.queue(target), 0, -1)
                items += client.lrange(keys.inflight(target), 0, -1)
        finally:
            client.close()
        return {json.loads(item)["id"] for item in items}

    def _nothing_open(self) -> bool:
        with self.world.engine.connect() as conn:
            open_batches = conn.scalar(
                text("SELECT count(*) FROM batches WHERE status = ANY(:s)"), {"s": OPEN}
            )
        return not open_batches and not self._queued_ids()

    def _rows(self) -> dict[str, Row]:
        with self.world.engine.connect() as conn:
            rows = {
                rid: Row(status, bool(hold))
                for rid, status, hold in conn.execute(
                    text(
                        "SELECT r.id::text, coalesce(r.status::text, b.status::text),"
                        " r.status IS NULL AND b.status = 'held' AND b.error_kind = 'operator'"
                        " FROM records r JOIN batches b ON b.id = r.batch_id"
                    )
                )
            }
            for to, n in conn.execute(
                text(
                    "SELECT to_status, count(*) FROM events"
                    " WHERE from_status = 'sending' GROUP BY to_status"
                )
            ):
                self.books.figures[f"batch sending -> {to}"] += n
        return rows

    def _count(self, settled: bool) -> None:
        sim = self.world.sim
        seen = Seen(
            accepted=self.accepted,
            rows=self._rows(),
            queued=self._queued_ids(),
            at_sim=sim.get(f"/_admin/campaigns/{CAMPAIGN}/records").json(),
            calls=sim.get("/_admin/calls").json(),
            resent=self.resent,
        )
        count(
            self.books,
            seen,
            window_s=WINDOW_S,
            max_calls=MAX_CALLS,
            rate_status=self.dialect.rate_limit_status,
        )
        if not settled:
            self.books.anomalies.append("did not settle")

    def _forget_keys(self) -> None:
        client = self._redis()
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()


@contextmanager
def world() -> Iterator[World]:
    run_dir = Path(tempfile.mkdtemp(prefix="appendq-chaos-"))
    server = RedisServer(run_dir / "redis")
    server.start()
    try:
        with (
            scratch_database() as database_url,
            scratch_simulator("--rate-window-s", str(WINDOW_S)) as sim_url,
            httpx.Client(base_url=sim_url, timeout=30) as sim,
        ):
            engine = create_engine(psycopg_url(database_url), poolclass=NullPool)
            try:
                yield World(database_url, engine, sim, sim_url, server, run_dir)
            finally:
                engine.dispose()
    finally:
        server.kill9()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", type=int, help="run this one trial of the seed (a replay)")
    parser.add_argument(
        "--dialect",
        choices=sorted(DIALECTS),
        help="play this LiveVox dialect in every trial [default: one drawn per trial]",
    )
    parser.add_argument(
        "--force",
        action="append",
        choices=FENCE_KINDS,
        default=[],
        help="play this fault of issue 8 in every trial (repeatable) [default: drawn per trial]",
    )
    parser.add_argument("--keep", action="store_true", help="keep every trial's logs")
    args = parser.parse_args()
    numbers = [args.only] if args.only is not None else list(range(args.trials))
    total = Counter[str]()
    by_dialect: dict[str, Counter[str]] = {}
    flagged: list[str] = []
    started = time.monotonic()
    with world() as w:
        print(f"run directory {w.run_dir}; seed {args.seed}", flush=True)
        for number in numbers:
            t0 = time.monotonic()
            trial = Trial(w, number, args.seed, args.dialect, frozenset(args.force), args.keep)
            books = trial.run()
            add_up(total, by_dialect, trial.dialect_name, books)
            line = f"trial {number:>3}: {books.figures['records accepted']:>5} records, "
            line += f"{time.monotonic() - t0:4.1f} s  [{trial.dialect_name}; {trial.summary()}]"
            if books.anomalies:
                line += f"  ANOMALY ({w.run_dir / f'trial-{number}'}): " + "; ".join(
                    books.anomalies[:5]
                )
                flagged.append(f"--seed {args.seed} --only {number}")
            print(line, flush=True)
    print_figures(total, args.seed, time.monotonic() - started)
    print_dialects(by_dialect)
    if flagged:
        print("replay the flagged trials with: " + ", ".join(flagged))
    elif not args.keep:
        shutil.rmtree(w.run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
