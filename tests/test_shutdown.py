"""SIGTERM during a send: the worker lets the in-flight Append call finish, records its answer and
exits; nothing is left ``sending``."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.support.procs import process, run_cli, simulator, wait_until, worker_env

pytestmark = pytest.mark.slow


def test_sigterm_during_a_send_lets_the_call_finish(
    tmp_path: Path, database_url: str, prefix: str
) -> None:
    # Given a worker whose Append call LiveVox answers only after 3 s, When the worker gets
    # SIGTERM while the call is in flight, Then it waits for the answer, records the batch
    # appended, and exits cleanly; LiveVox holds the records once.
    with simulator(tmp_path / "sim.log", "--rate-window-s", "3") as url:
        env = worker_env(
            database_url, prefix, url, tmp_path / "state", APPENDQ_DRAIN_INTERVAL_S="0.3"
        )
        admin = httpx.Client(base_url=url, timeout=10)
        admin.post(
            "/_admin/faults", json={"kind": "append", "fault": {"stall_s": 3, "apply": True}}
        )
        (tmp_path / "leads.jsonl").write_text(
            "\n".join(
                json.dumps({"phone1": f"21240000{i:02d}", "account": f"S{i}"}) for i in range(5)
            )
            + "\n"
        )
        run_cli(["enqueue", str(tmp_path / "leads.jsonl"), "--service", "1001"], env)
        with process(["worker"], env, tmp_path / "worker.log") as proc:
            wait_until(
                lambda: any(c["kind"] == "append" for c in admin.get("/_admin/calls").json()),
                30,
                "the Append call",
            )
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(30) == 0
        records = admin.get("/_admin/campaigns/5001/records").json()
        status = json.loads(run_cli(["status", "--json"], env).stdout)
    assert [r["account"] for r in records] == [f"S{i}" for i in range(5)]
    assert status["batches"] == {"appended": 1}
