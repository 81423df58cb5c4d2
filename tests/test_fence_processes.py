"""The lease-expiry race of issue "Fence every drain" with real processes: a worker frozen in the
middle of a reconciliation (SIGSTOP) past its drain lease, a standby worker taking over and
re-sending the batch, then the frozen one waking up with its stale verdict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from appendq.db.models import Batch, BatchStatus, Event
from appendq.drain.tick import drain_once, lease_ttl_s
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.support.poll import wait_until
from tests.support.procs import ROOT, env_for, process, run_cli, simulator, worker_env

pytestmark = pytest.mark.slow


def leads(n: int, start: int) -> list[QueuedRecord]:
    return [
        QueuedRecord(
            new_record_id(),
            time.time(),
            {"phone1": f"212{7000000 + start + i:07d}", "account": f"P{start + i}"},
        )
        for i in range(n)
    ]


@contextmanager
def calibrated_world(
    tmp_path: Path, database_url: str, prefix: str, log_level: str = "INFO", **timing: float
) -> Iterator[tuple[str, dict[str, str], Runtime]]:
    """A simulator process (3 s rate window), a migrated database, the workers' environment and a
    runtime of the test with the same ``timing`` settings (0.5 s connect timeout); batch W
    appended with a 204 (it calibrates the list) and batch X (3 records) queued after it."""
    with simulator(tmp_path / "sim.log", "--rate-window-s", "3") as url:
        timing = {"livevox_connect_timeout_s": 0.5, **timing}
        as_env = {f"APPENDQ_{name.upper()}": str(value) for name, value in timing.items()}
        env = worker_env(
            database_url, prefix, url, tmp_path / "state", APPENDQ_LOG_LEVEL=log_level, **as_env
        )
        run_cli(["migrate"], env)
        rt = Runtime.build(
            Settings(
                database_url=database_url,
                redis_prefix=prefix,
                livevox_base_url=url,
                rate_window_s=3.0,
                **timing,  # type: ignore[arg-type]
            )
        )
        try:
            rt.queue.push("service:1001", leads(2, 0))  # W
            assert drain_once(rt.drainer()).outcome == "appended"
            rt.queue.push("service:1001", leads(3, 10))  # X
            yield url, env, rt
        finally:
            rt.close()


def test_a_frozen_worker_wakes_up_fenced_off(
    tmp_path: Path, database_url: str, prefix: str
) -> None:
    # Given batch X in_doubt (nothing landed) and worker A frozen (SIGSTOP) while it reads X's
    # transaction list, When A's lease expires, standby worker B reconciles X, re-sends it (it
    # lands, the answer is lost again) and A then wakes (SIGCONT) holding "none landed", Then A
    # never moves or sends X: LiveVox holds X's records exactly once, and X ends appended.
    timing = {"livevox_read_timeout_s": 3.0, "call_grace_s": 0.0}
    with calibrated_world(tmp_path, database_url, prefix, "WARNING", **timing) as (url, env, rt):
        admin = httpx.Client(base_url=url, timeout=10)
        fault(admin, "append", {"drop": True, "apply": False})
        assert drain_once(rt.drainer()).outcome == "in_doubt"
        with rt.sessions() as session:
            x = max(session.scalars(select(Batch.id)))
        time.sleep(3.7)  # past X's call deadline
        fault(admin, "transactions", {"stall_s": 5.0, "apply": True})  # read now, answer late
        a_log = tmp_path / "worker-a.log"
        a_frozen_while_b_resends(tmp_path, env, rt, x, a_log)
        accounts = sorted(r["account"] for r in admin.get("/_admin/campaigns/5001/records").json())
        assert accounts == ["P0", "P1", "P10", "P11", "P12"]
        assert sends(rt, x) == 2  # A's first send and B's re-send: A never sent it again
        woke = a_log.read_text()
        assert "lease" in woke or "fenced off a stale writer" in woke, woke[-2000:]


def a_frozen_while_b_resends(
    tmp_path: Path, env: dict[str, str], rt: Runtime, x: int, a_log: Path
) -> None:
    """Worker A enters X's list read and is frozen (SIGSTOP) past its lease; worker B re-sends X
    (it lands, the answer is lost); A is woken (SIGCONT); X ends appended."""
    admin = httpx.Client(base_url=env["APPENDQ_LIVEVOX_BASE_URL"], timeout=10)
    with process(["worker"], {**env, "APPENDQ_STATE_DIR": str(tmp_path / "a")}, a_log) as a:
        wait_until(lambda: not faults(admin), 30, "worker A inside the list read")
        os.killpg(a.pid, signal.SIGSTOP)
        try:
            time.sleep(lease_ttl_s(rt.drainer()) + 1)  # A's lease runs out
            fault(admin, "append", {"drop": True, "apply": True})  # B's re-send lands
            b_env = {**env, "APPENDQ_STATE_DIR": str(tmp_path / "b")}
            with process(["worker"], b_env, tmp_path / "worker-b.log"):
                wait_until(
                    lambda: sends(rt, x) == 2 and status(rt, x) == BatchStatus.IN_DOUBT,
                    30,
                    "B's re-send of X, answer lost",
                )
                os.killpg(a.pid, signal.SIGCONT)
                wait_until(lambda: status(rt, x) == BatchStatus.APPENDED, 40, "X appended")
        finally:
            os.killpg(a.pid, signal.SIGCONT)


def fault(admin: httpx.Client, kind: str, spec: dict[str, object]) -> None:
    admin.post("/_admin/faults", json={"kind": kind, "fault": spec, "times": 1}).raise_for_status()


def faults(admin: httpx.Client) -> list[object]:
    found: list[object] = admin.get("/_admin/faults").json()["faults"]
    return found


def sends(rt: Runtime, batch_id: int) -> int:
    with rt.sessions() as session:
        return len(
            session.scalars(
                select(Event.id).where(Event.batch_id == batch_id, Event.to_status == "sending")
            ).all()
        )


def status(rt: Runtime, batch_id: int) -> BatchStatus:
    with rt.sessions() as session:
        row = session.get(Batch, batch_id)
        assert row is not None
        return row.status


FROZEN_AFTER_SENDING = r"""
import os, signal
import appendq.drain.tick as drain
import appendq.faults
def stop_here(name):
    if name == "after_sending":
        os.kill(os.getpid(), signal.SIGSTOP)   # frozen: every thread, the lease watchdog too
