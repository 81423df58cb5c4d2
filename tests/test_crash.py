"""kill -9 of a real ``appendq worker`` at each of the four points of a drain tick.

``APPENDQ_CRASH_AT=<point>`` makes the worker SIGKILL itself there (``appendq.faults``); a
separate ``appendq beat`` keeps ticking throughout, as in production, and a second worker without
the variable picks up what the first left behind. The simulator runs in the test process (so the
test can read and script it); every scenario ends with the invariants of
``tests.support.invariants``.

Dialects (issue 9) in a rotation, not a product: real processes and the call deadline make each
crash case cost 10-17 s, so every case under every preset (7 x 7) would add some 10 minutes to
CI (the limit is 20 for the whole suite). Each case runs under one preset instead, every preset
is crashed at least once, and where the dialect decides the outcome the case is chosen so that it
does: a process that died mid-call (after ``sending``, after the 204) leaves a batch that a list
settles where it can (quiet: after its 5 s lag; java: phones under "phones", partly landed) and
that is held for an operator, never sent again, where it cannot (legacy: appended records never
shown; unreadable: no phones). The points before any call (claim, persist) do not depend on the
dialect; they take the presets left (dotnet, strict), whose status words, search pages and login
the worker still meets. The dialect-dependent scenarios without processes run under every preset
in ``tests.test_dialect_faults``. The processes run with a 2 s call grace (a 4 s call deadline,
not 7 s): a case that crashed mid-call waits two deadlines before its batch is reconciled.
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

from appendq.batches import reads
from appendq.db.engine import psycopg_url
from appendq.keys import Keys
from appendq.livevox.client import LiveVoxClient
from appendq.queue.item import QueuedRecord
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import REDIS_URL, Sim
from tests.support.dialects import client_env, client_overrides, held_because, list_settles
from tests.support.drive import drain_until
from tests.support.invariants import all_final, enqueue, make_leads, wait_for
from tests.support.scene import Scene, staged

pytestmark = pytest.mark.slow

CAMPAIGN = 5001
SERVICE = "service:1001"
CALL_DEADLINE_S = 4.0  # 1 s connect + 1 s read + 2 s grace (APPENDQ_CALL_GRACE_S)


class CrashScene(Scene):
    """A scene whose own settings match its processes' (batches of 10, 1 s timeouts), with a
    worker that crashes on purpose and a look into PostgreSQL and the in-flight list."""

    def __init__(self, sim: Sim, database_url: str, prefix: str, tmp: Path) -> None:
        super().__init__(sim, database_url, prefix, tmp)
        self.settings: Settings = self.settings_with(
            batch_max=10,
            livevox_connect_timeout_s=1.0,
            livevox_read_timeout_s=1.0,
            call_grace_s=CALL_DEADLINE_S - 2.0,
        )
        self.cluster.env["APPENDQ_CALL_GRACE_S"] = str(CALL_DEADLINE_S - 2.0)

    def play(self, dialect: str) -> None:
        """Have the simulator play ``dialect``, the test and its processes talk to it."""
        self.sim.dialect(preset=dialect)
        self.settings = self.settings.model_copy(update=client_overrides(dialect))
        self.cluster.env.update(client_env(dialect))

    def calibrate(self) -> list[str]:
        """Append 2 records (accounts A100, A101) in-process before any worker runs: a batch
        LiveVox answered 204, without which "none landed" is never believed; their ids."""
        ids = enqueue(self.settings, make_leads(2, start=100), SERVICE)
        with Runtime.build(self.settings) as rt:
            drain_until(rt, ids, {"appended"}, 20, "the calibration batch appended")
        return ids

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
def dialect() -> str:
    """The simulator's dialect preset; each test is parametrized with its share of the rotation."""
    return "default"


@pytest.fixture
def scene(
    sim: Sim, database_url: str, prefix: str, tmp_path: Path, dialect: str
) -> Iterator[CrashScene]:
    with staged(CrashScene, sim, database_url, prefix, tmp_path) as built:
        built.play(dialect)
        built.cluster.start("beat.log", ["beat"])
        yield built


@pytest.mark.parametrize("dialect", ["dotnet"])
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


@pytest.mark.parametrize("dialect", ["strict"])
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


def _append_directly(scene: CrashScene, batch_id: int, count: int) -> None:
    """What a dying worker's request may have delivered: the first ``count`` records of the
    batch, appended to LiveVox by someone else (the session is shared, so no logout). The
    payloads are decrypted with the workers' key (their state dir holds it, unless configured)."""
    state_dir = scene.cluster.env["APPENDQ_STATE_DIR"]
    own = scene.settings.model_copy(update={"state_dir": state_dir})
    with Runtime.build(own) as rt, rt.sessions() as session:
        payloads = reads.batch_payloads(session, batch_id)
    with LiveVoxClient(scene.settings, logout_on_close=False) as client:
        client.append(CAMPAIGN, payloads[:count])


