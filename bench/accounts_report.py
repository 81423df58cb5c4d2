"""What ``bench.accounts`` measures, and its table.

Per run, over the measured span (after every account has called, and 2 windows more):

- **egress**: an account's records/s, from the simulator's own call log (2xx Append calls of its
  client): the records of its calls after the first in the span over the time from its first to
  its last call, so that where the span cuts a drain interval does not count; the aggregate is
  their sum. Against the account's **ceiling** (``Pace.ceiling``) and against the 1-worker run;
  fairness is the slowest account's egress over the fastest one's.
- **ticks**, from a Redis MONITOR of the run's prefix (``bench.accounts.TickTap``; neither
  Celery nor the tick task logs them): the ticks beat sent (LPUSH on an account's Celery queue),
  the ticks workers took up (the GET in ``take_tick``'s gate), and among those the ones the gate
  refused (no SET followed: more than its burst of drains too close together; each is a call
  not made); the gaps between an account's drains. Beat sends every account's tick in one
  burst, and the workers take a burst in an order that changes from one interval to the next:
  one interval's tick comes late, the next one early (a gate that refused a tick less than 0.9
  interval after the last drain lost a quarter of the calls on 2 to 4 workers). Also the tick
  reports other than ``appended`` in the workers' logs, ticks Celery discarded as expired, and
  ticks waiting in Celery's queues at the start and the end (growing: the workers are behind).
- **rate windows**: the most Append calls one client made in any rolling window (the
  simulator's count: calls at t' in (t - window, t]), over the whole run, and answers other than
  2xx.
- **CPU** from /proc: each worker, beat, the simulator, PostgreSQL + Redis (every process of
  those names: other users' load included), the bench itself (the MONITOR reader), the whole
  machine; the 1-minute load average at the end; the workers' CPU s per Append call.
"""

from __future__ import annotations

import os
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

MAX_CALLS = 5
REAL_WINDOW_S = 60.0
REAL_INTERVALS = (20.0, 12.0)  # LiveVox's recommended interval; the one that uses all 5 calls
_TICK = re.compile(r"workers\.tasks: tick: (\w+) \(account (\S+)\)")


@dataclass(frozen=True)
class Pace:
    """The scaled rate window and drain interval, and the batch size."""

    window_s: float
    interval_s: float
    batch: int

    @property
    def margin_s(self) -> float:
        """The client's margin, scaled as the window is (1 s of 60)."""
        return self.window_s / REAL_WINDOW_S

    @property
    def calls_per_window(self) -> float:
        return min(MAX_CALLS, self.window_s / self.interval_s)

    @property
    def ceiling(self) -> float:
        """One account's ceiling, records/s: min(5, window / interval) full calls per window."""
        return self.calls_per_window * self.batch / self.window_s


def names(n: int) -> list[tuple[str, str, int]]:
    """(account, simulator client, service id) of each account: client k has service 1001+100k."""
    return [(f"a{k + 1:02d}", f"C{k + 1:02d}", 1001 + 100 * k) for k in range(n)]


@dataclass(frozen=True)
class Sample:
    """CPU seconds used so far, log sizes and ticks waiting, at one moment of a run."""

    at: float
    workers: list[float]
    beat: float
    sim: float
    stores: float
    bench: float
    machine: tuple[float, float]  # busy, total
    logs: list[int]
    waiting: int


@dataclass
class Run:
    """What one run measured."""

    workers: int
    pace: Pace
    accounts: int
    start: Sample | None = None
    end: Sample | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    expired: int = 0
    left: list[int] = field(default_factory=list)
    load: str = ""
    sent: dict[str, list[float]] = field(default_factory=dict)
    taken: dict[str, list[float]] = field(default_factory=dict)
    passed: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ends(self) -> tuple[Sample, Sample]:
        assert self.start is not None and self.end is not None
        return self.start, self.end

    @property
    def seconds(self) -> float:
        start, end = self.ends
        return end.at - start.at

    def cpu(self, of: str) -> float:
        """Cores used over the span by ``of`` (a Sample field; ``workers``: their sum)."""
        start, end = self.ends
        a, b = getattr(start, of), getattr(end, of)
        used = sum(b) - sum(a) if isinstance(a, list) else b - a
        return float(used) / self.seconds

    def in_span(self) -> list[dict[str, Any]]:
        start, end = self.ends
        return [c for c in self.calls if start.at <= c["at"] < end.at and _ok(c)]


