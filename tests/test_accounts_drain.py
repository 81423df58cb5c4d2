"""Several LiveVox accounts in one process: each drains into its own client's campaigns with its
own lease, rate budget and halt, and one account's trouble never stops another's drain. The
Celery side: one beat entry and one tick queue per account, workers pinned with --accounts.
Real Redis and PostgreSQL; the simulator over HTTP hosting two clients."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from appendq.cli.app import main
from appendq.cli.worker import _worker_argv
from appendq.db.models import Batch, BatchStatus
from appendq.drain.context import Tick
from appendq.drain.lease import DrainLease
from appendq.drain.tick import drain_once, lease_ttl_s
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.queue.record_queue import RecordQueue
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.simulator.config import seeded_clients
from tests.conftest import Sim, phone, settings_env
from tests.support.accounts import accounts_text
from tests.support.drive import fast_settings
from workers.celery_app import create_app
from workers.tasks import DRAIN_TASK

TARGET = "service:1001"
ACME_TARGET = "service:1101"  # ACME's service in the seeded simulator (campaign 5101)


@pytest.fixture
def rt(settings: Settings, sim: Sim, tmp_path: Path) -> Iterator[Runtime]:
    sim.reset(**seeded_clients(["SIMCLIENT", "ACME"]), rate_window_s=60)
    path = tmp_path / "accounts.toml"
    path.write_text(
        accounts_text(settings.livevox_base_url, {"default": "SIMCLIENT", "acme": "ACME"})
    )
    two = fast_settings(
        settings, accounts_file=str(path), rate_window_s=60.0, livevox_read_timeout_s=10.0
    )
    with Runtime.build(two) as built:
        yield built


def _queue(rt: Runtime, account: str, target: str, n: int, start: int = 0) -> None:
    records = [
        QueuedRecord(new_record_id(), time.time(), {"phone1": phone(start + i)}) for i in range(n)
    ]
    rt.lane(account).queue.push(target, records)


def test_each_account_drains_into_its_own_clients_campaign(rt: Runtime, sim: Sim) -> None:
    # Given records queued for the default account and for acme, When each account's drainer
    # ticks, Then each batch goes to its own client's campaign (5001, 5101), is audited under
    # its account, and one account's tick never touches the other's queue.
    _queue(rt, "default", TARGET, 3)
    _queue(rt, "acme", ACME_TARGET, 4, start=100)
    acme = drain_once(rt.drainer("acme"))
    assert (acme.outcome, acme.campaign_id, acme.records) == (BatchStatus.APPENDED, 5101, 4)
    assert rt.lane("default").queue.depth() == 3
    default = drain_once(rt.drainer("default"))
    assert (default.outcome, default.campaign_id, default.records) == ("appended", 5001, 3)
    assert [len(sim.records(c)) for c in (5001, 5101)] == [3, 4]
    clients = {c["client"] for c in sim.calls("append")}
    assert clients == {"SIMCLIENT", "ACME"}
    with rt.sessions() as session:
        rows = session.query(Batch.livevox_account, Batch.campaign_id).order_by(Batch.id).all()
    assert [tuple(r) for r in rows] == [("acme", 5101), ("default", 5001)]


def test_one_accounts_lease_rate_budget_and_halt_are_its_own(rt: Runtime, sim: Sim) -> None:
    # Given acme's drain lease held elsewhere, its rate budget spent and acme halted, Then the
    # default account still drains at once; and a 403 on acme's Append (its user may not
    # append) halts acme alone.
    _queue(rt, "default", TARGET, 2)
    _queue(rt, "acme", ACME_TARGET, 2, start=50)
    acme = rt.drainer("acme")
    with DrainLease(rt.redis, acme.keys.drain_lock, lease_ttl_s(acme)) as held:
        assert held.acquire()
        assert drain_once(acme).outcome == Tick.LOCKED
        assert drain_once(rt.drainer("default")).outcome == BatchStatus.APPENDED
    for _ in range(rt.lane("acme").settings.rate_max_calls):
        assert rt.lane("acme").limiter.acquire().granted
    assert rt.lane("acme").limiter.budget().remaining == 0
    assert rt.lane("default").limiter.budget().remaining == 4  # one call made above
    config = seeded_clients(["SIMCLIENT", "ACME"])
    config["users"][1]["role"] = "Supervisor"  # ACME's user may not append: a 403
    sim.reset(**config, rate_window_s=60)
    rt.redis.delete(acme.keys.rate)  # acme may call again: it gets the 403
    assert drain_once(rt.drainer("acme")).outcome == BatchStatus.HELD
    assert drain_once(rt.drainer("acme")).outcome == Tick.HALTED
    _queue(rt, "default", TARGET, 2, start=10)
    assert drain_once(rt.drainer("default")).outcome == BatchStatus.APPENDED
    assert len(sim.records(5001)) == 2 and sim.records(5101) == []


def test_beat_ticks_each_account_on_its_own_queue(rt: Runtime) -> None:
    # Given two accounts, Then beat has one entry per account, each sending the drain task
    # with its account to that account's queue; a worker pinned with --accounts consumes only
    # its accounts' queues, an unpinned one every account's; a tick for an account the worker
    # does not know is reported, not drained.
    settings = rt.settings
    app = create_app(settings, rt.accounts)
    schedule = app.conf.beat_schedule
    assert sorted(schedule) == ["drain:acme", "drain:default"]
    entry = schedule["drain:acme"]
    assert (entry["task"], entry["kwargs"]) == (DRAIN_TASK, {"account": "acme"})
    assert entry["options"]["queue"] == f"{settings.redis_prefix}.ticks.acme"
    assert app.conf.worker_disable_prefetch is True
    pinned = _worker_argv(settings, rt.accounts.pick("acme"), beat=False)
    assert f"--queues={settings.redis_prefix}.ticks.acme" in pinned
    every = _worker_argv(settings, rt.accounts.pick(None), beat=False)
    expected = f"--queues={settings.redis_prefix}.ticks.default,{settings.redis_prefix}.ticks.acme"
    assert expected in every
    task = app.tasks[DRAIN_TASK]
    assert task.run(account="gamma")["outcome"] == "unknown_account"
    _queue(rt, "acme", ACME_TARGET, 1, start=900)
    report = task.run(account="acme")
    assert (report["account"], report["outcome"]) == ("acme", "appended")
    task.close()


def test_appendq_accounts_lists_them_and_names_a_forgotten_one(
    rt: Runtime, keep_root_logging: None
) -> None:
    # Given two configured accounts and records still queued for "old", an account the file no
    # longer names, When `appendq accounts` runs, Then it lists both accounts with their client,
    # key prefix, tick queue and depth (never a secret), names "old" with its depth, exit 1.
    _queue(rt, "acme", ACME_TARGET, 2)
    old = RecordQueue(rt.redis, rt.keys.for_account("old"), "old")
    old.push(TARGET, [QueuedRecord(new_record_id(), time.time(), {"phone1": phone(7)})])
    env = settings_env(rt.settings, APPENDQ_ACCOUNTS_FILE=str(rt.settings.accounts_file))
    done = CliRunner().invoke(main, ["accounts", "--json"], env=env)
    assert done.exit_code == 1, done.output
    found = json.loads(done.stdout)
    assert [(a["account"], a["client_name"], a["queued"]) for a in found["accounts"]] == [
        ("default", "SIMCLIENT", 0),
        ("acme", "ACME", 2),
    ]
    prefix = rt.settings.redis_prefix
    assert found["accounts"][1]["redis_prefix"] == f"{prefix}:acct:acme"
    assert found["accounts"][1]["tick_queue"] == f"{prefix}.ticks.acme"
    assert found["unconfigured"] == {"old": 1}
    assert "simulator-password" not in done.output
