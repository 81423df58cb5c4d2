"""Many LiveVox accounts on 1, 2 and 4 workers (issue #12): does every account get its ceiling,
and does the aggregate grow with the workers until their cores are saturated?

    python -m bench.accounts [--accounts 20] [--workers 1,2,4] [--seconds 30]
    python -m bench.accounts --workers 1,2 --interval 3 --window 9     # a lighter load
    python -m bench.accounts --workers 1 --seconds 0                   # the sizing run alone

Each run has its own scratch database, Redis prefix and simulator (``--clients C01,...``: a
client code, rate window and campaign per account) and runs the real processes: one
``appendq beat`` and N ``appendq worker --no-beat``, serving every account of an accounts file.
Each account's queue is filled beforehand with more than its ceiling lets it send in the run.
The rate window is scaled down with the drain interval at production's 60 s : 20 s (margin:
window / 60), so an account's ceiling is min(5, window / interval) calls of ``--batch`` records
per window. The default load is one that one worker cannot keep up with: 20 accounts make
13 ticks a second, and a tick of 250 records takes a worker about 0.14 s here (0.065 s of CPU),
about the ratio of a 10,000-record tick to the 20 s interval in production (1 s against 20 s,
plus LiveVox's own latency). ``--interval 0.75 --window 2.25`` loads the machine's cores.

A last run (``--sizing-batch``, 0: none) drains ``--sizing-batches`` calls of LiveVox's
10,000 records per account on one worker: the worker's CPU seconds per full tick, hence how many
accounts one worker core serves at the real 20 s interval (3 calls a minute) and at 12 s (all 5).

What is measured, and how, is in ``bench.accounts_report``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import redis

from appendq.keys import Keys
from appendq.queue.record_queue import RecordQueue
from bench.accounts_report import (
    MAX_CALLS,
    Pace,
    Run,
    Sample,
    names,
    read_logs,
    report,
    report_sizing,
)
from bench.common import (
    REDIS_URL,
    cpu_of,
    cpu_s,
    machine_cpu,
    queued,
    scratch_database,
    scratch_prefix,
)
from tests.support.procs import free_port, http_process, process

CHUNK = 20_000
_STORES = ("postgres", "redis-server")
_COMMAND = re.compile(r'\] "(\w+)" "([^"]*)"')


def write_accounts(path: Path, url: str, n: int) -> None:
    tables = [
        f'[accounts.{acct}]\nbase_url = "{url}"\nclient_name = "{client}"\nusername = "appendq"\n'
        for acct, client, _ in names(n)
    ]
    path.write_text("\n".join(tables))


def fill(client: redis.Redis, prefix: str, n: int, per_account: int) -> None:
    """Queue ``per_account`` records on each account's service."""
    for acct, _, service in names(n):
        queue = RecordQueue(client, Keys(prefix).for_account(acct), acct)
        for start in range(0, per_account, CHUNK):
            queue.push(f"service:{service}", queued(min(CHUNK, per_account - start), start))


def settings_env(db: str, prefix: str, url: str, pace: Pace, tmp: Path) -> dict[str, str]:
    return {
        "APPENDQ_DATABASE_URL": db,
        "APPENDQ_REDIS_URL": REDIS_URL,
        "APPENDQ_REDIS_PREFIX": prefix,
        "APPENDQ_LIVEVOX_BASE_URL": url,
        "APPENDQ_ACCOUNTS_FILE": str(tmp / "accounts.toml"),
        "APPENDQ_DRAIN_INTERVAL_S": str(pace.interval_s),
        "APPENDQ_BATCH_MAX": str(pace.batch),
        "APPENDQ_RATE_MAX_CALLS": str(MAX_CALLS),
        "APPENDQ_RATE_WINDOW_S": str(pace.window_s),
        "APPENDQ_RATE_MARGIN_S": str(pace.margin_s),
        "APPENDQ_CAMPAIGN_CACHE_S": "3600",
        "APPENDQ_STATE_DIR": str(tmp / "state"),
        "APPENDQ_LOG_LEVEL": "INFO",
    }