def _ok(call: dict[str, Any]) -> bool:
    """A 2xx answer; a call still running when the log was read (no status yet) is not counted
    against the run."""
    return call["status"] is None or 200 <= int(call["status"]) < 300


def read_logs(run: Run, logs: list[Path]) -> None:
    """The tick reports and expired ticks in the workers' logs over the span."""
    start, end = run.ends
    for i, log in enumerate(logs):
        with log.open("rb") as f:
            f.seek(start.logs[i])
            text = f.read(end.logs[i] - start.logs[i]).decode(errors="replace")
        run.outcomes.update(outcome for outcome, _ in _TICK.findall(text))
        run.expired += text.count("Discarding revoked task")


def egress(calls: list[dict[str, Any]], seconds: float) -> float:
    """Records/s of one account's calls (in time order): after the first, over first to last."""
    if len(calls) < 2:
        return sum(int(c["records"]) for c in calls) / seconds
    return sum(int(c["records"]) for c in calls[1:]) / float(calls[-1]["at"] - calls[0]["at"])


def by_client(run: Run) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {client: [] for _, client, _ in names(run.accounts)}
    for call in sorted(run.in_span(), key=lambda c: c["at"]):
        found.setdefault(call["client"], []).append(call)
    return found


def most_in_window(calls: list[dict[str, Any]], window_s: float) -> int:
    """The most Append calls one client made in any rolling window, over the whole log."""
    most = 0
    times: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        times[call["client"]].append(call["at"])
    for seq in times.values():
        seq.sort()
        first = 0
        for i, at in enumerate(seq):
            while seq[first] <= at - window_s:
                first += 1
            most = max(most, i - first + 1)
    return most


