"""Process commands: ``migrate``, ``worker``, ``beat`` and ``up`` (the whole main job on one
machine)."""

from __future__ import annotations

import atexit
import logging
import socket
import subprocess
import sys
import time
from typing import Any

import click
import httpx
import redis
from celery.signals import setup_logging

from appendq import halt
from appendq.cli.app import main
from appendq.cli.common import load_settings
from appendq.db.engine import ensure_database, migrate
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
def worker_cmd(beat: bool) -> None:
    """Run the drain worker (solo pool, concurrency 1), with beat unless --no-beat."""
    settings = load_settings()
    create_app(settings).worker_main(_worker_argv(settings, beat=beat))


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
    """The main job on one machine: migrate, start the simulator unless a real LiveVox is
    configured, then run the worker with beat."""
    settings = load_settings()
    ensure_database(settings.database_url)
    migrate(settings.database_url)
    if settings.uses_simulator:
        _ensure_simulator(settings)
    else:
        log.info("using LiveVox at %s", settings.livevox_base_url)
    create_app(settings).worker_main(_worker_argv(settings, beat=True))


def _simulator_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_admin/state", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _ensure_simulator(settings: Settings) -> None:
    url = settings.livevox_base_url.rstrip("/")
    if _simulator_answers(url):
        log.info("using the LiveVox simulator already running at %s", url)
        return
    port = httpx.URL(url).port or 8765
    proc = subprocess.Popen([sys.executable, "-m", "appendq.simulator", "--port", str(port)])
    atexit.register(proc.terminate)
    deadline = time.monotonic() + 15
    while not _simulator_answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise click.ClickException(f"the LiveVox simulator did not start at {url}")
        time.sleep(0.1)
    log.info("started the LiveVox simulator at %s (pid %s)", url, proc.pid)
