"""A backlog of 1,000,000 records drained by a real ``appendq worker``: does every call carry
10,000 records, and does the drain waste no tick while records wait?

    python -m bench.backlog [--records 1000000]

    python -m bench.backlog --records 200000 --window 6 --interval 2   # production's 60 s : 20 s

The records are pushed at once (``RecordQueue.push``, chunks of 50,000) into a scratch prefix and
database; the simulator and the worker run as subprocesses with the rate window scaled down
together with the drain interval (default: 5 calls per 1 s window, 0.1 s client margin, 0.2 s
ticks), LiveVox's 10,000-record call unchanged.

Reported: calls and records per call; tick reports that made no call while records waited (from
the worker's log: ``rate_limited`` is the limit doing its job, anything else is waste), ticks
Celery dropped because they expired while a tick ran, and the rate actually used (calls per
window from the simulator's own call log, against what the limiter allows and what one call per
tick allows), hence the rate slots left unused while records waited; elapsed time; the worker's
peak RSS (VmHWM); Redis memory per queued record.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import redis

from appendq.keys import Keys
from appendq.queue.record_queue import RecordQueue
from bench.common import (
    REDIS_URL,
    queued,
    row,
    scratch_database,
    scratch_prefix,
    scratch_simulator,
)
from tests.support.procs import process

TARGET = "service:1001"
CAMPAIGN = 5001
MAX_CALLS = 5
BATCH = 10_000
CHUNK = 50_000
_TICK = re.compile(r"workers\.tasks: tick: (\w+)")


def enqueue(client: redis.Redis, prefix: str, records: int) -> tuple[float, int, int]:
    """Push ``records`` records; (seconds taken, used_memory growth, MEMORY USAGE of the list)."""
    queue = RecordQueue(client, Keys(prefix))
    before = int(client.info("memory")["used_memory"])
    t0 = time.perf_counter()
    for start in range(0, records, CHUNK):
        queue.push(TARGET, queued(min(CHUNK, records - start), start=start))
    took = time.perf_counter() - t0
    after = int(client.info("memory")["used_memory"])
    usage = int(client.memory_usage(Keys(prefix).queue(TARGET), samples=0) or 0)
    return took, after - before, usage


def appended(sim: httpx.Client) -> int:
    state = sim.get("/_admin/state").json()
    return sum(int(c["appended"]) for c in state["campaigns"] if c["id"] == CAMPAIGN)


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def drain(env: dict[str, str], log: Path, sim: httpx.Client, records: int) -> dict[str, Any]:
    """Run the worker until the simulator holds every record; elapsed and peak RSS."""
    t0 = time.monotonic()
    with process(["worker"], env, log) as worker:
        while appended(sim) < records:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited {worker.returncode}: see {log}")
            if time.monotonic() - t0 > 3600:
                raise SystemExit(f"not drained after an hour: {appended(sim):,} of {records:,}")
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        rss = peak_rss_kb(worker.pid)
    return {"elapsed": elapsed, "rss_kb": rss}


@dataclass(frozen=True)
class Pace:
    """The simulator's window, the client's margin and the drain interval."""

    window_s: float
    margin_s: float
    interval_s: float

    @property
    def rate_allows(self) -> float:
        """Calls per window the limiter allows (its window is window + margin)."""
        return MAX_CALLS * self.window_s / (self.window_s + self.margin_s)

    @property
    def ticks_allow(self) -> float:
        """Calls per window that one call per tick allows."""
        return self.window_s / self.interval_s


def rate_use(times: list[float], window_s: float) -> tuple[float, float]:
    """(median seconds for MAX_CALLS calls in a row, mean calls per window over the drain)."""
    spans = [b - a for a, b in zip(times, times[MAX_CALLS:], strict=False)]
    per_window = (len(times) - 1) / (times[-1] - times[0]) * window_s if len(times) > 1 else 0.0
    return (statistics.median(spans) if spans else 0.0), per_window


def report(
    records: int, pace: Pace, memory: tuple[float, int, int], run: dict[str, Any], log: Path
) -> None:
    took, grown, usage = memory
    calls = [c for c in run["calls"] if c["kind"] == "append"]
    text = log.read_text()
    ticks = Counter(_TICK.findall(text))
    wasted = sum(n for outcome, n in ticks.items() if outcome not in ("appended", "rate_limited"))
    span5, per_window = rate_use(sorted(c["at"] for c in calls), pace.window_s)
    drain_s = calls[-1]["at"] - calls[0]["at"] if len(calls) > 1 else 0.0
    allowed = pace.rate_allows * drain_s / pace.window_s
    unused = max(allowed - (len(calls) - 1), 0.0)
    print(
        f"backlog: {records:,} records; simulator {MAX_CALLS} calls per {pace.window_s:g} s; "
        f"client window {pace.window_s:g} + {pace.margin_s:g} s margin; drain interval "
        f"{pace.interval_s:g} s"
    )
    print(f"{'measure':<46} {'value':>16} {'bound':>16}")
    show("enqueue (RecordQueue.push, records/s)", f"{records / took:,.0f}")
    show("Redis used_memory growth per record", f"{grown / records:,.0f} B")
    show("  MEMORY USAGE of the list per record", f"{usage / records:,.0f} B")
    show_calls(records, calls)
    show("tick reports without a call: rate_limited", f"{ticks['rate_limited']}")
    show("tick reports without a call: other (wasted)", f"{wasted}", "0")
    for outcome, n in sorted(ticks.items()):
        show(f"  tick reports: {outcome}", f"{n}")
    show("ticks dropped (expired while a tick ran)", f"{text.count('Discarding revoked task')}")
    gaps = [b["at"] - a["at"] for a, b in pairwise(calls)]
    show("median s between calls", f"{statistics.median(gaps) if gaps else 0:.3f} s")
    show(f"median s for {MAX_CALLS} calls in a row", f"{span5:.2f} s")
    limit = f"{pace.rate_allows:.2f}"
    show(f"calls per {pace.window_s:g} s window: used", f"{per_window:.2f}", limit)
    show("  the rate limiter allows", f"{pace.rate_allows:.2f}")
    show("  one call per tick allows", f"{pace.ticks_allow:.2f}")
    show("rate slots unused while records waited", f"{unused:.1f}", "0")
    share = (len(calls) - 1) / allowed if allowed else 0.0
    show("  share of the allowed rate used", f"{share:.0%}", "100%")
    show("records per second through LiveVox", f"{records / run['elapsed']:,.0f}")
    show("elapsed, worker start to all appended", f"{run['elapsed']:.1f} s")
    show("worker peak RSS (VmHWM)", f"{run['rss_kb'] / 1024:,.0f} MiB")


def show_calls(records: int, calls: list[dict[str, Any]]) -> None:
    """How many Append calls (all 204?) against the least possible, and of which sizes."""
    ok = all(c["status"] == 204 for c in calls)
    show(
        "Append calls" + ("" if ok else " (NOT all 204)"),
        f"{len(calls)}",
        f"{-(-records // BATCH)}",
    )
    for size, n in sorted(Counter(c["records"] for c in calls).items()):
        show(f"  calls of {size:,} records", f"{n}")


def show(name: str, value: str, bound: str = "") -> None:
    row(name, value, bound, "")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--window", type=float, default=1.0, help="rate window, s")
    parser.add_argument("--margin", type=float, default=0.1, help="client's margin, s")
    parser.add_argument("--interval", type=float, default=0.2, help="drain interval, s")
    args = parser.parse_args()
    pace = Pace(args.window, args.margin, args.interval)
    window = ["--rate-window-s", str(pace.window_s), "--rate-max-calls", str(MAX_CALLS)]
    with (
        TemporaryDirectory() as tmp,
        scratch_database() as db,
        scratch_prefix() as prefix,
        scratch_simulator(*window) as url,
        httpx.Client(base_url=url, timeout=60) as sim,
    ):
        client = redis.Redis.from_url(REDIS_URL)
        memory = enqueue(client, prefix, args.records)
        env = {
            "APPENDQ_DATABASE_URL": db,
            "APPENDQ_REDIS_URL": REDIS_URL,
            "APPENDQ_REDIS_PREFIX": prefix,
            "APPENDQ_LIVEVOX_BASE_URL": url,
            "APPENDQ_DRAIN_INTERVAL_S": str(pace.interval_s),
            "APPENDQ_RATE_MAX_CALLS": str(MAX_CALLS),
            "APPENDQ_RATE_WINDOW_S": str(pace.window_s),
            "APPENDQ_RATE_MARGIN_S": str(pace.margin_s),
            "APPENDQ_CAMPAIGN_CACHE_S": "60",
            "APPENDQ_STATE_DIR": str(Path(tmp) / "state"),
            "APPENDQ_LOG_LEVEL": "INFO",
        }
        log = Path(tmp) / "worker.log"
        run = drain(env, log, sim, args.records)
        run["calls"] = sim.get("/_admin/calls").json()
        client.close()
        report(args.records, pace, memory, run, log)


if __name__ == "__main__":
    main()