appendq.faults.crashpoint = stop_here
from appendq.runtime import Runtime
from appendq.settings import Settings
rt = Runtime.build(Settings())
print("woke:", drain.drain_once(rt.drainer()).outcome, flush=True)
"""


def test_a_worker_frozen_after_committing_sending_makes_no_call_when_it_wakes(
    tmp_path: Path, database_url: str, prefix: str
) -> None:
    # Given worker A frozen (SIGSTOP) right after committing batch X `sending`, before its PUT,
    # When a standby reaps X (in_doubt), reconciles it (calibrated: nothing landed) and re-sends
    # it, and A then wakes (SIGCONT), Then A makes no call (its slot is stale, its lease gone)
    # and records nothing: LiveVox holds X's records exactly once.
    timing = {"livevox_read_timeout_s": 0.5, "call_grace_s": 0.5, "drain_interval_s": 0.2}
    with calibrated_world(tmp_path, database_url, prefix, **timing) as (url, env, rt):
        child = subprocess.Popen(
            [sys.executable, "-c", FROZEN_AFTER_SENDING],
            env=env_for(env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: _state(child.pid) == "T", 30, "worker A frozen")
            wait_until(lambda: drain_once(rt.drainer()).outcome == "appended", 30, "B re-sends X")
        finally:
            os.kill(child.pid, signal.SIGCONT)
        out, _ = child.communicate(timeout=30)
        assert "woke: fenced" in out.decode(), out.decode()[-2000:]
        admin = httpx.Client(base_url=url, timeout=10)
        accounts = sorted(r["account"] for r in admin.get("/_admin/campaigns/5001/records").json())
        assert accounts == ["P0", "P1", "P10", "P11", "P12"]


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split()[2]
