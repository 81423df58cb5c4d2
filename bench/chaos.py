"""``make chaos``: randomised fault-injection trials with real processes, then the books.

Each trial gets a fresh Redis prefix and truncated tables (one scratch database for the run), a
reset simulator with a short rate window (MAX_CALLS per WINDOW_S, client settings to match), and
a random plan: records produced in a few submissions through the Producer API, one or two
``appendq worker`` processes (worker + beat), some started with ``APPENDQ_CRASH_AT`` at a random
point, kill -9 at random times, simulator faults (500, 500+apply, drop, drop+apply, stall past the
read timeout, 429, 400, session expiry), sometimes a kill -9 and restart of the dedicated Redis
(AOF, fsync always), sometimes an operator re-send of the in_doubt batches. Then it settles:
faults cleared, one clean worker until nothing is open (bounded), and the books are counted.

    python -m bench.chaos [--trials 200] [--seed 1] [--only TRIAL]

A trial with an anomaly (lost, sent twice without a re-send, rate window overrun, out of FIFO
order, unsettled) prints its number and keeps its logs; ``--seed S --only N`` replays its plan.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
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
from appendq.operator import RetryFilter, retry_batches
from appendq.settings import Settings
from bench.common import scratch_database, scratch_simulator
from producer.api import connect
from tests.procs import APPENDQ, ROOT, RedisServer, env_for

TARGET = "service:1001"
CAMPAIGN = 5001
MAX_CALLS = 5
WINDOW_S = 1.0
READ_TIMEOUT_S = 0.5
FAULTS: dict[str, dict[str, Any]] = {
    "500": {"status": 500},
    "500+apply": {"status": 500, "apply": True},
    "drop": {"drop": True},
    "drop+apply": {"drop": True, "apply": True},
    "stall": {"stall_s": READ_TIMEOUT_S + 0.3, "apply": True},
    "429": {"status": 429},
    "400": {"status": 400},
}
OPEN = ["ready", "retry_wait", "sending", "in_doubt"]
SETTLE_S = 40.0
FAULT_GRACE_S = 5.0
FIGURES = (
    "trials",
    "records accepted",
    "appended",
    "held",
    "rejected",
    "in_doubt",
    "failed",
    "unsettled",
    "lost",
    "  lost: nowhere (not in Redis, not in PostgreSQL)",
    "  lost: appended in the audit, never at LiveVox",
    "sent twice",
    "sent twice via re-sent in_doubt",
    "at LiveVox but audit says not appended",
    "out of FIFO order (records)",
    "rate-window violations",
    "max appends in any window",
    "worker kill -9",
    "worker crashes at APPENDQ_CRASH_AT",
    "worker exits without a crash point",
    "Redis kill -9 + restart",
    "simulator faults injected",
    "operator re-sends of in_doubt batches",
    "batch sending -> appended",
    "batch sending -> in_doubt",
    "batch sending -> ready",
    "batch sending -> retry_wait",
    "batch sending -> held",
    "batch sending -> rejected",
)


@dataclass
class Plan:
    """Everything random about one trial, drawn up front from the trial's seed."""

    submissions: list[tuple[float, int]]  # (at s, records)
    batch_max: int
    workers: list[tuple[float, str | None]]  # (start at s, crash point)
    kills: list[float]
    faults: list[tuple[float, str, int]]  # (at s, fault name or session_expiry, times)
    redis_restart: tuple[float, float] | None  # (at s, down for s)
    operator: list[float]
    duration: float

    @classmethod
    def draw(cls, rng: random.Random) -> Plan:
        duration = rng.uniform(2.0, 3.5)

        def at() -> float:
            return round(rng.uniform(0, duration), 2)

        total = rng.randint(20, 3000)
        cuts = sorted(rng.sample(range(1, total), min(rng.randint(0, 3), total - 1)))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        submissions = sorted([(0.0, sizes[0])] + [(at(), n) for n in sizes[1:]])
        crash = [None, None, *POINTS]
        workers = [(0.0, rng.choice(crash))]
        if rng.random() < 0.25:  # two workers (and two beats) at once
            workers.append((at(), rng.choice(crash)))
        names = [*FAULTS, "session_expiry"]
        faults = [
            (at(), rng.choice(names), rng.choice([1, 1, 2])) for _ in range(rng.randint(0, 3))
        ]
        restart = (at(), rng.uniform(0.2, 1.0)) if rng.random() < 0.15 else None
        return cls(
            submissions=submissions,
            batch_max=max(rng.choice([100, 500, 2000, 10_000]), -(-total // 12)),
            workers=workers,
            kills=sorted(at() for _ in range(rng.choice([0, 0, 1, 1, 2]))),
            faults=sorted(faults),
            redis_restart=restart,
            operator=[round(rng.uniform(0, duration / 2), 2)] if rng.random() < 0.3 else [],
            duration=duration,
        )

    def summary(self) -> str:
        parts = [f"batch {self.batch_max}", f"{len(self.workers)} worker(s)"]
        parts += [f"crash@{c}" for _, c in self.workers if c]
        parts += [f"kill x{len(self.kills)}"] if self.kills else []
        parts += [f"{name} x{times}" for _, name, times in self.faults]
        parts += ["redis restart"] if self.redis_restart else []
        parts += ["operator"] if self.operator else []
        return ", ".join(parts)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    crash_at: str | None


class Workers:
    """``appendq worker`` processes, each in its own process group (the worker and its beat)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[Worker] = []
        self.started = 0
        self.crashed = 0
        self.exited = 0  # died without a crash point: a finding
        self.killed = 0

    def start(self, crash_at: str | None = None) -> None:
        self.started += 1
        env = {**self.env, "APPENDQ_STATE_DIR": str(self.logs / f"state-{self.started}")}
        if crash_at:
            env["APPENDQ_CRASH_AT"] = crash_at
        with (self.logs / f"worker-{self.started}.log").open("ab") as log:
            proc = subprocess.Popen(
                [*APPENDQ, "worker"],
                env=env_for(env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append(Worker(proc, crash_at))

    def kill9(self, worker: Worker) -> None:
        _killpg(worker.proc, signal.SIGKILL)
        self.running.remove(worker)
        self.killed += 1

    def reap(self) -> int:
        """Forget the workers that died at their crash point (and kill their beat); how many."""
        dead = [w for w in self.running if w.proc.poll() is not None]
        for worker in dead:
            _killpg(worker.proc, signal.SIGKILL)
            self.running.remove(worker)
            if worker.crash_at:
                self.crashed += 1
            else:
                self.exited += 1
        return len(dead)

    def stop_all(self) -> None:
        for worker in self.running:
            _killpg(worker.proc, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for worker in self.running:
            with suppress(subprocess.TimeoutExpired):
                worker.proc.wait(max(deadline - time.monotonic(), 0.1))
            _killpg(worker.proc, signal.SIGKILL)
        self.running = []


def _killpg(proc: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    if sig == signal.SIGKILL:
        proc.wait(10)


@dataclass
class World:
    """What the whole run shares: the database, the simulator and the dedicated Redis."""

    database_url: str
    engine: Engine
    sim: httpx.Client
    sim_url: str
    redis: RedisServer
    run_dir: Path


@dataclass
class Books:
    figures: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)


class Trial:
    def __init__(self, world: World, number: int, seed: int) -> None:
        self.world = world
        self.number = number
        self.rng = random.Random(f"{seed}:{number}")
        self.plan = Plan.draw(self.rng)
        self.prefix = f"chaos-{seed}-{number}-{os.getpid()}"
        self.logs = world.run_dir / f"trial-{number}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.settings = Settings(
            database_url=world.database_url,
            redis_url=world.redis.url,
            redis_prefix=self.prefix,
            livevox_base_url=world.sim_url,
            log_level="WARNING",
        )
        self.accepted: list[tuple[str, str]] = []  # (record id, phone1) in acceptance order
        self.resent: set[str] = set()  # record ids in batches an operator re-sent from in_doubt
        self.books = Books()
        self.serial = 0
        self.operator_due = False

    def env(self) -> dict[str, str]:
        w = self.world
        return {
            "APPENDQ_DATABASE_URL": w.database_url,
            "APPENDQ_REDIS_URL": w.redis.url,
            "APPENDQ_REDIS_PREFIX": self.prefix,
            "APPENDQ_LIVEVOX_BASE_URL": w.sim_url,
            "APPENDQ_DRAIN_INTERVAL_S": "0.2",
            "APPENDQ_RATE_MAX_CALLS": str(MAX_CALLS),
            "APPENDQ_RATE_WINDOW_S": str(WINDOW_S),
            "APPENDQ_RATE_MARGIN_S": "0.1",
            "APPENDQ_LIVEVOX_CONNECT_TIMEOUT_S": "0.5",
            "APPENDQ_LIVEVOX_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
            "APPENDQ_CALL_GRACE_S": "0.5",
            "APPENDQ_RETRY_BASE_S": "0.2",
            "APPENDQ_RETRY_CAP_S": "1",
            "APPENDQ_CAMPAIGN_CACHE_S": "1",
            "APPENDQ_BATCH_MAX": str(self.plan.batch_max),
            "APPENDQ_LOG_LEVEL": "WARNING",
        }

    def run(self) -> Books:
        with self.world.engine.begin() as conn:
            conn.execute(text("TRUNCATE batches, records, events, target_states CASCADE"))
        self.world.sim.post(
            "/_admin/reset", json={"rate_max_calls": MAX_CALLS, "rate_window_s": WINDOW_S}
        ).raise_for_status()
        workers = Workers(self.env(), self.logs)
        try:
            self._chaos(workers)
            settled = self._settle(workers)
        finally:
            workers.stop_all()
        self._count(settled)
        f = self.books.figures
        f["worker kill -9"] += workers.killed
        f["worker crashes at APPENDQ_CRASH_AT"] += workers.crashed
        f["worker exits without a crash point"] += workers.exited
        if workers.exited:
            self.books.anomalies.append(f"{workers.exited} worker(s) exited on their own")
        self._forget_keys()
        if not self.books.anomalies:
            shutil.rmtree(self.logs, ignore_errors=True)
        return self.books

    # -- the chaos phase ------------------------------------------------------------------------

    def _events(self) -> list[tuple[float, str, Any]]:
        p = self.plan
        events: list[tuple[float, str, Any]] = []
        events += [(t, "submit", n) for t, n in p.submissions]
        events += [(t, "worker", crash) for t, crash in p.workers]
        events += [(t, "kill", None) for t in p.kills]
        events += [(t, "fault", (name, times)) for t, name, times in p.faults]
        events += [(t, "operator", None) for t in p.operator]  # acts on the next in_doubt
        if p.redis_restart:
            events.append((p.redis_restart[0], "redis", p.redis_restart[1]))
        return sorted(events, key=lambda e: e[0])

    def _chaos(self, workers: Workers) -> None:
        """Play the plan's events; past its duration, go on (up to FAULT_GRACE_S) until the
        simulator has used every fault queued."""
        events = self._events()
        t0 = time.monotonic()
        while events or not self._chaos_over(time.monotonic() - t0):
            while events and events[0][0] <= time.monotonic() - t0:
                _, kind, arg = events.pop(0)
                self._do(kind, arg, workers)
            if workers.reap() or not workers.running:
                workers.start(self.rng.choice([None, None, None, *POINTS]))
            if self.operator_due and self._operator_resend():
                self.operator_due = False
            time.sleep(0.05)
        self.operator_due = False

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
        elif kind == "worker":
            workers.start(arg)
        elif kind == "kill" and workers.running:
            workers.kill9(self.rng.choice(workers.running))
        elif kind == "fault":
            name, times = arg
            self._fault(name, times)
            f["simulator faults injected"] += 1
        elif kind == "operator":  # from now on, as soon as a batch is in_doubt
            self.operator_due = True
        elif kind == "redis":
            self.world.redis.kill9()
            time.sleep(arg)
            self.world.redis.start()
            f["Redis kill -9 + restart"] += 1

    def _submit(self, n: int) -> None:
        leads = []
        for _ in range(n):
            self.serial += 1
            leads.append(
                {"phone1": f"212{3000000 + self.serial:07d}", "account": f"C{self.serial}"}
            )
        with connect(self.settings) as producer:
            receipt = producer.enqueue(TARGET, leads)
        assert not receipt.errors and not receipt.duplicates, receipt.to_dict()
        self.accepted += zip(receipt.record_ids, [r["phone1"] for r in leads], strict=True)

    def _fault(self, name: str, times: int) -> None:
        if name == "session_expiry":
            self.world.sim.post("/_admin/sessions/expire").raise_for_status()
            return
        body = {"kind": "append", "fault": FAULTS[name], "times": times}
        self.world.sim.post("/_admin/faults", json=body).raise_for_status()

    def _operator_resend(self) -> int:
        with Session(self.world.engine) as session, session.begin():
            moved = retry_batches(
                session,
                RetryFilter(statuses=(BatchStatus.IN_DOUBT,)),
                reason="chaos: operator re-sends in_doubt batches",
                actor="operator:chaos",
            )
            ids = session.scalars(
                text("SELECT id::text FROM records WHERE batch_id = ANY(:b) AND status IS NULL"),
                {"b": [m.id for m in moved]},
            ).all()
        self.resent.update(ids)
        self.books.figures["operator re-sends of in_doubt batches"] += len(moved)
        return len(moved)

    # -- settling and counting ----------------------------------------------------------------

    def _settle(self, workers: Workers) -> bool:
        """Clear the faults, leave one clean worker, and wait until nothing is open."""
        self.world.sim.delete("/_admin/faults").raise_for_status()
        for worker in [w for w in workers.running if w.crash_at]:
            workers.kill9(worker)
            workers.killed -= 1  # not chaos: the settle phase wants a worker without crash point
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
        client = self._redis()
        try:
            items = client.lrange(f"{self.prefix}:q:{TARGET}", 0, -1)
            items += client.lrange(f"{self.prefix}:inflight:{TARGET}", 0, -1)
        finally:
            client.close()
        return {json.loads(item)["id"] for item in items}

    def _nothing_open(self) -> bool:
        with self.world.engine.connect() as conn:
            open_batches = conn.scalar(
                text("SELECT count(*) FROM batches WHERE status = ANY(:s)"), {"s": OPEN}
            )
        return not open_batches and not self._queued_ids()

    def _count(self, settled: bool) -> None:
        with self.world.engine.connect() as conn:
            rows = {
                r[0]: r[1:]
                for r in conn.execute(
                    text(
                        "SELECT r.id::text, coalesce(r.status, b.status), r.phone1"
                        " FROM records r JOIN batches b ON b.id = r.batch_id"
                    )
                )
            }
            f = self.books.figures
            for to, n in conn.execute(
                text(
                    "SELECT to_status, count(*) FROM events"
                    " WHERE from_status = 'sending' GROUP BY to_status"
                )
            ):
                f[f"batch sending -> {to}"] += n
        queued = self._queued_ids()
        at_sim = self.world.sim.get(f"/_admin/campaigns/{CAMPAIGN}/records").json()
        received = Counter(str(r["phone1"]) for r in at_sim)
        calls = [
            c["at"] for c in self.world.sim.get("/_admin/calls").json() if c["kind"] == "append"
        ]
        f = self.books.figures
        f["trials"] += 1
        f["records accepted"] += len(self.accepted)
        for rid, phone in self.accepted:
            self._count_record(rid, phone, rows.get(rid), rid in queued, received[phone])
        if not settled:
            self.books.anomalies.append("did not settle")
        self._count_fifo(at_sim)
        violations, most = rate_violations(calls, WINDOW_S, MAX_CALLS)
        f["rate-window violations"] += violations
        f["max appends in any window"] = max(f["max appends in any window"], most)
        if violations:
            self.books.anomalies.append(f"{violations} rate-window violations (max {most})")

    def _count_record(
        self, rid: str, phone: str, row: tuple[str, str] | None, queued: bool, received: int
    ) -> None:
        f = self.books.figures
        status = row[0] if row else ("queued" if queued else "nowhere")
        if status in ("appended", "held", "rejected", "in_doubt", "failed"):
            f[status] += 1
        else:
            f["unsettled"] += 1
        problem = None
        if status == "nowhere":
            problem = "  lost: nowhere (not in Redis, not in PostgreSQL)"
        elif status == "appended" and not received:
            problem = "  lost: appended in the audit, never at LiveVox"
        elif received > 1:
            problem = "sent twice via re-sent in_doubt" if rid in self.resent else "sent twice"
        elif received and status not in ("appended", "in_doubt") and rid not in self.resent:
            problem = "at LiveVox but audit says not appended"
        if problem is None:
            return
        f[problem] += 1
        if problem.startswith("  lost"):
            f["lost"] += 1
        if problem != "sent twice via re-sent in_doubt":
            self.books.anomalies.append(f"{problem.strip()}: record {rid} ({status})")

    def _count_fifo(self, at_sim: list[dict[str, Any]]) -> None:
        order = {phone: i for i, (_, phone) in enumerate(self.accepted)}
        first = [order[p] for p in dict.fromkeys(str(r["phone1"]) for r in at_sim) if p in order]
        late, highest = 0, -1
        for position in first:
            late += position < highest
            highest = max(highest, position)
        if late:
            self.books.figures["out of FIFO order (records)"] += late
            self.books.anomalies.append(f"{late} records reached LiveVox out of FIFO order")

    def _forget_keys(self) -> None:
        client = self._redis()
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()


def rate_violations(times: list[float], window: float, max_calls: int) -> tuple[int, int]:
    """(calls that open a window [t, t + window) holding more than max_calls, the most held)."""
    times = sorted(times)
    violations, most, end = 0, 0, 0
    for start, at in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] - at < window:
            end += 1
        held = end - start
        most = max(most, held)
        violations += held > max_calls
    return violations, most


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
    args = parser.parse_args()
    numbers = [args.only] if args.only is not None else list(range(args.trials))
    total = Counter[str]()
    flagged: list[str] = []
    started = time.monotonic()
    with world() as w:
        print(f"run directory {w.run_dir}; seed {args.seed}", flush=True)
        for number in numbers:
            t0 = time.monotonic()
            trial = Trial(w, number, args.seed)
            books = trial.run()
            most = max(
                total["max appends in any window"], books.figures["max appends in any window"]
            )
            total.update(books.figures)
            total["max appends in any window"] = most
            line = f"trial {number:>3}: {books.figures['records accepted']:>5} records, "
            line += f"{time.monotonic() - t0:4.1f} s  [{trial.plan.summary()}]"
            if books.anomalies:
                line += f"  ANOMALY ({w.run_dir / f'trial-{number}'}): " + "; ".join(
                    books.anomalies[:5]
                )
                flagged.append(f"--seed {args.seed} --only {number}")
            print(line, flush=True)
        keep = bool(flagged)
    print()
    print(f"chaos: {MAX_CALLS} calls per {WINDOW_S:g} s, 0.2 s drain interval, seed {args.seed}")
    for name in FIGURES:
        print(f"{name:<52} {total[name]:>12,}")
    print(f"{'elapsed':<52} {time.monotonic() - started:>11.0f}s")
    if flagged:
        print("replay the flagged trials with: " + ", ".join(flagged))
    if not keep:
        shutil.rmtree(w.run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
