"""Process commands: ``migrate``, ``worker``, ``beat`` and ``up`` (the whole main job on one
machine)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import httpx
import redis
from celery.signals import setup_logging

from appendq import embedded
from appendq.accounts import Account, Accounts, unconfigured
from appendq.audit.access import operator_actor
from appendq.cli.app import main
from appendq.cli.common import accounts_of, load_settings, refuse_bad_input
from appendq.db.engine import ensure_database, migrate
from appendq.drain import halt
from appendq.errors import ConfigError
from appendq.ops import retry
from appendq.runtime import Runtime
from appendq.settings import Settings
from appendq.simulator.config import DEFAULT_CLIENT
from workers.celery_app import create_app, tick_queues

log = logging.getLogger(__name__)


@setup_logging.connect(weak=False)  # type: ignore[untyped-decorator]
def _keep_our_logging(**_: Any) -> None:
    """Celery must not replace the logging the entry point configured."""


def _worker_argv(settings: Settings, accounts: list[Account], *, beat: bool) -> list[str]:
    """One solo worker consuming the tick queues of ``accounts``; its node name carries the
    pid, so that several workers on one machine are told apart."""
    argv = [
        "worker",
        "--pool=solo",
        "--concurrency=1",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--hostname=appendq-{settings.redis_prefix}-{os.getpid()}@{socket.gethostname()}",
        f"--loglevel={settings.log_level.upper()}",
        f"--queues={','.join(tick_queues(settings, accounts))}",
    ]
    if beat:
        argv.append("--beat")
    return argv


@main.command("migrate")
def migrate_cmd() -> None:
    """Create the database if needed and upgrade it to the latest schema."""
    settings = load_settings()
    ensure_database(settings.database_url)
    migrate(settings.database_url)
    click.echo("database is at the latest migration")


@main.command("worker")
@click.option(
    "--beat/--no-beat",
    default=True,
    help="Run beat in the same process (one machine) or not (production: run "
    "`appendq beat` once, apart).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Everything against the configured LiveVox except the Append call: batches are "
    "audited as dry_run (APPENDQ_DRY_RUN=true does the same).",
)
@click.option(
    "--accounts",
    "names",
    metavar="A,B",
    help="Drain only these LiveVox accounts (their tick queues); default: every account. "
    "Beat (--beat) still ticks every account.",
)
def worker_cmd(beat: bool, dry_run: bool, names: str | None) -> None:
    """Run a drain worker (solo pool, concurrency 1: one tick at a time), with beat unless
    --no-beat. Run as many as the accounts need, on any machines: see the README, "Many
    LiveVox accounts"."""
    settings = load_settings()
    if dry_run:
        settings = settings.model_copy(update={"dry_run": True})
    if settings.dry_run:
        log.warning("DRY RUN: batches are built and audited as dry_run; no Append call is made")
    accounts = _accounts(settings)
    with refuse_bad_input():
        served = accounts.pick(names)
    _refuse_without_credentials(served)
    create_app(settings, accounts).worker_main(_worker_argv(settings, served, beat=beat))