class TickTap(threading.Thread):
    """Redis MONITOR of one prefix: when beat sent each account's ticks, when a worker took each
    one up (the gate's GET of the account's tick key, in ``take_tick``'s script) and when the
    gate let it through (its SET), times on Redis's clock."""

    def __init__(self, prefix: str) -> None:
        super().__init__(daemon=True)
        self.sent: dict[str, list[float]] = defaultdict(list)
        self.taken: dict[str, list[float]] = defaultdict(list)
        self.passed: dict[str, list[float]] = defaultdict(list)
        self._queue = f"{prefix}:celery:{prefix}.ticks."
        self._acct = f"{prefix}:acct:"
        self._conn = redis.Redis.from_url(REDIS_URL).connection_pool.get_connection()
        self._conn.send_command("MONITOR")  # type: ignore[no-untyped-call]
        self._conn.read_response()
        self._closing = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError, ValueError):
            while not self._closing.is_set():
                line = self._conn.read_response()
                self.see(line.decode(errors="replace") if isinstance(line, bytes) else str(line))

    def see(self, line: str) -> None:
        found = _COMMAND.search(line)
        if found is None:
            return
        command, key = found.group(1).upper(), found.group(2)
        if command == "LPUSH" and key.startswith(self._queue):
            self.sent[key[len(self._queue) :]].append(float(line.split(" ", 1)[0]))
        elif command in ("GET", "SET") and key.startswith(self._acct) and key.endswith(":tick"):
            seen = self.taken if command == "GET" else self.passed
            seen[key[len(self._acct) : -5]].append(float(line.split(" ", 1)[0]))

    def close(self) -> None:
        self._closing.set()
        self._conn.disconnect()  # type: ignore[no-untyped-call]
        self.join(5)


@dataclass
class Fleet:
    """A run's processes, logs, simulator and Redis prefix."""

    workers: list[Any]
    beat: Any
    sim_pid: int
    logs: list[Path]  # the workers', then beat's
    sim: httpx.Client
    client: redis.Redis
    prefix: str
    accounts: int

    def sample(self) -> Sample:
        queues = [
            f"{self.prefix}:celery:{self.prefix}.ticks.{a}" for a, _, _ in names(self.accounts)
        ]
        return Sample(
            at=time.time(),
            workers=[cpu_s(p.pid) for p in self.workers],
            beat=cpu_s(self.beat.pid),
            sim=cpu_s(self.sim_pid),
            stores=cpu_of(_STORES),
            bench=cpu_s(os.getpid()),
            machine=machine_cpu(),
            logs=[log.stat().st_size for log in self.logs],
            waiting=sum(int(self.client.llen(q)) for q in queues),
        )

    def calls(self) -> list[dict[str, Any]]:
        """The simulator's Append calls so far; SystemExit once a process of the run died."""
        for p in [*self.workers, self.beat]:
            if p.poll() is not None:
                raise SystemExit(f"a process exited {p.returncode}: see {self.logs}")
        return [c for c in self.sim.get("/_admin/calls").json() if c["kind"] == "append"]

    def wait(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 180) -> None:
        t0 = time.monotonic()
        while not done(self.calls()):
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"gave up waiting after {timeout:.0f} s: see {self.logs}")
            time.sleep(0.25)

    def left(self) -> list[int]:
        """Records still queued, per account."""
        keys = Keys(self.prefix)
        return [
            int(self.client.llen(keys.for_account(a).queue(f"service:{s}")))
            for a, _, s in names(self.accounts)
        ]


@dataclass(frozen=True)
class Timed:
    """The scaling runs' span: once every account has called, 2 windows of warm-up, then
    ``seconds`` watched by a ``TickTap``."""

    seconds: float

    def backlog(self, pace: Pace) -> int:
        return int(pace.ceiling * (self.seconds + 4 * pace.window_s + 20)) + 2 * pace.batch

    def __call__(self, run: Run, fleet: Fleet) -> None:
        t0 = time.monotonic()
        fleet.wait(lambda calls: len({c["client"] for c in calls}) >= run.accounts)
        note("every account has called", t0)
        tap = TickTap(fleet.prefix)
        tap.start()
        time.sleep(2 * run.pace.window_s)
        run.start = fleet.sample()
        time.sleep(self.seconds)
        run.end = fleet.sample()
        tap.close()
        run.sent, run.taken, run.passed = dict(tap.sent), dict(tap.taken), dict(tap.passed)


@dataclass(frozen=True)
class Counted:
    """The sizing run's span: from the call that gives every account its first one to the
    call that leaves each with one batch queued (so no tick runs out of records)."""

    batches: int

    def backlog(self, pace: Pace) -> int:
        return self.batches * pace.batch

    def __call__(self, run: Run, fleet: Fleet) -> None:
        fleet.wait(lambda calls: len(calls) >= run.accounts)
        run.start = fleet.sample()
        fleet.wait(lambda calls: len(calls) >= run.accounts * (self.batches - 1))
        run.end = fleet.sample()


