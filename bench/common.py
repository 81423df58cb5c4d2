"""Scratch resources for benchmarks: a database, a Redis prefix and a simulator process, all
created for the run and removed after it."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from appendq.db.engine import migrate, psycopg_url
from appendq.queue.item import QueuedRecord, new_record_id
from tests.support.procs import simulator

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"appendq_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(psycopg_url(PG_SERVER), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    try:
        migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def scratch_prefix() -> Iterator[str]:
    prefix = f"appendq-bench-{uuid.uuid4().hex[:8]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()


@contextmanager
def scratch_simulator(*args: str) -> Iterator[str]:
    with TemporaryDirectory() as tmp, simulator(Path(tmp) / "sim.log", *args) as url:
        yield url


def lead(i: int) -> dict[str, str]:
    return {
        "phone1": f"212{2000000 + i % 8000000:07d}",
        "account": f"B{i:08d}",
        "firstName": f"First{i}",
        "lastName": f"Last{i}",
        "extra1": "campaign-x",
    }


def queued(n: int, start: int = 0) -> list[QueuedRecord]:
    now = time.time()
    return [QueuedRecord(new_record_id(), now, lead(start + i)) for i in range(n)]


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def row(name: str, value: str, baseline: str, ratio: str) -> None:
    print(f"{name:<46} {value:>16} {baseline:>16} {ratio:>9}")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used (/proc/PID/stat); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def cpu_of(names: tuple[str, ...]) -> float:
    """CPU seconds used so far by every live process whose command is one of ``names`` (e.g.
    ``postgres``: the server and its backends), whoever started them."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.find("(") + 1 : text.rfind(")")] in names:
            total += cpu_s(int(stat.parent.name))
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every core (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICKS_PER_S, sum(values[:8]) / _TICKS_PER_S
