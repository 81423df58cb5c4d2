"""The moving parts of a chaos trial: ``appendq worker`` processes (started, killed, frozen) and
the scraper that reads the rate budget and ``appendq status`` all through a trial."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from appendq.ops import status
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.support.procs import APPENDQ, ROOT, env_for

#: ``appendq`` with the drain's crash points patched: at the point named by CHAOS_STOP_AT the
#: process SIGSTOPs itself, once (a freeze at an exact step of the drain, every thread with it).
STOPPING_APPENDQ = [
    APPENDQ[0],
    "-c",
    """
import os, signal
import appendq.faults as faults
point, real, done = os.environ.pop("CHAOS_STOP_AT"), faults.crashpoint, []
def crashpoint(name):
    if name == point and not done:
        done.append(name)
        os.kill(os.getpid(), signal.SIGSTOP)
    real(name)
faults.crashpoint = crashpoint
from appendq.cli import main
main(prog_name="appendq")
""",
]

log = logging.getLogger(__name__)

#: Worker log lines that show a drain stopped by the lease (counted per trial).
LEASE_LINES = {
    "leases found lost by the watchdog": "drain lease lost (",
    "drains stopped on a lost lease": "drain stopped:",
    "leases found expired at the tick's end": "drain lease had expired before the tick ended",
}


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    crash_at: str | None
    log: Path
    frozen: bool = False
    stop_at: str | None = None  # the drain step where it SIGSTOPs itself (once)

    def stopped(self) -> bool:
        """Whether the process is stopped (state T), e.g. by itself at ``stop_at``."""
        try:
            return (
                Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
            )
        except (OSError, IndexError):
            return False


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
        self.all_logs: list[Path] = []

    def start(self, crash_at: str | None = None, stop_at: str | None = None) -> Worker:
        self.started += 1
        env = {**self.env, "APPENDQ_STATE_DIR": str(self.logs / f"state-{self.started}")}
        if crash_at:
            env["APPENDQ_CRASH_AT"] = crash_at
        if stop_at:
            env["CHAOS_STOP_AT"] = stop_at
        path = self.logs / f"worker-{self.started}.log"
        self.all_logs.append(path)
        with path.open("ab") as log_file:
            proc = subprocess.Popen(
                [*(STOPPING_APPENDQ if stop_at else APPENDQ), "worker"],
                env=env_for(env),
                cwd=ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(proc, crash_at, path, stop_at=stop_at)
        self.running.append(worker)
        return worker

    @property
    def awake(self) -> list[Worker]:
        return [w for w in self.running if not w.frozen]

    def kill9(self, worker: Worker) -> None:
        _killpg(worker.proc, signal.SIGKILL)
        self.running.remove(worker)
        self.killed += 1

    def freeze(self, worker: Worker) -> None:
        """SIGSTOP the worker's whole process group (worker and beat): a frozen VM, a long GC."""
        with suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGSTOP)
        worker.frozen = True

    def thaw(self, worker: Worker) -> None:
        with suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGCONT)
        worker.frozen = False

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
            self.thaw(worker)
            _killpg(worker.proc, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for worker in self.running:
            with suppress(subprocess.TimeoutExpired):
                worker.proc.wait(max(deadline - time.monotonic(), 0.1))
            _killpg(worker.proc, signal.SIGKILL)
        self.running = []

    def lease_lines(self) -> Counter[str]:
        """How often the workers' logs say a drain stopped on its lease (see LEASE_LINES)."""
        found: Counter[str] = Counter()
        for path in self.all_logs:
            with suppress(OSError):
                text = path.read_text(errors="replace")
                for figure, line in LEASE_LINES.items():
                    found[figure] += text.count(line)
        return found


def _killpg(proc: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    if sig == signal.SIGKILL:
        proc.wait(10)


class Scraper:
    """A thread that reads what ``/metrics`` and ``appendq status`` read, every ``every_s``:
    ``RateLimiter.budget()`` each time, ``status.collect`` every ``collect_every``-th time.
    Failures (Redis restarted under it) are counted, never raised."""

    def __init__(self, settings: Settings, every_s: float = 0.05, collect_every: int = 5) -> None:
        self.settings = settings
        self.every_s = every_s
        self.collect_every = collect_every
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-scraper", daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        rt = Runtime.build(self.settings)
        try:
            n = 0
            while not self._stop.wait(self.every_s):
                n += 1
                self._scrape(rt, collect=n % self.collect_every == 0)
        finally:
            rt.close()

    def _scrape(self, rt: Runtime, *, collect: bool) -> None:
        try:
            rt.limiter.budget()
            self.counts["rate budget reads"] += 1
            if collect:
                status.collect(rt)
                self.counts["status reads"] += 1
        except Exception as exc:  # a restarted Redis: count it, go on
            self.counts["scrapes failed"] += 1
            log.debug("scrape failed: %s", exc)