def _accounts(settings: Settings) -> Accounts:
    """The accounts (a bad file: one line, exit 1); a warning for every account the file no
    longer names that still has records queued (nothing drains them)."""
    accounts = accounts_of(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        left = unconfigured(client, settings.redis_prefix, accounts)
    except redis.RedisError:
        left = {}  # the worker says so itself once it connects
    finally:
        client.close()
    for name, depth in left.items():
        log.warning(
            "account %s has %d records queued but is not in APPENDQ_ACCOUNTS_FILE: nothing "
            "drains them until it is put back (appendq accounts)",
            name,
            depth,
        )
    return accounts


def _refuse_without_credentials(accounts: Iterable[Account]) -> None:
    try:
        for account in accounts:
            account.settings.require_livevox_credentials()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("beat")
def beat_cmd() -> None:
    """Run Celery beat alone: one drain tick every APPENDQ_DRAIN_INTERVAL_S."""
    settings = load_settings()
    accounts = _accounts(settings)
    create_app(settings, accounts).start(["beat", f"--loglevel={settings.log_level.upper()}"])


@main.command("resume")
@click.option("--account", help="The LiveVox account (default: default).")
@click.option(
    "--reason",
    default="the LiveVox account was fixed",
    show_default=True,
    help="Why (recorded in the audit).",
)
@click.option("--actor", help="Who, for the audit (default operator:<login>).")
def resume_cmd(account: str | None, reason: str, actor: str | None) -> None:
    """Lift the halt on Append calls after an operator fixed the LiveVox account (403, login)."""
    settings = load_settings(log=False)
    with refuse_bad_input():
        name = _accounts(settings).get_account(account).name
        why = retry.check_reason(reason)
    with Runtime.build(settings) as rt:
        lane = rt.lane(name)
        lifted = halt.lift(
            rt.redis,
            lane.keys,
            rt.sessions,
            account=name,
            reason=why,
            actor=actor or operator_actor(),
        )
    click.echo(
        f"account {name}: halt lifted: the next tick sends again"
        if lifted
        else f"account {name}: no halt was in force"
    )


@main.command("up")
def up_cmd() -> None:
    """The main job on one machine: Redis and PostgreSQL (embedded ones when the configured
    local address has none), migrate, the simulator unless a real LiveVox is configured, then
    the worker with beat. Ctrl-C (SIGINT) or SIGTERM stops everything it started."""
    settings = load_settings()
    accounts = _accounts(settings)
    _refuse_without_credentials(accounts.values())
    # Until Celery installs its own handler: SIGTERM unwinds like Ctrl-C, stopping what started.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with contextlib.ExitStack() as stack:
        try:
            stores = embedded.ensure(
                settings.redis_url, settings.database_url, Path(settings.state_dir)
            )
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        stack.callback(stores.stop)
        ensure_database(settings.database_url)
        migrate(settings.database_url)
        for url, clients in _livevoxes(accounts).items():
            if _local_livevox(url):
                _ensure_simulator(url, clients, stack)
            else:
                log.info("using LiveVox at %s", url)
        served = list(accounts.values())
        create_app(settings, accounts).worker_main(_worker_argv(settings, served, beat=True))


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _livevoxes(accounts: Accounts) -> dict[str, list[str]]:
    """Each LiveVox URL the accounts use, with the client names of its accounts."""
    found: dict[str, list[str]] = {}
    for account in accounts.values():
        url = account.settings.livevox_base_url.rstrip("/")
        found.setdefault(url, []).append(account.client_name)
    return found


def _local_livevox(base_url: str) -> bool:
    """Any plain-http loopback URL, the simulator's default among them (a real LiveVox is
    https)."""
    url = httpx.URL(base_url)
    return url.scheme == "http" and url.host in embedded.LOCAL_HOSTS


def _simulator_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_admin/state", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _ensure_simulator(url: str, clients: list[str], stack: contextlib.ExitStack) -> None:
    """Use the simulator (or whatever LiveVox) already at the local URL, else start one there
    hosting ``clients`` (the client names of the accounts that use it)."""
    if _simulator_answers(url):
        log.info("using the LiveVox simulator already running at %s", url)
        return
    port = httpx.URL(url).port or 8765
    if embedded.listens(embedded.Address(httpx.URL(url).host, port)):
        log.info("using LiveVox at %s", url)
        return
    # In a session of its own, as the stores: Ctrl-C reaches the worker, which finishes its tick
    # (and logs out) before the simulator is stopped.
    proc = subprocess.Popen(
        [sys.executable, "-m", "appendq.simulator", "--port", str(port)]
        + ([] if clients == [DEFAULT_CLIENT] else ["--clients", ",".join(clients)]),
        start_new_session=True,
        preexec_fn=embedded.die_with_parent(signal.SIGTERM),
    )
    stack.callback(_stop_child, proc)
    deadline = time.monotonic() + 15
    while not _simulator_answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise click.ClickException(f"the LiveVox simulator did not start at {url}")
        time.sleep(0.1)
    log.info("started the LiveVox simulator at %s (pid %s)", url, proc.pid)


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
