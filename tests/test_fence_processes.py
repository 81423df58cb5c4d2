"""The lease-expiry race of issue "Fence every drain" with real processes: a worker frozen in the
middle of a reconciliation (SIGSTOP) past its drain lease, a standby worker taking over and
re-sending the batch, then the frozen one waking up with its stale verdict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from appendq.db.models import Batch, BatchStatus, Event
from appendq.drain import drain_once, lease_ttl_s
from appendq.records import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.procs import ROOT, env_for, process, run_cli, simulator, wait_until, worker_env

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


def test_a_frozen_worker_wakes_up_fenced_off(
    tmp_path: Path, database_url: str, prefix: str
) -> None:
    # Given batch X in_doubt (nothing landed) and worker A frozen (SIGSTOP) while it reads X's
    # transaction list, When A's lease expires, standby worker B reconciles X, re-sends it (it
    # lands, the answer is lost again) and A then wakes (SIGCONT) holding "none landed", Then A
    # never moves or sends X: LiveVox holds X's records exactly once, and X ends appended.
    with simulator(tmp_path / "sim.log", "--rate-window-s", "3") as url:
        env = worker_env(
            database_url,
            prefix,
            url,
            tmp_path / "state",
            APPENDQ_LIVEVOX_CONNECT_TIMEOUT_S="0.5",
            APPENDQ_LIVEVOX_READ_TIMEOUT_S="3",
            APPENDQ_CALL_GRACE_S="0",
            APPENDQ_LOG_LEVEL="WARNING",
        )
        run_cli(["migrate"], env)
        settings = Settings(
            database_url=database_url,
            redis_prefix=prefix,
            livevox_base_url=url,
            rate_window_s=3.0,
            livevox_connect_timeout_s=0.5,
            livevox_read_timeout_s=3.0,
            call_grace_s=0.0,
        )
        admin = httpx.Client(base_url=url, timeout=10)
        rt = Runtime.build(settings)
        try:
            rt.queue.push("service:1001", leads(2, 0))  # W: a 204 calibrates the list
            assert drain_once(rt.drainer()).outcome == "appended"
            rt.queue.push("service:1001", leads(3, 10))  # X
            fault(admin, "append", {"drop": True, "apply": False})
            assert drain_once(rt.drainer()).outcome == "in_doubt"
            with rt.sessions() as session:
                x = max(session.scalars(select(Batch.id)))
            time.sleep(3.7)  # past X's call deadline
            fault(admin, "transactions", {"stall_s": 5.0, "apply": True})  # read now, answer late
            a_log = tmp_path / "worker-a.log"
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
            accounts = sorted(
                r["account"] for r in admin.get("/_admin/campaigns/5001/records").json()
            )
            assert accounts == ["P0", "P1", "P10", "P11", "P12"]
            assert sends(rt, x) == 2  # A's first send and B's re-send: A never sent it again
            woke = a_log.read_text()
            assert "lease" in woke or "fenced off a stale writer" in woke, woke[-2000:]
        finally:
            rt.close()


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
import appendq.drain as drain
def stop_here(name):
    if name == "after_sending":
        os.kill(os.getpid(), signal.SIGSTOP)   # frozen: every thread, the lease watchdog too
drain.crashpoint = stop_here
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
    with simulator(tmp_path / "sim.log", "--rate-window-s", "3") as url:
        env = worker_env(
            database_url,
            prefix,
            url,
            tmp_path / "state",
            APPENDQ_LIVEVOX_CONNECT_TIMEOUT_S="0.5",
            APPENDQ_LIVEVOX_READ_TIMEOUT_S="0.5",
            APPENDQ_CALL_GRACE_S="0.5",
            APPENDQ_DRAIN_INTERVAL_S="0.2",
        )
        run_cli(["migrate"], env)
        settings = Settings(
            database_url=database_url,
            redis_prefix=prefix,
            livevox_base_url=url,
            rate_window_s=3.0,
            livevox_connect_timeout_s=0.5,
            livevox_read_timeout_s=0.5,
            call_grace_s=0.5,
            drain_interval_s=0.2,
        )
        rt = Runtime.build(settings)
        try:
            rt.queue.push("service:1001", leads(2, 0))  # W: a 204 calibrates the list
            assert drain_once(rt.drainer()).outcome == "appended"
            rt.queue.push("service:1001", leads(3, 10))  # X
            child = subprocess.Popen(
                [sys.executable, "-c", FROZEN_AFTER_SENDING],
                env=env_for(env),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_until(lambda: _state(child.pid) == "T", 30, "worker A frozen")
                wait_until(
                    lambda: drain_once(rt.drainer()).outcome == "appended", 30, "B re-sends X"
                )
            finally:
                os.kill(child.pid, signal.SIGCONT)
            out, _ = child.communicate(timeout=30)
            assert "woke: fenced" in out.decode(), out.decode()[-2000:]
            admin = httpx.Client(base_url=url, timeout=10)
            accounts = sorted(
                r["account"] for r in admin.get("/_admin/campaigns/5001/records").json()
            )
            assert accounts == ["P0", "P1", "P10", "P11", "P12"]
        finally:
            rt.close()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split()[2]