def per_second(times: list[float]) -> float:
    """Events/s of a sequence of times, over its first to its last (0 below two)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def ticks(run: Run) -> tuple[list[float], int, int, list[float]]:
    """(ticks/s beat sent each account, ticks taken up, of which refused by take_tick's gate,
    gaps between an account's drains) over the span."""
    start, end = run.ends

    def within(seq: list[float]) -> list[float]:
        return sorted(t for t in seq if start.at <= t < end.at)

    sent = [per_second(within(seq)) for seq in run.sent.values()]
    taken = sum(len(within(seq)) for seq in run.taken.values())
    passed = [within(seq) for seq in run.passed.values()]
    gaps = [b - a for seq in passed for a, b in pairwise(seq)]
    return sent, taken, taken - sum(len(seq) for seq in passed), gaps


@dataclass(frozen=True)
class Figures:
    """One run's figures, for the table."""

    run: Run
    egress: list[float]  # records/s of each account
    sent: list[float]  # ticks/s beat sent each account
    taken: int
    refused: int
    drain_gaps: list[float]
    busy: float  # the machine, share of every core

    @classmethod
    def of(cls, run: Run) -> Figures:
        rates = [egress(calls, run.seconds) for calls in by_client(run).values()]
        sent, taken, refused, gaps = ticks(run)
        (busy0, total0), (busy1, total1) = (s.machine for s in run.ends)
        return cls(run, rates, sent, taken, refused, gaps, (busy1 - busy0) / (total1 - total0))

    def share(self) -> list[float]:
        """Each account's egress over its ceiling, slowest first."""
        return sorted(x / self.run.pace.ceiling for x in self.egress)

    def per_interval(self, count: int) -> float:
        return count * self.run.pace.interval_s / (self.run.accounts * self.run.seconds)

    def cpu_per_call(self, of: str) -> float:
        return self.run.cpu(of) * self.run.seconds / max(len(self.run.in_span()), 1)

    def longest_call_gap(self) -> float:
        calls = by_client(self.run).values()
        return max((b["at"] - a["at"] for c in calls for a, b in pairwise(c)), default=0.0)

    def others(self) -> float:
        """Cores used by anything but this run's processes, PostgreSQL and Redis."""
        mine = ("workers", "beat", "sim", "stores", "bench")
        return self.busy * CORES - sum(self.run.cpu(of) for of in mine)


def busiest(f: Figures) -> float:
    start, end = f.run.ends
    return max(b - a for a, b in zip(start.workers, end.workers, strict=True)) / f.run.seconds


CORES = os.cpu_count() or 1
_Row = tuple[str, str, Callable[[Figures], str]]
ROWS: list[_Row] = [
    ("account egress, % of ceiling: slowest", "99%", lambda f: f"{f.share()[0]:.1%}"),
    ("  median", "", lambda f: f"{statistics.median(f.share()):.1%}"),
    ("  fastest", "", lambda f: f"{f.share()[-1]:.1%}"),
    ("  accounts at >= 99% of ceiling", "all", lambda f: str(sum(x >= 0.99 for x in f.share()))),
    (
        "fairness: slowest / fastest account",
        "1.00",
        lambda f: f"{f.share()[0] / f.share()[-1]:.2f}",
    ),
    (
        "longest gap between an account's calls, s",
        "interval",
        lambda f: f"{f.longest_call_gap():.2f}",
    ),
    ("records still queued: least account", "> 0", lambda f: f"{min(f.run.left):,}"),
    (
        "ticks beat sent / account / interval: least",
        "1.00",
        lambda f: f"{min(f.sent) * f.run.pace.interval_s:.3f}",
    ),
    ("ticks workers took up / account / interval", "", lambda f: f"{f.per_interval(f.taken):.3f}"),
    (
        "  refused by the gate (over its burst)",
        "0",
        lambda f: f"{f.per_interval(f.refused):.3f}",
    ),
    (
        "  Append calls / account / interval",
        "1.00",
        lambda f: f"{f.per_interval(len(f.run.in_span())):.3f}",
    ),
    (
        "gap between an account's drains, median, s",
        "interval",
        lambda f: f"{statistics.median(f.drain_gaps or [0]):.3f}",
    ),
    ("  longest, s", "", lambda f: f"{max(f.drain_gaps or [0]):.2f}"),
    (
        "ticks waiting in Celery: start -> end",
        "",
        lambda f: f"{f.run.ends[0].waiting}->{f.run.ends[1].waiting}",
    ),
    (
        "tick reports other than appended (logs)",
        "0",
        lambda f: str(sum(v for k, v in f.run.outcomes.items() if k != "appended")),
    ),
    ("ticks expired before a worker ran them", "0", lambda f: str(f.run.expired)),
    (
        "most Append calls of a client in a window",
        f"{MAX_CALLS}",
        lambda f: str(most_in_window(f.run.calls, f.run.pace.window_s)),
    ),
    ("Append answers other than 2xx", "0", lambda f: str(sum(not _ok(c) for c in f.run.calls))),
    ("CPU, cores: workers (sum)", "", lambda f: f"{f.run.cpu('workers'):.2f}"),
    ("  busiest worker, % of a core", "100%", lambda f: f"{busiest(f):.0%}"),
    ("  beat", "", lambda f: f"{f.run.cpu('beat'):.2f}"),
    ("  simulator", "", lambda f: f"{f.run.cpu('sim'):.2f}"),
    ("  PostgreSQL + Redis (all users)", "", lambda f: f"{f.run.cpu('stores'):.2f}"),
    ("  the bench (MONITOR reader)", "", lambda f: f"{f.run.cpu('bench'):.2f}"),
    ("  anything else (other users)", "", lambda f: f"{f.others():.2f}"),
    (f"  machine busy, % of {CORES} cores", "", lambda f: f"{f.busy:.0%}"),
    ("load average (1 min) at the end", f"{CORES}", lambda f: f.run.load),
    ("worker CPU s per Append call", "", lambda f: f"{f.cpu_per_call('workers'):.3f}"),
]


def line(name: str, bound: str, values: list[str]) -> None:
    print(f"{name:<46} {bound:>9}" + "".join(f" {v:>11}" for v in values))


def report(runs: list[Run]) -> None:
    """The scaling table: one column per run, the first run (1 worker) the baseline."""
    pace, n = runs[0].pace, runs[0].accounts
    print(
        f"{n} accounts, a simulator client each: {MAX_CALLS} calls per {pace.window_s:g} s window "
        f"(client margin {pace.margin_s:g} s), a tick every {pace.interval_s:g} s, "
        f"{pace.batch:,} records per call; measured over {runs[0].seconds:.0f} s per run"
    )
    print(
        f"ceiling: {pace.calls_per_window:g} calls x {pace.batch:,} records per {pace.window_s:g} s"
        f" = {pace.ceiling:,.0f} records/s per account, {pace.ceiling * n:,.0f} for all"
    )
    figures = [Figures.of(r) for r in runs]
    totals = [sum(f.egress) for f in figures]
    line("measure", "bound", [f"{r.workers} worker{'s' * (r.workers > 1)}" for r in runs])
    line("aggregate records/s", f"{pace.ceiling * n:,.0f}", [f"{t:,.0f}" for t in totals])
    line(f"  against {runs[0].workers} worker(s)", "", [f"{t / totals[0]:.2f}x" for t in totals])
    for name, bound, value in ROWS:
        line(name, bound, [value(f) for f in figures])
    verdicts(figures)


def verdicts(figures: list[Figures]) -> None:
    """The issue's target and the rate limit, in words."""
    for f in figures:
        share = f.share()
        met = "met" if share[0] >= 0.99 else f"NOT met ({sum(x < 0.99 for x in share)} below)"
        print(
            f"{f.run.workers} worker(s): every account >= 99% of its ceiling: {met}; machine "
            f"{f.busy:.0%} busy, ticks waiting {f.run.ends[0].waiting}->{f.run.ends[1].waiting}"
        )
    most = max(most_in_window(f.run.calls, f.run.pace.window_s) for f in figures)
    refused = sum(not _ok(c) for f in figures for c in f.run.calls)
    exceeded = "EXCEEDED" if most > MAX_CALLS or refused else "never exceeded"
    print(
        f"rate windows (simulator's call log, every run): {exceeded}; at most {most} of "
        f"{MAX_CALLS} calls in a window, {refused} answers other than 2xx"
    )


def report_sizing(run: Run) -> None:
    """Accounts per worker core from one worker's CPU per full tick."""
    f = Figures.of(run)
    calls = len(run.in_span())
    print(
        f"\nsizing: {run.accounts} accounts on 1 worker, {run.pace.batch:,} records per call, "
        f"{calls} calls measured over {run.seconds:.1f} s"
    )
    line("measure", "", ["value"])
    line("worker CPU s per full tick", "", [f"{f.cpu_per_call('workers'):.3f}"])
    line("  PostgreSQL + Redis CPU s per tick (all users)", "", [f"{f.cpu_per_call('stores'):.3f}"])
    line("  simulator CPU s per tick", "", [f"{f.cpu_per_call('sim'):.3f}"])
    line("wall s per tick (one worker, ticks waiting)", "", [f"{run.seconds / calls:.3f}"])
    line(
        "  ticks waiting in Celery: start -> end",
        "",
        [f"{run.ends[0].waiting}->{run.ends[1].waiting}"],
    )
    line("  anything else (other users), cores", "", [f"{f.others():.2f}"])
    for interval in REAL_INTERVALS:
        per_core = interval / f.cpu_per_call("workers")
        line(f"accounts per worker core at {interval:g} s / 60 s", "", [f"{per_core:.0f}"])
    for interval in REAL_INTERVALS:
        per_process = interval * calls / run.seconds
        line(f"accounts per worker process at {interval:g} s (wall)", "", [f"{per_process:.0f}"])
