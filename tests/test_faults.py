"""LiveVox misbehaving: answers lost after the body was sent, 429, 500, 401, 403, a campaign
stopped mid-run, LiveVox down entirely, a poison record. The drain runs in-process
(``drain_once``) against real Redis, real PostgreSQL and the simulator over HTTP; every scenario
ends with the invariants of ``tests.invariants``."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Collection, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from appendq.db.models import BatchStatus, Event
from appendq.drain import DrainReport, drain_once
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.simulator.config import SimConfig
from appendq.simulator.server import SimServer
from appendq.simulator.state import SimulatorState
from tests.conftest import Sim, batches, make_settings, settings_env
from tests.invariants import all_final, check, enqueue, make_leads
from tests.procs import free_port, run_cli

CAMPAIGN = 5001
SERVICE = "service:1001"
WINDOW_S = 3.0


def fast_settings(base: Settings, **overrides: Any) -> Settings:
    """1 s connect and read timeouts (call deadline 7 s), batches of 10, short backoff."""
    values: dict[str, Any] = {
        "livevox_connect_timeout_s": 1.0,
        "livevox_read_timeout_s": 1.0,
        "batch_max": 10,
        "retry_base_s": 0.3,
        "retry_cap_s": 1.0,
        "rate_window_s": WINDOW_S,
        "rate_margin_s": 0.2,
    }
    values.update(overrides)
    return base.model_copy(update=values)


@contextlib.contextmanager
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.build(settings)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def sim3(sim: Sim) -> Sim:
    """The in-thread simulator with a 3 s rate window, like the settings."""
    sim.reset(rate_window_s=WINDOW_S)
    return sim


@pytest.fixture
def rt(sim3: Sim, settings: Settings) -> Iterator[Runtime]:
    with runtime(fast_settings(settings)) as built:
        yield built


def drain_until(
    rt: Runtime,
    ids: list[str],
    expect: Collection[str],
    timeout: float,
    what: str,
    pause: float = 0.1,
) -> list[DrainReport]:
    """Run ticks (like beat would, every ``pause`` s) until every one of ``ids`` is in
    PostgreSQL with one of the ``expect`` statuses; the reports."""
    reports: list[DrainReport] = []
    deadline = time.monotonic() + timeout
    while not all_final(rt.settings.database_url, ids, expect):
        if time.monotonic() > deadline:
            outcomes = [(r.outcome, r.reason) for r in reports[-5:]]
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; {outcomes}")
        reports.append(drain_once(rt.drainer()))
        time.sleep(pause)
    return reports


def path_of(rt: Runtime, batch_id: int) -> list[str]:
    """The statuses a batch went through, in order."""
    with rt.sessions() as session:
        events = session.scalars(
            select(Event).where(Event.batch_id == batch_id).order_by(Event.at, Event.id)
        )
        return [e.to_status for e in events]


def invariants(rt: Runtime, sim_url: str, ids: list[str], **kwargs: Any) -> Any:
    s = rt.settings
    return check(
        database_url=s.database_url,
        sim_url=sim_url,
        accepted=ids,
        prefix=s.redis_prefix,
        redis_url=s.redis_url,
        rate_max_calls=s.rate_max_calls,
        rate_window_s=WINDOW_S,
        **kwargs,
    )


#: Each way of losing the answer after LiveVox read the body, with whether the call was applied.
ANSWER_LOST: tuple[tuple[str, dict[str, Any], bool], ...] = (
    ("stall past the read timeout, applied", {"stall_s": 2.5, "apply": True}, True),
    ("500 after applying", {"status": 500, "apply": True}, True),
    ("500 without applying", {"status": 500}, False),
    ("connection dropped after applying", {"drop": True, "apply": True}, True),
    ("connection dropped without applying", {"drop": True, "apply": False}, False),
)


def test_an_answer_lost_after_the_body_was_sent_is_reconciled(sim: Sim, settings: Settings) -> None:
    # Given five services with 3 queued records each, and LiveVox losing the answer to the first
    # Append of each in its own way (stall past the read timeout, 500, dropped connection; applied
    # or not), When ticks run, Then each batch goes in_doubt, the campaign's transaction list
    # settles it: appended without a second call if it landed, else sent again exactly once; each
    # campaign holds its records once. (One scenario for the five: they share the 7 s wait.)
    sim.reset(
        rate_window_s=WINDOW_S,
        services=[{"id": 1001 + k, "name": f"S{k}"} for k in range(len(ANSWER_LOST))],
        campaigns=[
            {"id": CAMPAIGN + k, "serviceId": 1001 + k, "name": f"C{k}"}
            for k in range(len(ANSWER_LOST))
        ],
    )
    with runtime(fast_settings(settings)) as rt:
        ids: list[str] = []
        for k, (_, fault, _) in enumerate(ANSWER_LOST):
            ids += enqueue(rt.settings, make_leads(3, start=10 * k), f"service:{1001 + k}")
            sim.fault("append", fault)
        first = [drain_once(rt.drainer()) for _ in ANSWER_LOST]
        assert [r.outcome for r in first] == ["in_doubt"] * len(ANSWER_LOST), first
        drain_until(rt, ids, {"appended"}, 25, "reconciliation")
        summary = invariants(rt, sim.url, ids)
        for k, (name, _, applied) in enumerate(ANSWER_LOST):
            calls = [c for c in summary.append_calls if c["campaignId"] == CAMPAIGN + k]
            assert len(calls) == (1 if applied else 2), (name, calls)
            got = [r["account"] for r in sim.records(CAMPAIGN + k)]
            assert got == [f"A{10 * k + i}" for i in range(3)], (name, got)
            batch = next(b for b in batches(rt) if b.target == f"service:{1001 + k}")
            assert "in_doubt" in path_of(rt, batch.id), name
    assert len(sim.calls("transactions")) >= len(ANSWER_LOST)


def test_429_puts_the_batch_back_and_pauses_a_whole_window(sim3: Sim, rt: Runtime) -> None:
    # Given LiveVox answering the first Append with 429, When ticks run back to back, Then the
    # batch goes back to ready, no call is made for a whole rate window, and the batch is then
    # appended once.
    ids = enqueue(rt.settings, make_leads(5), SERVICE)
    sim3.fault("append", {"status": 429})
    assert drain_once(rt.drainer()).outcome == "ready"
    assert drain_once(rt.drainer()).outcome == "rate_limited"
    (batch,) = batches(rt)
    assert batch.status == BatchStatus.READY
    drain_until(rt, ids, {"appended"}, 15, "the batch appended after the pause")
    summary = invariants(rt, sim3.url, ids)
    calls = summary.append_calls
    assert [c["status"] for c in calls] == [429, 204]
    assert calls[1]["at"] - calls[0]["at"] >= WINDOW_S


@pytest.mark.parametrize("how", ["sessions expired", "401 on the append"])
def test_401_mid_run_logs_in_again_and_appends_once(sim3: Sim, rt: Runtime, how: str) -> None:
    # Given a drained batch, When LiveVox forgets every session (or answers an Append with 401),
    # Then the next tick logs in again and appends the next batch once; nothing lost or doubled.
    ids = enqueue(rt.settings, make_leads(3), SERVICE)
    assert drain_once(rt.drainer()).outcome == "appended"
    if how == "sessions expired":
        sim3.admin.post("/_admin/sessions/expire").raise_for_status()
    else:
        sim3.fault("append", {"status": 401})
    ids += enqueue(rt.settings, make_leads(3, start=3), SERVICE)
    drain_until(rt, ids, {"appended"}, 10, "both batches")
    invariants(rt, sim3.url, ids)
    assert [r["account"] for r in sim3.records(CAMPAIGN)] == [f"A{i}" for i in range(6)]
    assert len(sim3.calls("login")) == 2


def test_403_holds_the_batch_and_halts_appends(sim3: Sim, settings: Settings) -> None:
    # Given a LiveVox user that may not append (403 on the first Append) and a 4 s halt, When
    # ticks keep running and more records arrive, Then the batch is held with a configuration
    # reason, no further Append call is made while the halt lasts, `appendq status --json` says
    # why; once the halt is over, a probe goes out and everything is appended once.
    halt_s = 4.0
    with runtime(fast_settings(settings, halt_s=halt_s)) as rt:
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
        env = settings_env(rt.settings, APPENDQ_HALT_S=str(halt_s))
        status = json.loads(run_cli(["status", "--json"], env).stdout)
        assert status["batches"].get("held") == 1, status
        assert "403" in json.dumps(status), f"status does not say why: {status}"
        drain_until(rt, ids, {"appended"}, 15, "the probe")
        summary = invariants(rt, sim3.url, ids)
    assert [c["status"] for c in summary.append_calls] == [403, 204, 204]
    assert summary.append_calls[1]["at"] - summary.append_calls[0]["at"] >= halt_s - 0.5


def test_campaign_stopped_mid_run_holds_then_a_new_campaign_takes_the_records(
    sim3: Sim, settings: Settings
) -> None:
    # Given records appended to today's campaign (cached 1 s), When the campaign is Stopped and
    # more records arrive, Then they are held with a reason; When a new Playing campaign of the
    # service appears, Then they are appended there, once.
    with runtime(fast_settings(settings, campaign_cache_s=1.0)) as rt:
        ids = enqueue(rt.settings, make_leads(3), SERVICE)
        assert drain_once(rt.drainer()).outcome == "appended"
        sim3.patch_campaign(CAMPAIGN, status="STOPPED")
        ids += enqueue(rt.settings, make_leads(3, start=3), SERVICE)
        reports = drain_until(rt, ids[3:], {"held"}, 10, "the new records held")
        assert "no appendable campaign" in (reports[-1].reason or "")
        invariants(rt, sim3.url, ids, expect={"appended", "held"})
        sim3.create_second_campaign()
        drain_until(rt, ids, {"appended"}, 10, "the new campaign")
        invariants(rt, sim3.url, ids)
    assert [r["account"] for r in sim3.records(CAMPAIGN)] == ["A0", "A1", "A2"]
    assert [r["account"] for r in sim3.records(5002)] == ["A3", "A4", "A5"]


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
    with runtime(settings) as rt:
        ids = enqueue(settings, make_leads(3), SERVICE)
        assert drain_once(rt.drainer()).outcome == "appended"
        outage.down()
        ids += enqueue(settings, make_leads(3, start=3), SERVICE)
        assert drain_once(rt.drainer()).outcome == "retry_wait"
        down_until = time.monotonic() + 3.5
        while time.monotonic() < down_until:
            drain_once(rt.drainer())
            time.sleep(0.05)
        waiting = batches(rt)[1]
        assert waiting.status == BatchStatus.RETRY_WAIT, waiting.status
        assert waiting.attempts >= 2, waiting.attempts
        with rt.sessions() as session:
            sends = list(
                session.scalars(
                    select(Event.at)
                    .where(Event.batch_id == waiting.id, Event.to_status == "sending")
                    .order_by(Event.at)
                )
            )
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(sends)]
        assert gaps and min(gaps) >= 0.45, f"attempts not backed off: {gaps}"
        outage.up()
        invariants(rt, outage.url, ids, settled=False)
        drain_until(rt, ids, {"appended"}, 10, "LiveVox back")
        summary = invariants(rt, outage.url, ids)
    assert [c["records"] for c in summary.append_calls] == [3, 3]


def test_a_poison_record_is_rejected_alone_and_the_rest_appended(sim3: Sim, rt: Runtime) -> None:
    # Given 6 records of which one carries a value LiveVox refuses (400 naming the record), When
    # ticks run, Then that record alone is rejected with a reason and the 5 others are appended,
    # each once.
    records = make_leads(6)
    records[3]["extra1"] = "POISON"
    ids = enqueue(rt.settings, records, SERVICE)
    drain_until(rt, ids, {"appended", "rejected"}, 30, "isolation")
    summary = invariants(rt, sim3.url, ids, expect={"appended", "rejected"})
    poison = summary.rows[ids[3]]
    assert poison.status == "rejected" and poison.reason, poison
    assert [summary.rows[i].status for i in ids[:3] + ids[4:]] == ["appended"] * 5
    assert [r["account"] for r in sim3.records(CAMPAIGN)] == ["A0", "A1", "A2", "A4", "A5"]


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
