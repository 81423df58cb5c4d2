"""LiveVox misbehaving: a 403, LiveVox down entirely, a refusal naming no record. The drain runs
in-process (``drain_once``) against real Redis, real PostgreSQL and the simulator over HTTP; every
scenario ends with the invariants of ``tests.support.invariants``.

Dialects (issue 9): the fault scenarios whose outcome depends on how LiveVox answers its
unconfirmed corners (lost answers, its rate-limit answer, 401, a stopped campaign, a poison record)
run under every preset in ``tests.test_dialect_faults`` (helpers: ``tests.support.drive``). The
ones here play a scripted fault whose answer no dialect changes: the 403 also runs where a 403 means
something else too (strict: a campaign refusal; legacy: the rate limit, and unversioned paths),
the others under the default dialect only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from appendq.db.models import BatchStatus, Event
from appendq.drain.tick import drain_once
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.simulator.config import SimConfig
from appendq.simulator.server import SimServer
from appendq.simulator.state import SimulatorState
from tests.conftest import Sim, batches, make_settings, settings_env
from tests.support.dialects import client_env, client_overrides
from tests.support.drive import (
    CAMPAIGN,
    SERVICE,
    WINDOW_S,
    drain_until,
    fast_settings,
    invariants,
)
from tests.support.invariants import enqueue, make_leads
from tests.support.procs import free_port, run_cli


@pytest.fixture
def dialect() -> str:
    """The simulator's dialect preset; a test parametrized on ``dialect`` plays each."""
    return "default"


@pytest.fixture
def sim3(sim: Sim, dialect: str) -> Sim:
    """The in-thread simulator with a 3 s rate window, like the settings, in ``dialect``."""
    sim.reset(rate_window_s=WINDOW_S, dialect={"preset": dialect})
    return sim


@pytest.fixture
def client(settings: Settings, dialect: str) -> Settings:
    """``settings`` as the client needs them for ``dialect``."""
    return settings.model_copy(update=client_overrides(dialect))


@pytest.fixture
def rt(sim3: Sim, client: Settings) -> Iterator[Runtime]:
    with Runtime.build(fast_settings(client)) as built:
        yield built


@pytest.mark.parametrize("dialect", ["default", "strict", "legacy"])
def test_403_holds_the_batch_and_halts_appends(sim3: Sim, client: Settings, dialect: str) -> None:
    # Given a LiveVox user that may not append (403 on the first Append, also where a 403 can
    # mean a campaign refusal or the rate limit) and a 4 s halt, When ticks keep running and more
    # records arrive, Then the batch is held with a configuration reason, no further Append call
    # is made while the halt lasts, `appendq status --json` says why; once the halt is over, a
    # probe goes out and everything is appended once.
    halt_s = 4.0
    with Runtime.build(fast_settings(client, halt_s=halt_s)) as rt:
        ids = enqueue(rt.settings, make_leads(3), SERVICE)
        sim3.fault("append", {"status": 403})
        first = drain_once(rt.drainer())
        halted_at = time.monotonic()
        assert first.outcome == "held", first
        assert "configuration" in (first.reason or ""), first.reason
        ids += enqueue(rt.settings, make_leads(3, start=3), SERVICE)
        while time.monotonic() - halted_at < halt_s - 1.5:
            drain_once(rt.drainer())
            time.sleep(0.1)
        assert [c["status"] for c in sim3.calls("append")] == [403], "an Append during the halt"
        held = batches(rt)[0]
        assert held.status == BatchStatus.HELD and "configuration" in (held.error_message or "")
        env = settings_env(rt.settings, APPENDQ_HALT_S=str(halt_s), **client_env(dialect))
        status = json.loads(run_cli(["status", "--json"], env).stdout)
        assert status["batches"].get("held") == 1, status
        assert "403" in json.dumps(status), f"status does not say why: {status}"
        drain_until(rt, ids, {"appended"}, 15, "the probe")
        summary = invariants(rt, sim3.url, ids)
    assert [c["status"] for c in summary.append_calls] == [403, 204, 204]
    assert summary.append_calls[1]["at"] - summary.append_calls[0]["at"] >= halt_s - 0.5


