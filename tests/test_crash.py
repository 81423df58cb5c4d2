"""kill -9 of a real ``appendq worker`` at each of the four points of a drain tick.

``APPENDQ_CRASH_AT=<point>`` makes the worker SIGKILL itself there (``appendq.faults``); a
separate ``appendq beat`` keeps ticking throughout, as in production, and a second worker without
the variable picks up what the first left behind. The simulator runs in the test process (so the
test can read and script it); every scenario ends with the invariants of ``tests.invariants``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from appendq.db.engine import psycopg_url
from appendq.keys import Keys
from appendq.livevox import LiveVoxClient
from appendq.records import QueuedRecord
from appendq.settings import Settings
from tests.conftest import REDIS_URL, Sim
from tests.invariants import all_final, enqueue, make_leads, wait_for
from tests.scene import Scene, staged

pytestmark = pytest.mark.slow

CAMPAIGN = 5001
SERVICE = "service:1001"
CALL_DEADLINE_S = 7.0  # 1 s connect + 1 s read + 5 s


class CrashScene(Scene):
    """A scene whose own settings match its processes' (batches of 10, 1 s timeouts), with a
    worker that crashes on purpose and a look into PostgreSQL and the in-flight list."""

    def __init__(self, sim: Sim, database_url: str, prefix: str, tmp: Path) -> None:
        super().__init__(sim, database_url, prefix, tmp)
        self.settings: Settings = self.settings_with(
            batch_max=10, livevox_connect_timeout_s=1.0, livevox_read_timeout_s=1.0
        )

    def crash_at(self, point: str) -> None:
        """Start a worker that kills itself with SIGKILL at ``point``; wait for it to die."""
        proc = self.cluster.start(
            "crashing-worker.log", ["worker", "--no-beat"], APPENDQ_CRASH_AT=point
        )
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the worker never reached {point}:\n{self.cluster.log('crashing-worker.log')}"
            ) from None
        assert proc.returncode == -signal.SIGKILL, proc.returncode

    def sql(self, query: str, **params: Any) -> list[Any]:
        engine = create_engine(psycopg_url(self.database_url), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(query), params).all())
        finally:
            engine.dispose()

    def in_flight(self) -> list[str]:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            items = client.lrange(Keys(self.prefix).inflight(SERVICE), 0, -1)
        finally:
            client.close()
        return [QueuedRecord.loads(item).id for item in items]


@pytest.fixture
def scene(sim: Sim, database_url: str, prefix: str, tmp_path: Path) -> Iterator[CrashScene]:
    with staged(CrashScene, sim, database_url, prefix, tmp_path) as built:
        built.cluster.start("beat.log", ["beat"])
        yield built


def test_kill_after_claim_the_next_worker_recovers_the_claim_first(scene: CrashScene) -> None:
    # Given 25 queued records (batches of 10), When the worker is killed -9 right after claiming
    # the first 10, Then they wait in Redis's in-flight list (nothing in PostgreSQL, nothing
    # sent); When a new worker starts, Then it persists and sends that claim first, and every
    # record is appended once, in enqueue order.
    ids = enqueue(scene.settings, make_leads(25), SERVICE)
    scene.crash_at("after_claim")
    assert scene.in_flight() == ids[:10]
    assert scene.sql("SELECT count(*) FROM records") == [(0,)]
    assert scene.sim.calls("append") == []
    scene.cluster.start("worker.log", ["worker", "--no-beat"])
    scene.appended(ids, 40)
    summary = scene.check(ids)
    assert [r["account"] for r in scene.sim.records(CAMPAIGN)] == [f"A{i}" for i in range(25)]
    assert [c["records"] for c in summary.append_calls] == [10, 10, 5]
    recovered = scene.sql(
        "SELECT batch_id FROM events WHERE from_status IS NULL AND detail ->> 'recovered' = 'true'"
    )
    assert recovered == [(1,)], recovered


def test_kill_after_persist_recovery_acks_and_sends_once(scene: CrashScene) -> None:
    # Given 25 queued records, When the worker is killed -9 after committing the first batch to
    # PostgreSQL but before acking it in Redis, Then the batch is ready in PostgreSQL and its
    # records still in flight; When a new worker starts, Then recovery finds them persisted,
    # acks without a second batch, and every record is appended once.
    ids = enqueue(scene.settings, make_leads(25), SERVICE)
    scene.crash_at("after_persist")
    assert scene.sql("SELECT id, status, size FROM batches") == [(1, "ready", 10)]
    assert scene.in_flight() == ids[:10]
    scene.cluster.start("worker.log", ["worker", "--no-beat"])
    scene.appended(ids, 40)
    summary = scene.check(ids)
    assert summary.batches == {"appended": 3}
    assert [c["records"] for c in summary.append_calls] == [10, 10, 5]
    assert [r["account"] for r in scene.sim.records(CAMPAIGN)] == [f"A{i}" for i in range(25)]
    assert scene.in_flight() == []


def _append_directly(scene: CrashScene, count: int) -> None:
    """What a dying worker's request may have delivered: the first ``count`` records of batch 1,
    appended to LiveVox by someone else (the session is shared, so no logout)."""
    payloads = [
        p for (p,) in scene.sql("SELECT payload FROM records WHERE batch_id = 1 ORDER BY position")
    ]
    with LiveVoxClient(scene.settings, logout_on_close=False) as client:
        client.append(CAMPAIGN, payloads[:count])


@pytest.mark.parametrize(("landed", "final"), [(0, "appended"), (4, "held")])
def test_kill_after_sending_in_doubt_is_reconciled(
    scene: CrashScene, landed: int, final: str
) -> None:
    # Given a batch of 8 records committed `sending`, When the worker is killed -9 before the
    # call (and, maybe, some of its records reach LiveVox another way), Then the batch stays
    # sending until the call deadline (7 s), then becomes in_doubt and is reconciled against the
    # campaign's transaction list: none of its records there -> sent once; some there -> held for
    # an operator with the evidence, not sent again. (All there: the after_append test.)
    ids = enqueue(scene.settings, make_leads(8), SERVICE)
    scene.crash_at("after_sending")
    crashed = time.time()
    assert scene.sql("SELECT status FROM batches") == [("sending",)]
    assert scene.sim.calls("append") == []
    if landed:
        _append_directly(scene, landed)
    scene.cluster.start("worker.log", ["worker", "--no-beat"])
    wait_for(
        lambda: all_final(scene.database_url, ids, {final}), 40, f"batch {final}", scene.cluster
    )
    path = [s for (s,) in scene.sql("SELECT to_status FROM events WHERE batch_id = 1 ORDER BY id")]
    assert path[:3] == ["ready", "sending", "in_doubt"], path
    times = dict(
        scene.sql(
            "SELECT to_status, min(extract(epoch FROM at)) FROM events WHERE batch_id = 1 "
            "GROUP BY to_status"
        )
    )
    assert times["in_doubt"] - times["sending"] >= CALL_DEADLINE_S, "reaped before the deadline"
    if final == "held":
        time.sleep(2)  # a few more ticks: a held batch must not go out again by itself
        (reason, detail) = scene.sql(
            "SELECT reason, detail FROM events WHERE batch_id = 1 AND to_status = 'held'"
        )[0]
        assert reason and detail["present"] == landed and len(detail["missing_ids"]) == 8 - landed
    summary = scene.check(ids, expect={final})
    calls = summary.append_calls
    assert len(calls) == 1, calls  # the dead worker's call never went out; only one did
    assert calls[0]["records"] == (landed or 8)
    assert all(c["at"] > crashed for c in calls)
    assert [r["account"] for r in scene.sim.records(CAMPAIGN)] == [
        f"A{i}" for i in range(landed or 8)
    ]


def test_kill_after_the_204_before_recording_it_is_reconciled_not_resent(scene: CrashScene) -> None:
    # Given 8 queued records, When the worker is killed -9 after LiveVox answered 204 but before
    # the batch was recorded appended, Then the batch stays sending, turns in_doubt after the call
    # deadline, and reconciliation finds every record at LiveVox: appended, never sent twice.
    ids = enqueue(scene.settings, make_leads(8), SERVICE)
    scene.crash_at("after_append")
    assert scene.sql("SELECT status FROM batches") == [("sending",)]
    assert [c["status"] for c in scene.sim.calls("append")] == [204]
    scene.cluster.start("worker.log", ["worker", "--no-beat"])
    scene.appended(ids, 40)
    summary = scene.check(ids)
    assert len(summary.append_calls) == 1
    path = [s for (s,) in scene.sql("SELECT to_status FROM events WHERE batch_id = 1 ORDER BY id")]
    assert path == ["ready", "sending", "in_doubt", "appended"], path
