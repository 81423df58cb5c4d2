"""What is random about one chaos trial, drawn up front from its seed (``python -m bench.chaos``).

``Plan`` holds the faults of the first chaos runs (submissions, workers, crash points, kill -9,
simulator faults, a Redis restart, operator actions). ``FencePlan`` holds the faults that expose
the races of issue 8 ("Fence every drain"), drawn from a generator of their own so that a seed's
``Plan`` is the same with or without them:

- **freeze**: SIGSTOP a worker's process group mid-tick for longer than the drain lease's TTL,
  with a standby worker running, then SIGCONT: the frozen worker wakes up with stale knowledge.
  The freeze strikes while a drain holds the lock, or while an Append is in flight, or at an
  exact step (a worker that stops itself right after committing ``sending``, or right after
  its Append call returned);
- **long calls**: a read timeout longer than the rate window and Append stalls longer than the
  window (some processed first, some landing late, after the stall), while a scraper reads the
  rate budget and ``appendq status`` every 50 ms (in every trial);
- **operator races**: every operator action is a preview, a wait of 0-0.5 s while ticks run,
  then a confirmation with the previewed states;
- **two targets**: leads to the pinned ``campaign:5001`` reusing the phone1 of leads to
  ``service:1001`` (which resolves to the same campaign), none of them with an account.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from appendq.faults import POINTS
from appendq.settings import Settings

TARGET = "service:1001"
#: The pinned target of the campaign ``TARGET`` resolves to: one campaign, two targets.
PINNED = "campaign:5001"
CAMPAIGN = 5001
MAX_CALLS = 5
WINDOW_S = 1.0
READ_TIMEOUT_S = 0.5
#: The read timeout of a long-call trial: longer than the rate window.
LONG_READ_TIMEOUT_S = 1.5
DRAIN_INTERVAL_S = 0.2
OPERATOR_WAIT_MAX_S = 0.5
#: A campaign that refused an append is skipped this long (scaled down from 900 s).
CAMPAIGN_REFUSAL_S = 5.0
#: Leads a two-target trial sends through the pinned target, at most.
PINNED_MAX = 300
#: When a freeze strikes: while a drain holds the lock; while an Append (stalled for it) is in
#: flight; or in a worker that stops itself at that step of the drain (``STOP_POINTS``).
STOP_POINTS = ("after_sending", "after_append")
FREEZE_MODES = ("lock", "mid-call", *STOP_POINTS)
#: The faults of issue 8, as ``--force`` names them.
FENCE_KINDS = ("freeze", "long-calls", "operator", "two-targets")


def faults(read_timeout_s: float) -> dict[str, dict[str, Any]]:
    """The simulator's append faults; "stall" outlasts the trial's read timeout."""
    return {
        "500": {"status": 500},
        "500+apply": {"status": 500, "apply": True},
        "drop": {"drop": True},
        "drop+apply": {"drop": True, "apply": True},
        "stall": {"stall_s": read_timeout_s + 0.3, "apply": True},
        "429": {"status": 429},
        "400": {"status": 400},
    }


FAULT_NAMES = [*faults(READ_TIMEOUT_S), "session_expiry"]


def worker_env(read_timeout_s: float, batch_max: int) -> dict[str, str]:
    """The APPENDQ_* settings of a trial's workers (Redis, database and LiveVox added later)."""
    return {
        "APPENDQ_DRAIN_INTERVAL_S": str(DRAIN_INTERVAL_S),
        "APPENDQ_RATE_MAX_CALLS": str(MAX_CALLS),
        "APPENDQ_RATE_WINDOW_S": str(WINDOW_S),
        "APPENDQ_RATE_MARGIN_S": "0.1",
        "APPENDQ_LIVEVOX_CONNECT_TIMEOUT_S": "0.5",
        "APPENDQ_LIVEVOX_READ_TIMEOUT_S": str(read_timeout_s),
        "APPENDQ_CALL_GRACE_S": "0.5",
        "APPENDQ_RETRY_BASE_S": "0.2",
        "APPENDQ_RETRY_CAP_S": "1",
        "APPENDQ_CAMPAIGN_CACHE_S": "1",
        # 900 s by default: a dialect whose rate-limit answer is a 409 (strict) would hold the
        # campaign past the settle phase; scaled down like the window
        "APPENDQ_CAMPAIGN_REFUSAL_S": str(CAMPAIGN_REFUSAL_S),
        "APPENDQ_BATCH_MAX": str(batch_max),
        "APPENDQ_LOG_LEVEL": "WARNING",
    }


def settings_from_env(env: dict[str, str]) -> Settings:
    """The Settings the workers build from ``env``: the scraper and producer use the same."""
    return Settings.model_validate({k.removeprefix("APPENDQ_").lower(): v for k, v in env.items()})


