"""Real subprocesses for end-to-end and crash tests: the simulator, the worker, the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
APPENDQ = [sys.executable, "-m", "appendq"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(settings_env: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPENDQ_")}
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


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


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
def simulator(log: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process(["simulator", "--port", str(port), *extra], {}, log) as proc:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"simulator exited: {log.read_text()}")
            try:
                return httpx.get(f"{url}/_admin/state", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 15, "the simulator to answer")
        yield url
