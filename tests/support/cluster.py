"""Real ``appendq`` processes of one fault scenario: their environment (short ticks, windows and
timeouts) and a ``Cluster`` that always stops them and kills whatever is left of their process
groups, even when the test fails."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from contextlib import ExitStack
from pathlib import Path

from tests.conftest import REDIS_URL
from tests.support.procs import process


def scenario_env(
    *, database_url: str, prefix: str, sim_url: str, state_dir: Path, **extra: str
) -> dict[str, str]:
    """APPENDQ_* for subprocesses: short ticks and windows, 1 s timeouts (call deadline 7 s)."""
    env = {
        "APPENDQ_DATABASE_URL": database_url,
        "APPENDQ_REDIS_URL": REDIS_URL,
        "APPENDQ_REDIS_PREFIX": prefix,
        "APPENDQ_LIVEVOX_BASE_URL": sim_url,
        "APPENDQ_STATE_DIR": str(state_dir),
        "APPENDQ_DRAIN_INTERVAL_S": "0.3",
        "APPENDQ_RATE_WINDOW_S": "3",
        "APPENDQ_RATE_MARGIN_S": "0.2",
        "APPENDQ_LIVEVOX_CONNECT_TIMEOUT_S": "1",
        "APPENDQ_LIVEVOX_READ_TIMEOUT_S": "1",
        "APPENDQ_BATCH_MAX": "10",
    }
    env.update(extra)
    return env


class Cluster:
    """The appendq processes of one scenario (``appendq beat``, ``appendq worker``...), each in
    its own process group with its own log file; ``close()`` stops them all (SIGTERM, then
    SIGKILL) and kills what is left of their groups (e.g. an embedded beat orphaned by a crash)."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = env
        self._stack = ExitStack()
        self._groups: list[int] = []

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        proc = self._stack.enter_context(process(args, {**self.env, **env}, self.logs / name))
        self._groups.append(proc.pid)
        return proc

    def log(self, name: str) -> str:
        path = self.logs / name
        return path.read_text(errors="replace") if path.exists() else ""

    def tails(self, lines: int = 15) -> str:
        """The last ``lines`` of every process log, for a failure message."""
        return "".join(
            f"\n--- {p.name} ---\n" + "\n".join(self.log(p.name).splitlines()[-lines:])
            for p in sorted(self.logs.iterdir())
            if p.is_file()
        )

    def close(self) -> None:
        """kill -9 every group first (the scenario is over; its stores are thrown away), then
        reap the processes."""
        for pgid in self._groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self._stack.close()