def ready(workers: list[Any], logs: list[Path], timeout: float = 120) -> None:
    """Wait until every worker consumes (Celery logs "NAME ready."): beat starts after them, so
    no ticks pile up while they boot."""
    t0 = time.monotonic()
    while not all(b" ready." in log.read_bytes() for log in logs):
        if any(w.poll() is not None for w in workers) or time.monotonic() - t0 > timeout:
            raise SystemExit(f"a worker did not get ready: see {logs}")
        time.sleep(0.2)


def note(what: str, since: float) -> None:
    """Progress, on stderr: the table alone goes to stdout."""
    print(f"  [{time.monotonic() - since:5.1f} s] {what}", file=sys.stderr, flush=True)


@contextmanager
def simulator(tmp: Path, n: int, pace: Pace) -> Iterator[tuple[str, Any]]:
    """A simulator hosting one client per account, its window scaled; (url, process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    clients = ",".join(client for _, client, _ in names(n))
    args = ["simulator", "--port", str(port), "--clients", clients]
    args += ["--rate-window-s", str(pace.window_s), "--rate-max-calls", str(MAX_CALLS)]
    with http_process(args, {}, tmp / "sim.log", f"{url}/_admin/state", "the simulator", 30) as p:
        yield url, p


def measure(pace: Pace, n: int, workers: int, span: Timed | Counted) -> Run:
    """One run on fresh stores: fill, start beat and the workers, let ``span`` sample the start
    and the end of what is measured, then read the queues, the logs and the call log."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(TemporaryDirectory()))
        db = stack.enter_context(scratch_database())
        prefix = stack.enter_context(scratch_prefix())
        url, sim_proc = stack.enter_context(simulator(tmp, n, pace))
        sim = stack.enter_context(httpx.Client(base_url=url, timeout=60))
        client = redis.Redis.from_url(REDIS_URL)
        stack.callback(client.close)
        write_accounts(tmp / "accounts.toml", url, n)
        t0 = time.monotonic()
        fill(client, prefix, n, span.backlog(pace))
        note(f"{workers} worker(s): {n} accounts, {span.backlog(pace):,} records queued each", t0)
        env = settings_env(db, prefix, url, pace, tmp)
        logs = [tmp / f"worker{i}.log" for i in range(workers)] + [tmp / "beat.log"]
        started = [stack.enter_context(process(["worker", "--no-beat"], env, x)) for x in logs[:-1]]
        ready(started, logs[:-1])
        beat = stack.enter_context(process(["beat"], env, logs[-1]))
        fleet = Fleet(started, beat, sim_proc.pid, logs, sim, client, prefix, n)
        run = Run(workers, pace, n)
        span(run, fleet)
        note(f"{workers} worker(s): measured {run.seconds:.1f} s", t0)
        run.load = Path("/proc/loadavg").read_text().split()[0]
        run.left = fleet.left()
        run.calls = fleet.calls()
        read_logs(run, logs[:-1])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.accounts")
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--workers", default="1,2,4", help="worker processes per run")
    parser.add_argument("--window", type=float, default=4.5, help="rate window, s")
    parser.add_argument("--interval", type=float, default=1.5, help="drain interval, s")
    parser.add_argument("--batch", type=int, default=250, help="records per call")
    # 60 s: an account's egress is measured from ~40 calls, so one call's jitter moves it < 3 %.
    parser.add_argument("--seconds", type=float, default=60, help="measured per run (0: none)")
    parser.add_argument("--sizing-batch", type=int, default=10_000, help="0: no sizing run")
    parser.add_argument("--sizing-accounts", type=int, default=8)
    parser.add_argument("--sizing-batches", type=int, default=5, help="calls per account")
    args = parser.parse_args()
    pace = Pace(args.window, args.interval, args.batch)
    if args.seconds > 0:
        span = Timed(args.seconds)
        runs = [measure(pace, args.accounts, int(w), span) for w in args.workers.split(",")]
        report(runs)
    if args.sizing_batch > 0:
        big = Pace(args.window, args.interval, args.sizing_batch)
        counted = Counted(max(args.sizing_batches, 3))
        report_sizing(measure(big, args.sizing_accounts, 1, counted))


if __name__ == "__main__":
    main()