class _SwitchableServer(SimServer):
    """The simulator's server, remembering its connections so that stopping it cuts them all
    (like a LiveVox outage) while its state lives on for the restart."""

    def __init__(self, address: tuple[str, int], state: SimulatorState) -> None:
        self.connections: list[socket.socket] = []
        super().__init__(address, state)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        self.connections.append(conn)
        return conn, addr


class Outage:
    """A simulator on a fixed port that can go down (connections refused) and come back."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: _SwitchableServer | None = None

    def up(self) -> None:
        self.server = _SwitchableServer(("127.0.0.1", self.port), self.state)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def down(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for conn in server.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def outage() -> Iterator[Outage]:
    handle = Outage(SimulatorState(SimConfig(rate_window_s=WINDOW_S)))
    handle.up()
    yield handle
    handle.down()


def tick_for(rt: Runtime, seconds: float) -> None:
    """Tick every 0.05 s for ``seconds`` (the retry wait runs on PostgreSQL's clock)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        drain_once(rt.drainer())
        time.sleep(0.05)


def sent_at(rt: Runtime, batch_id: int) -> list[datetime]:
    """When the batch went ``sending``, each time, in order."""
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(Event.at)
                .where(Event.batch_id == batch_id, Event.to_status == "sending")
                .order_by(Event.at)
            )
        )


def test_livevox_down_the_batch_waits_with_backoff_then_is_appended(
    outage: Outage, database_url: str, prefix: str, tmp_path: Any
) -> None:
    # Given a drain that resolved today's campaign (cached), When LiveVox stops answering
    # (connection refused) and records arrive, Then their batch waits in retry_wait with growing
    # gaps between attempts (backoff), nothing is lost; When LiveVox is back, Then the batch is
    # appended once.
    base = make_settings(
        database_url=database_url,
        redis_prefix=prefix,
        livevox_base_url=outage.url,
        state_dir=str(tmp_path / "state"),
    )
    settings = fast_settings(
        base, campaign_cache_s=60.0, retry_base_s=0.5, retry_cap_s=2.0, retry_max_attempts=50
    )
    with Runtime.build(settings) as rt:
        ids = enqueue(settings, make_leads(3), SERVICE)
        assert drain_once(rt.drainer()).outcome == "appended"
        outage.down()
        ids += enqueue(settings, make_leads(3, start=3), SERVICE)
        assert drain_once(rt.drainer()).outcome == "retry_wait"
        tick_for(rt, 3.5)
        waiting = batches(rt)[1]
        assert waiting.status == BatchStatus.RETRY_WAIT, waiting.status
        assert waiting.attempts >= 2, waiting.attempts
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(sent_at(rt, waiting.id))]
        assert gaps and min(gaps) >= 0.45, f"attempts not backed off: {gaps}"
        outage.up()
        invariants(rt, outage.url, ids, settled=False)
        drain_until(rt, ids, {"appended"}, 10, "LiveVox back")
        summary = invariants(rt, outage.url, ids)
    assert [c["records"] for c in summary.append_calls] == [3, 3]


def test_a_refusal_naming_no_record_is_bisected_keeping_fifo(sim3: Sim, rt: Runtime) -> None:
    # Given 6 records and LiveVox refusing the batch's content three times without naming a
    # record (400), When ticks run, Then the batch is bisected (6 -> 3+3 -> 1+2), the single
    # record refused alone is rejected with the reason, the 5 others are appended once each, in
    # enqueue order, in 5 calls.
    ids = enqueue(rt.settings, make_leads(6), SERVICE)
    sim3.fault("append", {"status": 400}, times=3)
    drain_until(rt, ids, {"appended", "rejected"}, 30, "bisection")
    summary = invariants(rt, sim3.url, ids, expect={"appended", "rejected"})
    assert [summary.rows[i].status for i in ids] == ["rejected"] + ["appended"] * 5
    assert [r["account"] for r in sim3.records(CAMPAIGN)] == ["A1", "A2", "A3", "A4", "A5"]
    assert [c["records"] for c in summary.append_calls] == [6, 3, 1, 2, 3]
