"""Bulkheads (issue "Contain every bad input", point 2): one target's trouble never stops another.
A poisoned target is set aside with its reason, visible in ``status``, ``targets`` and
``/metrics``, cleared by an operator with the audit recording who and why."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from appendq.drain import set_aside
from appendq.drain.tick import drain_once
from appendq.metrics import registry_for
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.conftest import Sim
from tests.support.poll import wait_until
from tests.support.procs import process, run_cli, simulator, worker_env


def poisoned(phone1: str, age_s: float) -> list[QueuedRecord]:
    """A record as a buggy older producer might have queued it (never through today's door)."""
    return [QueuedRecord(new_record_id(), time.time() - age_s, {"phone1": phone1})]


def healthy(n: int) -> list[QueuedRecord]:
    return [
        QueuedRecord(new_record_id(), time.time(), {"phone1": f"212{5000000 + i:07d}"})
        for i in range(n)
    ]


@pytest.mark.slow
def test_poisoned_targets_are_set_aside_and_the_healthy_one_drains(
    tmp_path: Path, database_url: str, prefix: str
) -> None:
    # Given, queued before a healthy service:1001, three poisoned targets (a pinned campaign
    # whose record PostgreSQL refuses, a malformed target name, a service whose campaign search
    # LiveVox refuses with a 403), When a real worker ticks, Then service:1001's records all land
    # within a few ticks, the three are set aside with their reasons (not the account halted),
    # and `appendq targets clear` puts one back, recorded with who and why.
    with simulator(tmp_path / "sim.log", "--rate-window-s", "3") as url:
        env = worker_env(
            database_url, prefix, url, tmp_path / "state", APPENDQ_CAMPAIGN_CACHE_S="0"
        )
        run_cli(["migrate"], env)
        rt = Runtime.build(_settings(env))
        try:
            _queue_poisoned_then_healthy(rt, url)
            admin = httpx.Client(base_url=url, timeout=10)
            with process(["worker"], env, tmp_path / "worker.log"):
                wait_until(
                    lambda: len(admin.get("/_admin/campaigns/5001/records").json()) >= 30,
                    20,
                    "service:1001's records at LiveVox",
                )
                wait_until(
                    lambda: len(set_aside.current(rt.redis, rt.keys)) == 3, 10, "three set aside"
                )
            aside = set_aside.current(rt.redis, rt.keys)
            assert {t: e.kind for t, e in aside.items()} == {
                "campaign:5001": "persist",
                "service:abc": "malformed",
                "service:1003": "search",
            }
            assert "403" in aside["service:1003"].reason
            _shown_everywhere(rt, env, set(aside))
            _cleared_by_an_operator(rt, env, set(aside))
        finally:
            rt.close()


def _queue_poisoned_then_healthy(rt: Runtime, sim_url: str) -> None:
    """The three poisoned targets (oldest first), then 30 healthy records of service:1001; the
    simulator refuses the next campaign search (service:1003's) with a 403."""
    rt.queue.push("campaign:5001", poisoned("2" * 40, 300))  # too long for its column
    rt.queue.push("service:abc", poisoned("2125550100", 200))
    rt.queue.push("service:1003", poisoned("2125550101", 100))
    rt.queue.push("service:1001", healthy(30))
    httpx.post(
        f"{sim_url}/_admin/faults",
        json={"kind": "search", "fault": {"status": 403}, "times": 1},
        timeout=10,
    ).raise_for_status()


def _shown_everywhere(rt: Runtime, env: dict[str, str], aside: set[str]) -> None:
    """`appendq status` shows the targets set aside (and no halt), /metrics the search one."""
    (default,) = json.loads(run_cli(["status", "--json"], env).stdout)["accounts"]
    assert default["halt"] is None
    shown = {r["target"]: r["set_aside"] for r in default["targets"] if r["set_aside"]}
    assert set(shown) == aside
    metrics = generate_latest(registry_for(rt)).decode()
    line = 'appendq_target_set_aside{account="default",kind="search",target="service:1003"} 1.0'
    assert line in metrics


def _cleared_by_an_operator(rt: Runtime, env: dict[str, str], aside: set[str]) -> None:
    """`appendq targets clear` puts service:1003 back; the history says who and why."""
    run_cli(
        ["targets", "clear", "service:1003", "--reason", "service fixed", "--actor", "ops"],
        env,
    )
    assert "service:1003" not in set_aside.current(rt.redis, rt.keys)
    history = json.loads(run_cli(["targets", "history", "--json"], env).stdout)
    assert history[0]["action"] == "cleared" and history[0]["actor"] == "ops"
    assert history[0]["reason"] == "service fixed"
    assert {h["target"] for h in history if h["action"] == "set_aside"} == aside


def _settings(env: dict[str, str]) -> Settings:
    return Settings(
        database_url=env["APPENDQ_DATABASE_URL"],
        redis_prefix=env["APPENDQ_REDIS_PREFIX"],
        livevox_base_url=env["APPENDQ_LIVEVOX_BASE_URL"],
        rate_window_s=3.0,
    )


def test_an_unreadable_queue_item_sets_its_target_aside_not_the_tick(sim: Sim, rt: Runtime) -> None:
    # Given a target whose queue holds an item that is not a record (written by something
    # else) beside a healthy target, When ticks run, Then the healthy target's records land on
    # the first tick, and the broken one is set aside (its claim unreadable), its item kept.
    rt.redis.rpush(rt.keys.queue("service:1002"), b"not json")
    rt.redis.sadd(rt.keys.targets, "service:1002")
    rt.queue.push("service:1001", healthy(5))
    outcomes = [drain_once(rt.drainer()).outcome for _ in range(3)]
    assert outcomes[0] == "appended"
    assert len(sim.records(5001)) == 5
    aside = set_aside.current(rt.redis, rt.keys)
    assert aside["service:1002"].kind == "malformed"
    assert rt.queue.depth("service:1002") == 1  # nothing dropped


def test_a_target_whose_records_keep_being_refused_is_set_aside(sim: Sim, rt: Runtime) -> None:
    # Given LiveVox refusing one record of service:1001 without naming it (bisection) and an
    # isolation budget of 2 refused calls, beside a healthy pinned target, When ticks run, Then
    # the refused batch is held once the budget is spent and service:1001 is set aside
    # ("refused"), so its refusals stop spending the account's calls; the other target lands.
    sim.reset(poison_phones=["2125009999"], dialect={"numbering": "none"})
    tight = Runtime.build(rt.settings.model_copy(update={"isolation_max_calls": 2}))
    try:
        records = [
            QueuedRecord(new_record_id(), time.time() - 60, {"phone1": f"212500{i:04d}"})
            for i in range(63)
        ] + [QueuedRecord(new_record_id(), time.time() - 59, {"phone1": "2125009999"})]
        tight.queue.push("service:1001", records)
        for _ in range(12):
            drain_once(tight.drainer())
            if "service:1001" in set_aside.current(tight.redis, tight.keys):
                break
        aside = set_aside.current(tight.redis, tight.keys)
        assert aside["service:1001"].kind == "refused"
        tight.queue.push("campaign:5001", healthy(4))
        for _ in range(3):
            drain_once(tight.drainer())
        landed = {r["phone1"] for r in sim.records(5001)}
        assert {f"212{5000000 + i:07d}" for i in range(4)} <= landed
        assert "2125009999" not in landed
    finally:
        tight.close()


def test_many_targets_keep_campaign_searches_within_the_budget(sim: Sim, rt: Runtime) -> None:
    # Given 40 targets with records (services LiveVox knows no campaign for) and a budget of 8
    # searches a minute, beside service:1001, When 5 ticks run, Then LiveVox sees at most 8
    # searches, the targets out of budget wait with the reason, and no tick fails.
    budgeted = Runtime.build(rt.settings.model_copy(update={"campaign_searches_per_minute": 8}))
    try:
        for service in range(2001, 2041):
            budgeted.queue.push(f"service:{service}", poisoned("2125550100", 100))
        outcomes = [drain_once(budgeted.drainer()).outcome for _ in range(5)]
        assert "error" not in outcomes and "set_aside" not in outcomes
        assert len(sim.calls("search")) <= 8
        assert set_aside.current(budgeted.redis, budgeted.keys) == {}
    finally:
        budgeted.close()


@pytest.mark.parametrize(
    "item",
    [b'{"id":"x"}', b'{"id":"0190a0a0-0000-7000-8000-000000000001","t":1.0,"r":{}}', b"[1]"],
)
def test_a_queue_item_that_is_json_but_no_record_sets_only_its_target_aside(
    sim: Sim, rt: Runtime, item: bytes
) -> None:
    # Given service:1002's queue holding valid JSON that is not a queued record, beside a healthy
    # target, When ticks run, Then no tick fails, the healthy records land, and service:1002 is
    # set aside as malformed with its item kept.
    rt.redis.rpush(rt.keys.queue("service:1002"), item)
    rt.redis.sadd(rt.keys.targets, "service:1002")
    rt.queue.push("service:1001", healthy(2))
    outcomes = [drain_once(rt.drainer()).outcome for _ in range(4)]
    assert "appended" in outcomes
    assert len(sim.records(5001)) == 2
    assert set_aside.current(rt.redis, rt.keys)["service:1002"].kind == "malformed"
    assert rt.queue.depth("service:1002") == 1


def test_a_refused_login_is_tried_once_per_tick_not_once_per_target(sim: Sim, rt: Runtime) -> None:
    # Given five targets with records and a wrong password, When one tick runs, Then LiveVox sees
    # one refused login, not one per target (repeated refusals can lock a LiveVox user).
    from pydantic import SecretStr

    for n, target in enumerate(["service:1001", "campaign:5001", "service:1002", "service:1003"]):
        rt.queue.push(target, poisoned(f"21255502{n:02d}", 10 + n))
    bad = Runtime.build(rt.settings.model_copy(update={"livevox_password": SecretStr("wrong")}))
    try:
        drain_once(bad.drainer())
    finally:
        bad.close()
    assert len(sim.calls("login")) == 1
