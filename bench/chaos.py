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
import os
import random
import shutil
import time
from collections import Counter
from typing import Any

from sqlalchemy import text

from appendq.crypto import new_key
from appendq.faults import POINTS
from appendq.simulator.dialect import DIALECTS, Dialect
from bench.chaos_books import Books, Lead, add_up, print_dialects, print_figures
from bench.chaos_plan import (
    FENCE_KINDS,
    MAX_CALLS,
    PINNED,
    TARGET,
    WINDOW_S,
    FencePlan,
    LongStall,
    OperatorRace,
    Plan,
    faults,
    settings_from_env,
    worker_env,
)
from bench.chaos_procs import Scraper, Worker, Workers
from bench.chaos_races import Races
from bench.chaos_world import Settling, World, world
from producer.api import connect

FAULT_GRACE_S = 5.0


def draw_dialect(seed: int, number: int, only: str | None = None) -> str:
    """The trial's dialect preset: ``only``, or drawn from its own seeded generator."""
    if only is not None:
        return only
    return random.Random(f"{seed}:{number}:dialect").choice(sorted(DIALECTS))


def phone_of(serial: int) -> str:
    return f"212{3000000 + serial:07d}"


class Trial(Races, Settling):
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


def parse_args() -> argparse.Namespace:
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
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # One payload key for every process of the run: each worker has a state dir of its own, and
    # a development key per state dir would leave a batch persisted by one unreadable by another.
    os.environ.setdefault("APPENDQ_DATA_KEYS", new_key())
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
