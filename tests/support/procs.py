"""Real subprocesses for end-to-end and crash tests: the simulator, the worker, the CLI, a
dedicated redis-server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from tests.support.poll import wait_until

__all__ = [
    "APPENDQ",
    "ROOT",
    "RedisServer",
    "env_for",
    "free_port",
    "http_process",
    "kill9",
    "process",
    "run_cli",
    "simulator",
    "stop",
    "wait_until",  # tests.support.poll's, for the modules that import it from here
    "worker_env",
]

ROOT = Path(__file__).resolve().parents[2]
APPENDQ = [sys.executable, "-m", "appendq"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(settings_env: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("APPENDQ_") or k == "APPENDQ_DATA_KEYS"
    }
    env.update(settings_env)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    args: list[str], env: Mapping[str, str], *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*APPENDQ, *args],
        env=env_for(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"appendq {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


@contextmanager
def process(
    args: list[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``appendq ARGS`` in its own process group; stop it (SIGTERM, then SIGKILL) after."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*APPENDQ, *args],
            env=env_for(env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


@contextmanager
def http_process(
    args: list[str], env: Mapping[str, str], log: Path, probe: str, what: str, timeout: float
) -> Iterator[subprocess.Popen[bytes]]:
    """``process(args, env, log)``, once a GET of the URL ``probe`` answers 200; an
    AssertionError (with the log) if the process exits first or ``timeout`` s pass."""
    with process(args, env, log) as proc:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{what} exited: {log.read_text()}")
            try:
                return httpx.get(probe, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout, f"{what} to answer")
        yield proc


@contextmanager
def simulator(log: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["simulator", "--port", str(port), *extra]
    with http_process(args, {}, log, f"{url}/_admin/state", "the simulator", 15):
        yield url


class RedisServer:
    """A dedicated ``redis-server`` on a free port with AOF fsynced on every write (as the compose
    file runs it), that a test or a chaos trial may kill -9 and restart on the same data."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.proc = subprocess.Popen(
            ["redis-server", *args, "--logfile", str(self.data / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            wait_until(answers, 30, "redis-server to answer", interval=0.05)
        finally:
            client.close()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def worker_env(
    database_url: str, prefix: str, sim_url: str, state: Path, **extra: str
) -> dict[str, str]:
    """``APPENDQ_*`` of a worker (or any command) on the test's stores and simulator: 0.5 s ticks,
    5 calls per 3 s (+0.2 s margin), beat's state under ``state``; ``extra`` on top."""
    return {
        "APPENDQ_DATABASE_URL": database_url,
        "APPENDQ_REDIS_PREFIX": prefix,
        "APPENDQ_LIVEVOX_BASE_URL": sim_url,
        "APPENDQ_DRAIN_INTERVAL_S": "0.5",
        "APPENDQ_RATE_WINDOW_S": "3",
        "APPENDQ_RATE_MARGIN_S": "0.2",
        "APPENDQ_STATE_DIR": str(state),
        **extra,
    }