def _path(scene: CrashScene, batch_id: int) -> list[str]:
    """The statuses batch ``batch_id`` went through, in order."""
    query = "SELECT to_status FROM events WHERE batch_id = :b ORDER BY id"
    return [s for (s,) in scene.sql(query, b=batch_id)]


def _held(scene: CrashScene, batch_id: int) -> tuple[str, dict[str, Any]]:
    """(reason, evidence) of the event that held batch ``batch_id`` for an operator."""
    query = "SELECT reason, detail FROM events WHERE batch_id = :b AND to_status = 'operator_hold'"
    (reason, detail) = scene.sql(query, b=batch_id)[0]
    return str(reason or ""), dict(detail)


def _reaped_after_the_deadline(scene: CrashScene, batch_id: int) -> None:
    """The batch went ready, sending, in_doubt, and in_doubt no sooner than the call deadline
    after sending."""
    path = _path(scene, batch_id)
    assert path[:3] == ["ready", "sending", "in_doubt"], path
    times = dict(
        scene.sql(
            "SELECT to_status, min(extract(epoch FROM at)) FROM events WHERE batch_id = :b "
            "GROUP BY to_status",
            b=batch_id,
        )
    )
    assert times["in_doubt"] - times["sending"] >= CALL_DEADLINE_S, "reaped before the deadline"


@pytest.mark.parametrize(
    ("dialect", "landed", "final"),
    [("quiet", 0, "appended"), ("java", 4, "held"), ("legacy", 0, "held")],
)
def test_kill_after_sending_in_doubt_is_reconciled(
    scene: CrashScene, dialect: str, landed: int, final: str
) -> None:
    # Given a campaign that took a batch (204) and a batch of 8 records committed `sending`,
    # When the worker is killed -9 before the call (and, maybe, some of its records reach LiveVox
    # another way), Then the batch stays sending until the call deadline (4 s), then becomes
    # in_doubt and is reconciled against the campaign's transaction list: none there (a list
    # that shows the first batch, after its lag under quiet) -> sent once; some there -> held for
    # an operator with the evidence; a list that never shows appends (legacy) -> held, not sent.
    # (All there: the after_append test.)
    calibration = scene.calibrate()
    ids = enqueue(scene.settings, make_leads(8), SERVICE)
    scene.crash_at("after_sending")
    crashed = time.time()
    assert scene.sql("SELECT status FROM batches WHERE id = 2") == [("sending",)]
    if landed:
        _append_directly(scene, 2, landed)
    scene.cluster.start("worker.log", ["worker", "--no-beat"])
    wait_for(
        lambda: all_final(scene.database_url, ids, {final}), 40, f"batch {final}", scene.cluster
    )
    _reaped_after_the_deadline(scene, 2)
    if final == "held":
        time.sleep(2)  # a few more ticks: a held batch must not go out again by itself
        reason, detail = _held(scene, 2)
        assert detail["present"] == landed and len(detail["missing_ids"]) == 8 - landed, detail
        why = f"{landed} of 8 records found" if list_settles(dialect) else held_because(dialect)
        assert why in reason, reason
    summary = scene.check(calibration + ids, expect={"appended", final})
    sent = landed or (8 if final == "appended" else 0)
    after = [c["records"] for c in summary.append_calls if c["at"] > crashed]
    assert after == ([sent] if sent else []), after  # the dead worker's call never went out
    assert [r["account"] for r in scene.sim.records(CAMPAIGN)] == ["A100", "A101"] + [
        f"A{i}" for i in range(sent)
    ]


@pytest.mark.parametrize(("dialect", "final"), [("default", "appended"), ("unreadable", "held")])
def test_kill_after_the_204_before_recording_it_is_reconciled_not_resent(
    scene: CrashScene, dialect: str, final: str
) -> None:
    # Given 8 queued records, When the worker is killed -9 after LiveVox answered 204 but before
    # the batch was recorded appended, Then the batch stays sending, turns in_doubt after the call
    # deadline, and reconciliation finds every record at LiveVox: appended, never sent twice; a
    # list without readable phones (unreadable) proves nothing: held for an operator, not re-sent.
    ids = enqueue(scene.settings, make_leads(8), SERVICE)
    scene.crash_at("after_append")
    assert scene.sql("SELECT status FROM batches") == [("sending",)]
    assert [c["status"] for c in scene.sim.calls("append")] == [204]
    scene.cluster.start("worker.log", ["worker", "--no-beat"])
    wait_for(
        lambda: all_final(scene.database_url, ids, {final}), 40, f"batch {final}", scene.cluster
    )
    if final == "held":
        time.sleep(2)  # a few more ticks: a held batch must not go out again by itself
        assert held_because(dialect) in _held(scene, 1)[0]
    summary = scene.check(ids, expect={final})
    assert len(summary.append_calls) == 1
    batch_final = "appended" if final == "appended" else "operator_hold"  # records: "held"
    assert _path(scene, 1) == ["ready", "sending", "in_doubt", batch_final]
    assert [r["account"] for r in scene.sim.records(CAMPAIGN)] == [f"A{i}" for i in range(8)]
