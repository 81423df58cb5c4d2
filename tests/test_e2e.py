"""The whole path with real processes: ``appendq enqueue`` -> Redis -> ``appendq worker`` (Celery
worker + beat) -> the simulator over HTTP -> PostgreSQL audit."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.invariants import max_calls_in_window
from tests.support.procs import process, run_cli, simulator, wait_until, worker_env

pytestmark = pytest.mark.slow

TOTAL = 25_000
WINDOW_S = 3.0
MAX_CALLS = 5


def write_csv(path: Path, n: int) -> list[str]:
    accounts = [f"ACC{i:06d}" for i in range(n)]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["phone1", "account", "firstName", "phone2"])
        for i, account in enumerate(accounts):
            writer.writerow(
                [
                    f"(212) {200 + i // 10000}-{i % 10000:04d}",
                    account,
                    f"Lead{i}",
                    f"212555{i % 10000:04d};312{200 + i % 700}{i % 10000:04d}"
                    if i % 7 == 0
                    else "",
                ]
            )
    return accounts


def test_25000_records_end_to_end(tmp_path: Path, database_url: str, prefix: str) -> None:
    # Given 25,000 records enqueued with `appendq enqueue` before any worker runs, When
    # `appendq worker` (with beat, 0.5 s ticks, 5 calls per 3 s) drains them into the simulator,
    # Then LiveVox holds exactly those records once each, in enqueue order, from 3 calls of
    # 10,000/10,000/5,000, `appendq audit` shows each appended with its batch, and LiveVox's own
    # log shows no window with more than 5 calls.
    with simulator(tmp_path / "sim.log", "--rate-window-s", str(WINDOW_S)) as url:
        state = tmp_path / "state"
        env = worker_env(
            database_url,
            prefix,
            url,
            state,
            APPENDQ_RATE_WINDOW_S=str(WINDOW_S),
            APPENDQ_LOG_JSON="true",
            APPENDQ_LOG_LEVEL="DEBUG",
        )
        accounts = write_csv(tmp_path / "leads.csv", TOTAL)
        enqueued = run_cli(
            ["enqueue", str(tmp_path / "leads.csv"), "--service", "1001", "--json"], env
        )
        receipt = json.loads(enqueued.stdout)
        assert receipt["accepted"] == TOTAL and receipt["errors"] == []
        got, calls = drain_with_a_worker(url, env, tmp_path / "worker.log")
    assert [r["account"] for r in got] == accounts
    assert [c["records"] for c in calls] == [10_000, 10_000, 5_000]
    assert all(c["status"] == 204 for c in calls)
    assert max_calls_in_window([c["at"] for c in calls], WINDOW_S) <= MAX_CALLS
    assert_audited_in_three_batches(env, receipt["record_ids"])
    assert_logs_hold_no_phone_or_secret(
        (tmp_path / "worker.log").read_text() + enqueued.stderr, got
    )


def drain_with_a_worker(
    url: str, env: dict[str, str], log: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run `appendq worker` until the simulator holds TOTAL records: its records and Append
    calls."""
    admin = httpx.Client(base_url=url, timeout=30)
    with process(["worker"], env, log):
        wait_until(
            lambda: len(admin.get("/_admin/campaigns/5001/records").json()) >= TOTAL,
            90,
            "25,000 records at the simulator",
            interval=0.5,
        )
    got = admin.get("/_admin/campaigns/5001/records").json()
    calls = [c for c in admin.get("/_admin/calls").json() if c["kind"] == "append"]
    return got, calls


def assert_audited_in_three_batches(env: dict[str, str], record_ids: list[str]) -> None:
    """`appendq audit`: the first, a middle and the last record appended, each in its own batch;
    `appendq status`: 3 batches appended, nothing queued."""
    batches = set()
    for rec_id in (record_ids[0], record_ids[12_345], record_ids[-1]):
        found = json.loads(run_cli(["audit", "--record", rec_id, "--json"], env).stdout)["records"]
        assert [f["status"] for f in found] == ["appended"]
        batches.add(found[0]["batch_id"])
    assert len(batches) == 3
    status = json.loads(run_cli(["status", "--json"], env).stdout)
    assert status["batches"] == {"appended": 3}
    assert status["accounts"][0]["targets"][0]["queued"] == 0


def assert_logs_hold_no_phone_or_secret(log: str, got: list[dict[str, Any]]) -> None:
    """Every batch transition logged (3 x ready/sending/appended), and no full phone number of
    the records, nor the simulator's credentials."""
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert sum(e.get("event") == "batch_transition" for e in events) == 9
    phones = {r["phone1"] for r in got} | {p for r in got for p in r.get("phone2", [])}
    assert len(phones) > TOTAL
    leaked = [p for p in phones if p in log]
    assert leaked == [], f"{len(leaked)} full phone numbers in the logs, e.g. {leaked[:3]}"
    for secret in ("simulator-password", "simulator-token"):
        assert secret not in log
