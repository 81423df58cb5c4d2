"""Process commands: ``migrate``, ``worker``, ``beat`` and ``up`` (the whole main job on one
machine)."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx
import redis
from celery.signals import setup_logging

from appendq import embedded
from appendq.cli.app import main
from appendq.cli.common import load_settings
from appendq.db.engine import ensure_database, migrate
from appendq.drain import halt
from appendq.errors import ConfigError
from appendq.keys import Keys
from appendq.settings import Settings
from workers.celery_app import create_app

log = logging.getLogger(__name__)


@setup_logging.connect(weak=False)  # type: ignore[untyped-decorator]
def _keep_our_logging(**_: Any) -> None:
    """Celery must not replace the logging the entry point configured."""


def _worker_argv(settings: Settings, *, beat: bool) -> list[str]:
    argv = [
        "worker",
        "--pool=solo",
        "--concurrency=1",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--hostname=appendq-{settings.redis_prefix}@{socket.gethostname()}",
        f"--loglevel={settings.log_level.upper()}",
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
def worker_cmd(beat: bool, dry_run: bool) -> None:
    """Run the drain worker (solo pool, concurrency 1), with beat unless --no-beat."""
    settings = load_settings()
    if dry_run:
        settings = settings.model_copy(update={"dry_run": True})
    if settings.dry_run:
        log.warning("DRY RUN: batches are built and audited as dry_run; no Append call is made")
    _refuse_without_credentials(settings)
    create_app(settings).worker_main(_worker_argv(settings, beat=beat))


def _refuse_without_credentials(settings: Settings) -> None:
    try:
        settings.require_livevox_credentials()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("beat")
def beat_cmd() -> None:
    """Run Celery beat alone: one drain tick every APPENDQ_DRAIN_INTERVAL_S."""
    settings = load_settings()
    create_app(settings).start(["beat", f"--loglevel={settings.log_level.upper()}"])


@main.command("resume")
def resume_cmd() -> None:
    """Lift the halt on Append calls after an operator fixed the LiveVox account (403, login)."""
    settings = load_settings(log=False)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        lifted = halt.resume(client, Keys(settings.redis_prefix))
    finally:
        client.close()
    click.echo("halt lifted: the next tick sends again" if lifted else "no halt was in force")


@main.command("up")
def up_cmd() -> None:
    """The main job on one machine: Redis and PostgreSQL (embedded ones when the configured
    local address has none), migrate, the simulator unless a real LiveVox is configured, then
    the worker with beat. Ctrl-C (SIGINT) or SIGTERM stops everything it started."""
    settings = load_settings()
    _refuse_without_credentials(settings)
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
        if _local_livevox(settings):
            _ensure_simulator(settings, stack)
        else:
            log.info("using LiveVox at %s", settings.livevox_base_url)
        create_app(settings).worker_main(_worker_argv(settings, beat=True))


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _local_livevox(settings: Settings) -> bool:
    """The simulator's default URL, or any plain-http loopback URL (a real LiveVox is https)."""
    url = httpx.URL(settings.livevox_base_url)
    return settings.uses_simulator or (url.scheme == "http" and url.host in embedded.LOCAL_HOSTS)


def _simulator_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_admin/state", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _ensure_simulator(settings: Settings, stack: contextlib.ExitStack) -> None:
    """Use the simulator (or whatever LiveVox) already at the local URL, else start one there."""
    url = settings.livevox_base_url.rstrip("/")
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
        [sys.executable, "-m", "appendq.simulator", "--port", str(port)],
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
