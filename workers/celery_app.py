"""The Celery app, built from Settings by the entry point (never at import time).

- beat schedules the task ``appendq.drain`` (``workers.tasks.DrainTask``) every DRAIN_INTERVAL,
  once per LiveVox account (``appendq.accounts``), on that account's own queue
  (``tick_queue``): a worker consumes the queues of the accounts it serves (every account, or
  those of ``appendq worker --accounts a,b``). Any number of workers on any number of machines
  take ticks; each account's drain lease keeps it draining in one place at a time.
- a worker reserves no tick beyond the one it runs (``worker_disable_prefetch``): one stuck on a
  slow LiveVox never sits on another account's tick, which the next free worker takes.
- one drain per account and interval on average (two back to back at most, so that a tick taken
  late is not lost to the next one), whatever the number of beats or of ticks that piled up
  while the workers were down: the task passes a gate on Redis's clock
  (``appendq.drain.tick.take_tick``). Celery's own ``expires`` is
  compared with the *worker's* clock, so a worker 30 s ahead would drop every tick if it were
  shorter than the interval; it is kept long (10 intervals, at least 5 min) only to bound how
  many stale ticks a long outage leaves in the queue;
- the worker runs the solo pool (concurrency 1, prefetch 1): one drain at a time in one process,
  and a kill -9 of that process is a kill of the drain;
- Celery's keys in Redis share the appendq prefix (``global_keyprefix``), so several deployments or
  test runs can share one Redis.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from celery import Celery

from appendq.accounts import Account, Accounts, load_accounts
from appendq.settings import Settings
from workers.tasks import DRAIN_TASK, DrainTask


def tick_queue(settings: Settings, account: str) -> str:
    """The Celery queue of one account's ticks."""
    return f"{settings.redis_prefix}.ticks.{account}"


def tick_queues(settings: Settings, accounts: Iterable[Account]) -> list[str]:
    return [tick_queue(settings, a.name) for a in accounts]


def create_app(settings: Settings, accounts: Accounts | None = None) -> Celery:
    """The app, with one beat entry per account of ``accounts`` (default: every account of
    APPENDQ_ACCOUNTS_FILE, or ``default``)."""
    accounts = accounts if accounts is not None else load_accounts(settings)
    app = Celery("appendq", broker=settings.redis_url, set_as_current=True)
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    interval = settings.drain_interval_s
    app.conf.update(
        broker_connection_retry_on_startup=True,
        broker_transport_options={"global_keyprefix": f"{settings.redis_prefix}:celery:"},
        task_default_queue=f"{settings.redis_prefix}.ticks",
        worker_disable_prefetch=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule_filename=str(state / f"beat-{settings.redis_prefix}"),
        beat_max_loop_interval=max(min(interval, 5.0), 0.1),
        beat_schedule={
            f"drain:{name}": {
                "task": DRAIN_TASK,
                "schedule": interval,
                "kwargs": {"account": name},
                "options": {
                    "queue": tick_queue(settings, name),
                    "expires": max(interval * 10, 300.0),
                },
            }
            for name in accounts
        },
    )
    DrainTask.register(app, settings)
    return app