def lease_ttl_s(settings: Settings) -> float:
    """``appendq.drain.tick.lease_ttl_s`` for these settings: 2 x call deadline + interval, <= 60
    s."""
    return min(settings.call_deadline_s * 2 + settings.drain_interval_s, 60.0)


@dataclass
class Plan:
    """Everything random about one trial's first-generation faults, drawn from its seed."""

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
        faults = [
            (at(), rng.choice(FAULT_NAMES), rng.choice([1, 1, 2])) for _ in range(rng.randint(0, 3))
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

    @property
    def total(self) -> int:
        return sum(n for _, n in self.submissions)

    def summary(self) -> str:
        parts = [f"batch {self.batch_max}", f"{len(self.workers)} worker(s)"]
        parts += [f"crash@{c}" for _, c in self.workers if c]
        parts += [f"kill x{len(self.kills)}"] if self.kills else []
        parts += [f"{name} x{times}" for _, name, times in self.faults]
        parts += ["redis restart"] if self.redis_restart else []
        return ", ".join(parts)


@dataclass(frozen=True)
class LongStall:
    at: float
    stall_s: float
    apply: bool  # True: processed, then the stall; False: the stall, then processed (late)
    times: int


@dataclass(frozen=True)
class OperatorRace:
    at: float  # preview (as soon as something is retryable from then on)
    wait_s: float  # between preview and confirmation, while ticks run


@dataclass
class FencePlan:
    """The faults of issue 8, drawn from the trial's own ``fence`` generator."""

    #: (at s, frozen for s past the lease TTL, one of FREEZE_MODES)
    freeze: tuple[float, float, str] | None = None
    read_timeout_s: float = READ_TIMEOUT_S
    stalls: list[LongStall] = field(default_factory=list)
    operator: list[OperatorRace] = field(default_factory=list)
    #: (at s, serials of TARGET leads whose phone1 a PINNED lead reuses)
    pinned: list[tuple[float, list[int]]] = field(default_factory=list)

    @classmethod
    def draw(cls, rng: random.Random, plan: Plan, force: frozenset[str] = frozenset()) -> FencePlan:
        """Each kind with its probability, or always when named in ``force`` (the same draws
        are made either way, so forcing one kind leaves the others as they were)."""
        d = plan.duration

        def drawn(kind: str, p: float) -> bool:
            return rng.random() < p or kind in force

        def at() -> float:
            return round(rng.uniform(0, d), 2)

        fence = cls()
        if drawn("freeze", 0.3):
            fence.freeze = (at(), rng.uniform(0.5, 4.0), rng.choice(FREEZE_MODES))
        if drawn("long-calls", 0.3):
            fence.read_timeout_s = LONG_READ_TIMEOUT_S
            top = LONG_READ_TIMEOUT_S - 0.1
            fence.stalls = sorted(
                (
                    LongStall(
                        at(),
                        round(rng.uniform(WINDOW_S + 0.1, top), 2),
                        rng.random() < 0.5,
                        rng.choice([1, 1, 2]),
                    )
                    for _ in range(rng.randint(1, 3))
                ),
                key=lambda s: s.at,
            )
        extra = [at() for _ in range(rng.randint(1, 2))] if drawn("operator", 0.3) else []
        fence.operator = [
            OperatorRace(t, round(rng.uniform(0, OPERATOR_WAIT_MAX_S), 2))
            for t in sorted([*plan.operator, *extra])
        ]
        if drawn("two-targets", 0.3):
            fence.pinned = _pinned(rng, plan.total, at)
        return fence

    @property
    def long_calls(self) -> bool:
        return bool(self.stalls)

    def summary(self) -> str:
        parts = []
        if self.freeze:
            parts.append(f"freeze@{self.freeze[2]} +{self.freeze[1]:.1f}s past TTL")
        if self.stalls:
            late = sum(not s.apply for s in self.stalls)
            parts.append(f"long calls x{len(self.stalls)} ({late} late)")
        parts += [f"operator x{len(self.operator)}"] if self.operator else []
        if self.pinned:
            parts.append(f"two targets ({sum(len(s) for _, s in self.pinned)} phones)")
        return ", ".join(parts)


def _pinned(rng: random.Random, total: int, at: Any) -> list[tuple[float, list[int]]]:
    """One or two submissions to PINNED, reusing phones of TARGET leads (sent before or after)."""
    serials = rng.sample(range(1, total + 1), rng.randint(1, min(total, PINNED_MAX)))
    if len(serials) > 1 and rng.random() < 0.5:
        cut = rng.randint(1, len(serials) - 1)
        return sorted([(at(), serials[:cut]), (at(), serials[cut:])])
    return [(at(), serials)]
